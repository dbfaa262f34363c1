"""Cluster-DIoU-NMS for mmcv's ``batched_nms`` (``test_cfg.nms`` of any stock head)::

    test_cfg=dict(nms=dict(type='cluster_diou_nms', iou_threshold=0.5, beta=1.0))

Registered like ``diou_nms`` (:mod:`detloss_plugin.ops.nms`). It keeps the same boxes as
``diou_nms``; the matrix form is the paper's GPU-friendly algorithm.

The weighted variant (:func:`detloss_plugin.functional.weighted_cluster_diou_nms`)
cannot be used through ``test_cfg.nms``: mmcv's ``batched_nms`` and mmdet's heads keep
the input boxes at the returned indices and read only the scores from ``dets``, so
merged boxes would be dropped silently; the adapter refuses ``weighted=True``.

``iou_threshold`` must be >= 0 here (as for
:func:`detloss_plugin.functional.batched_diou_nms`): ``batched_nms`` keeps the classes
apart by shifting their boxes away from each other, and two far-apart boxes have a
DIoU below 0, so with a negative threshold one class would suppress another.
"""
from typing import Tuple

from torch import Tensor

from detloss_plugin.functional._checks import check_finite
from detloss_plugin.functional.cluster_nms import cluster_diou_nms
from .nms import as_mmcv_nms, register_nms_function

__all__ = ['cluster_diou_nms_mmcv', 'register_cluster_diou_nms']


def cluster_diou_nms_mmcv(boxes: Tensor, scores: Tensor, iou_threshold: float,
                          beta: float = 1.0, offset: int = 0, score_threshold: float = 0,
                          max_num: int = -1, weighted: bool = False) -> Tuple[Tensor, Tensor]:
    """Cluster-DIoU-NMS with the signature and return value of ``mmcv.ops.nms``.

    Args:
        boxes, scores, beta, offset: see
            :func:`detloss_plugin.functional.cluster_diou_nms`.
        iou_threshold: as there, but >= 0 (a ``ValueError`` otherwise): mmcv's
            ``batched_nms`` separates the classes by shifting each class's boxes far
            from the others', which keeps them apart only for thresholds >= 0 (two
            disjoint boxes have a negative DIoU).
        score_threshold, max_num: as :func:`detloss_plugin.ops.diou_nms_mmcv`.
        weighted: must be False (module docstring).

    Returns:
        ``dets`` ``Tensor[K, 5]`` by descending score and ``keep`` ``Tensor[K]``.
    """
    check_finite('iou_threshold', iou_threshold)
    check_finite('score_threshold', score_threshold)
    if iou_threshold < 0:
        raise ValueError(
            f'iou_threshold must be >= 0 for cluster_diou_nms through batched_nms, got '
            f'{iou_threshold}: mmcv separates the classes by shifting their boxes apart, '
            f'and a negative threshold would let a box suppress a far-away box of another '
            f'class (the same rule as batched_diou_nms). For negative thresholds call '
            f'detloss_plugin.functional.cluster_diou_nms on one class at a time')
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
