"""NWD-NMS for mmcv's ``batched_nms`` (``test_cfg.nms`` of any stock head)::

    test_cfg=dict(nms=dict(type='nwd_nms', iou_threshold=0.85))            # dense heads
    test_cfg=dict(rpn=dict(nms=dict(type='nwd_nms', iou_threshold=0.85)),  # two-stage
                  rcnn=dict(nms=dict(type='nwd_nms', iou_threshold=0.85)))

``iou_threshold`` is the NWD threshold (0.85 in the paper); ``constant`` (12.8 px)
NWD's C. Registered like ``diou_nms`` (:mod:`detloss_plugin.ops.nms`). Boxes of
different classes, which ``batched_nms`` moves far apart, have an NWD of about 0 and
never suppress each other.
"""
from typing import Tuple

from torch import Tensor

from detloss_plugin.functional.box_geometry import NWD_CONSTANT
from detloss_plugin.functional.wasserstein import nwd_nms
from .nms import as_mmcv_nms, register_nms_function

__all__ = ['nwd_nms_mmcv', 'register_nwd_nms']


def nwd_nms_mmcv(boxes: Tensor, scores: Tensor, iou_threshold: float = 0.85,
                 constant: float = NWD_CONSTANT, score_threshold: float = 0,
                 max_num: int = -1) -> Tuple[Tensor, Tensor]:
    """NWD-NMS with the signature and return value of ``mmcv.ops.nms``.

    Args:
        boxes, scores, iou_threshold, constant: see
            :func:`detloss_plugin.functional.nwd_nms`.
        score_threshold, max_num: as :func:`detloss_plugin.ops.diou_nms_mmcv`.

    Returns:
        ``dets`` ``Tensor[K, 5]`` by descending score and ``keep`` ``Tensor[K]``.
    """
    return as_mmcv_nms(lambda b, s: nwd_nms(b, s, iou_threshold, constant),
                       boxes, scores, score_threshold, max_num)


def register_nwd_nms() -> bool:
    """Make ``type='nwd_nms'`` resolvable by mmcv's ``batched_nms``."""
    return register_nms_function('nwd_nms', nwd_nms_mmcv)
