"""``detloss_plugin.IoUCost``: mmdet's ``IoUCost`` for every similarity mode, so the
Hungarian matching of DETR-family detectors can use the loss's geometry::

    train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='detloss_plugin.IoUCost', iou_mode='ciou', weight=2.0)]))

Same contract as mmdet's: ``cost(pred_instances, gt_instances, img_meta)`` reads
``pred_instances.bboxes`` and ``gt_instances.bboxes`` (absolute ``(x1, y1, x2, y2)``)
and returns ``-similarity * weight``, ``Tensor[num_preds, num_gts]``; half-precision
predictions are computed in float32 and the cost is returned in half precision.
For ``iou_mode='iou'`` / ``'giou'`` it equals mmdet's ``IoUCost`` (tests).
"""
from typing import Optional, Union

import torch
from mmdet.models.task_modules.assigners.match_cost import BaseMatchCost
from torch import Tensor

from detloss_plugin.functional._checks import check_choice, check_positive
from detloss_plugin.functional.box_geometry import (NWD_CONSTANT, SIMILARITY_MODES,
                                                    pairwise_similarity)
from detloss_plugin.registry import TASK_UTILS

__all__ = ['IoUCost']


@TASK_UTILS.register_module()
class IoUCost(BaseMatchCost):
    """Matching cost ``-similarity(pred, gt) * weight``.

    Args:
        iou_mode: ``'iou'``, ``'giou'`` (default, as mmdet), ``'diou'``, ``'ciou'``,
            ``'siou'``, ``'eiou'`` (Efficient-IoU) or ``'nwd'`` (``'iof'`` too).
        weight: the cost's weight (1.0).
        constant: NWD's C in pixels (12.8). theta: SIoU's (4).
        alpha_gate: CIoU's gate; match the loss's setting (False for detloss's
            ``CIoULoss`` default).
        eps: 1e-7 (mmdet's ``bbox_overlaps``: 1e-6).

    The constant 1 of ``1 - similarity`` is left out, as mmdet does: it does not
    change the matching.
    """

    def __init__(self, iou_mode: str = 'giou', weight: Union[float, int] = 1.,
                 constant: float = NWD_CONSTANT, theta: float = 4.0,
                 alpha_gate: bool = False, eps: float = 1e-7) -> None:
        check_choice('iou_mode', iou_mode, SIMILARITY_MODES)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise TypeError(f'weight must be a number, got {type(weight).__name__}')
        check_positive('constant', constant)
        check_positive('eps', eps)
        super().__init__(weight=weight)
        self.iou_mode = iou_mode
        self.options = dict(constant=float(constant), theta=float(theta),
                            alpha_gate=bool(alpha_gate))
        self.eps = float(eps)

    def __call__(self, pred_instances, gt_instances, img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        pred_bboxes = pred_instances.bboxes
        gt_bboxes = gt_instances.bboxes
        fp16 = pred_bboxes.dtype == torch.float16
        if fp16:   # avoid fp16 overflow, as mmdet
            pred_bboxes = pred_bboxes.float()
        overlaps = pairwise_similarity(pred_bboxes, gt_bboxes.to(pred_bboxes.dtype),
                                       self.iou_mode, self.eps, **self.options)
        if fp16:
            overlaps = overlaps.half()
        return -overlaps * self.weight
