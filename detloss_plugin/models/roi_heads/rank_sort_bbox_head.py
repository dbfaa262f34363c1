"""``RankSortBBoxHead``: Faster R-CNN's RoI box head trained with Rank & Sort loss.

As the reference's ``RankBasedShared2FCBBoxHead`` (kemaloksuz/RankSortLoss): mmdet's
``Shared2FCBBoxHead`` with sigmoid class scores (``num_classes`` outputs, no background
column); the sampled RoIs of every image of the batch are ranked in one call (mmdet
calls the box head's ``loss`` once per batch), with IoU targets from the decoded
predictions; the box loss is weighted and rescaled as in ``RankSortATSSHead``.
"""
import math

import torch
from torch import Tensor

from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead

from detloss_plugin.registry import MODELS
from ..dense_heads.rank_sort_heads import (build_rank_sort_loss, check_rank_sort_loss,
                                           rank_sort_head_losses)

__all__ = ['RankSortBBoxHead']


@MODELS.register_module()
class RankSortBBoxHead(Shared2FCBBoxHead):
    """A ``Shared2FCBBoxHead`` trained with Rank & Sort loss.

    Args:
        loss_cls: ``dict(type='detloss_plugin.RankSortLoss')`` (default): the head has
            ``num_classes`` sigmoid outputs; at inference the scores get a zero
            background column, which mmdet's ``multiclass_nms`` ignores.
        loss_bbox: one value per box with ``reduction_override='none'`` on decoded
            boxes (the reference: ``GIoULoss`` with ``reg_decoded_bbox=True``).
        everything else: as ``Shared2FCBBoxHead``. The reference keeps every proposal
            (``train_cfg.rcnn.sampler.num`` very large) and a test score threshold of
            0.4.

    Losses: ``loss_rank``, ``loss_sort``, ``loss_bbox``.
    """

    def __init__(self, *args, loss_cls: dict = None, **kwargs) -> None:
        super().__init__(*args, loss_cls=build_rank_sort_loss(self, loss_cls), **kwargs)
        check_rank_sort_loss(self)

    @property
    def custom_cls_channels(self) -> bool:  # num_classes outputs (RankSortLoss's)
        return True

    def _predict_by_feat_single(self, roi: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                                img_meta: dict, rescale: bool = False, rcnn_test_cfg=None):
        # a background column of score 0 (sigmoid(-inf)), as multiclass_nms expects
        if cls_score is not None:
            cls_score = torch.cat([cls_score, cls_score.new_full((cls_score.shape[0], 1),
                                                                 -math.inf)], dim=1)
        return super()._predict_by_feat_single(roi, cls_score, bbox_pred, img_meta, rescale,
                                               rcnn_test_cfg)

    def loss(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor, labels: Tensor,
             label_weights: Tensor, bbox_targets: Tensor, bbox_weights: Tensor,
             reduction_override=None) -> dict:
        pos = ((labels < self.num_classes) & (label_weights > 0)).nonzero().squeeze(1)
        boxes = rois[:, 1:]
        pred = self.bbox_coder.decode(boxes, bbox_pred)
        if self.reg_class_agnostic:
            pred = pred.view(pred.shape[0], 4)[pos]
        else:
            pred = pred.view(pred.shape[0], -1, 4)[pos, labels[pos]]
        target = bbox_targets[pos]
        if not self.reg_decoded_bbox:
            target = self.bbox_coder.decode(boxes[pos], target)
        per_box = self.loss_bbox(pred, target, reduction_override='none')
        if per_box.dim() != 1:
            raise ValueError(f'RankSortBBoxHead needs a loss_bbox that returns one loss per '
                             f'box with reduction "none", got shape {tuple(per_box.shape)}')
        loss_rank, loss_sort, loss_bbox = rank_sort_head_losses(
            self, cls_score, labels, label_weights, pos, per_box, pred, target)
        return dict(loss_rank=loss_rank, loss_sort=loss_sort, loss_bbox=loss_bbox)
