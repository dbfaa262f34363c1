"""DIoU-NMS for mmcv's ``batched_nms`` (used by every stock mmdet head).

mmcv 2.1.0's ``batched_nms`` turns ``nms_cfg['type']`` into a function with
``eval(type)`` in the globals of the module ``mmcv.ops.nms`` and calls it as
``fn(boxes, scores, **rest_of_nms_cfg)``, expecting ``(dets[k, 5], keep)`` sorted by
descending score. :func:`register_diou_nms` adds :func:`diou_nms_mmcv` to that module
under the name ``diou_nms`` (it replaces nothing), so a config can say::

    test_cfg=dict(nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6))

in RetinaNet / FCOS / ATSS dense heads and Faster R-CNN's ``rcnn`` test_cfg.
"""
import importlib
import warnings
from typing import Tuple

import numpy as np
import torch
from torch import Tensor

from detloss_plugin.functional._checks import check_finite
from detloss_plugin.functional.nms import diou_nms
from detloss_plugin.registry import MODELS

__all__ = ['as_mmcv_nms', 'diou_nms_mmcv', 'register_diou_nms', 'register_nms_function']


def diou_nms_mmcv(boxes: Tensor, scores: Tensor, iou_threshold: float, beta: float = 1.0,
                  offset: int = 0, score_threshold: float = 0, max_num: int = -1,
                  backend: str = 'auto') -> Tuple[Tensor, Tensor]:
    """DIoU-NMS with the signature and return value of ``mmcv.ops.nms``.

    Args:
        boxes: ``Tensor[N, 4]`` (or ndarray), ``(x1, y1, x2, y2)``.
        scores: ``Tensor[N]``.
        iou_threshold, beta, offset, backend: see
            :func:`detloss_plugin.functional.diou_nms`.
        score_threshold: boxes with ``score <= score_threshold`` are dropped first
            (when > 0, as mmcv).
        max_num: keep at most this many boxes (all when <= 0).

    Returns:
        ``dets`` ``Tensor[K, 5]`` (boxes and score, by descending score) and ``keep``
        ``Tensor[K]`` int64 indices into the input.
    """
    return as_mmcv_nms(
        lambda b, s: diou_nms(b, s, iou_threshold, beta=beta, offset=offset, backend=backend),
        boxes, scores, score_threshold, max_num)


def as_mmcv_nms(keep_fn, boxes, scores, score_threshold: float = 0, max_num: int = -1):
    """Wrap ``keep_fn(boxes, scores) -> keep`` (indices by descending score) into
    ``mmcv.ops.nms``'s contract: numpy or tensors in, ``(dets[K, 5], keep[K])`` out,
    ``score_threshold`` applied first (when > 0), at most ``max_num`` boxes (when > 0)."""
    check_finite('score_threshold', score_threshold)
    is_numpy = isinstance(boxes, np.ndarray)
    if is_numpy:
        boxes, scores = torch.from_numpy(boxes), torch.from_numpy(scores)
    valid_inds = None
    if score_threshold > 0:
        valid = scores > score_threshold
        boxes, scores = boxes[valid], scores[valid]
        valid_inds = valid.nonzero().squeeze(1)
    keep = keep_fn(boxes, scores)
    if max_num > 0:
        keep = keep[:max_num]
    dets = torch.cat((boxes[keep], scores[keep, None].to(boxes.dtype)), dim=1)
    if valid_inds is not None:
        keep = valid_inds[keep]
    if is_numpy:
        return dets.numpy(), keep.numpy()
    return dets, keep


def register_diou_nms() -> bool:
    """Make ``type='diou_nms'`` resolvable by mmcv's ``batched_nms``.

    Adds the function to the namespace of the module ``mmcv.ops.nms`` (``import
    mmcv.ops.nms`` would bind the function ``nms``, hence ``import_module``) and to
    detloss's ``MODELS`` registry. Returns False when mmcv's ops are not installed.
    Idempotent; never replaces a ``diou_nms`` that mmcv itself may define.
    """
    return register_nms_function('diou_nms', diou_nms_mmcv)


def register_nms_function(name: str, fn) -> bool:
    """Add ``fn`` to detloss's ``MODELS`` and to the namespace of ``mmcv.ops.nms``
    under ``name``, unless mmcv itself defines that name (then warn and leave it)."""
    if name not in MODELS.module_dict:
        MODELS.register_module(name, module=fn)
    try:
        nms_module = importlib.import_module('mmcv.ops.nms')
    except ImportError:
        return False
    existing = getattr(nms_module, name, None)
    if existing is None:
        setattr(nms_module, name, fn)
    elif existing is not fn:
        warnings.warn(f'mmcv.ops.nms already defines {name}; detloss leaves it in place. '
                      f'Pass type=detloss_plugin.ops.{fn.__name__} to use detloss\'s.')
        return False
    return True
