"""Cluster-DIoU-NMS for mmcv's ``batched_nms`` (``test_cfg.nms`` of any stock head)::

    test_cfg=dict(nms=dict(type='cluster_diou_nms', iou_threshold=0.5, beta=1.0))

Registered like ``diou_nms`` (:mod:`detloss_plugin.ops.nms`). It keeps the same boxes as
``diou_nms``; the matrix form is the paper's GPU-friendly algorithm.

The weighted variant (:func:`detloss_plugin.functional.weighted_cluster_diou_nms`)
cannot be used through ``test_cfg.nms``: mmcv's ``batched_nms`` and mmdet's heads keep
the input boxes at the returned indices and read only the scores from ``dets``, so
merged boxes would be dropped silently; the adapter refuses ``weighted=True``.
"""
from typing import Tuple

from torch import Tensor

from detloss_plugin.functional.cluster_nms import cluster_diou_nms
from .nms import as_mmcv_nms, register_nms_function

__all__ = ['cluster_diou_nms_mmcv', 'register_cluster_diou_nms']


def cluster_diou_nms_mmcv(boxes: Tensor, scores: Tensor, iou_threshold: float,
                          beta: float = 1.0, offset: int = 0, score_threshold: float = 0,
                          max_num: int = -1, weighted: bool = False) -> Tuple[Tensor, Tensor]:
    """Cluster-DIoU-NMS with the signature and return value of ``mmcv.ops.nms``.

    Args:
        boxes, scores, iou_threshold, beta, offset: see
            :func:`detloss_plugin.functional.cluster_diou_nms`.
        score_threshold, max_num: as :func:`detloss_plugin.ops.diou_nms_mmcv`.
        weighted: must be False (module docstring).

    Returns:
        ``dets`` ``Tensor[K, 5]`` by descending score and ``keep`` ``Tensor[K]``.
    """
    if weighted:
        raise ValueError('weighted=True is not supported through mmcv\'s batched_nms, which '
                         'keeps the input boxes and would drop the merged ones; call '
                         'detloss_plugin.functional.weighted_cluster_diou_nms instead')
    return as_mmcv_nms(lambda b, s: cluster_diou_nms(b, s, iou_threshold, beta=beta,
                                                     offset=offset),
                       boxes, scores, score_threshold, max_num)


def register_cluster_diou_nms() -> bool:
    """Make ``type='cluster_diou_nms'`` resolvable by mmcv's ``batched_nms``."""
    return register_nms_function('cluster_diou_nms', cluster_diou_nms_mmcv)
