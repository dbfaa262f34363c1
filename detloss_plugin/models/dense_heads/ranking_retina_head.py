"""``RankingRetinaHead``: RetinaNet trained with a ranking loss (AP-loss, DR loss).

mmdet's ``AnchorHead.loss_by_feat`` calls ``loss_cls`` once per FPN level; a ranking
loss must see every anchor of the batch at once. This head keeps everything of
``RetinaHead`` (layers, anchors, assigner, inference, so ``diou_nms`` works too) and
only replaces ``loss_by_feat``: the scores, labels and label weights of every level and
image are concatenated and the ranking loss is called once; box regression stays a
normal ``loss_bbox`` (Smooth L1, L1 or any detloss IoU loss), over the same anchors,
with mmdet's ``avg_factor`` (the number of positives).
"""
from typing import List, Optional

import torch
from torch import Tensor

from mmdet.models.dense_heads import RetinaHead
from mmdet.utils import InstanceList, OptInstanceList

from detloss_plugin.registry import MODELS

__all__ = ['RankingRetinaHead']


@MODELS.register_module()
class RankingRetinaHead(RetinaHead):
    """A ``RetinaHead`` whose classification loss ranks every anchor of the batch.

    Args:
        loss_cls: a ranking loss, ``dict(type='detloss_plugin.APLoss')`` (default) or
            ``dict(type='detloss_plugin.DRLoss')``. Any other loss raises ``ValueError``
            (use mmdet's ``RetinaHead`` for per-anchor losses).
        everything else: as ``RetinaHead``. The classification bias prior is set by
            ``init_cfg``'s ``bias_prob`` for ``retina_cls`` (RetinaHead's default 0.01,
            AP-loss's too; DR loss's reference uses 0.5, see its configs).

    ``loss_by_feat`` passes every anchor with its label weight instead of dropping the
    ignored ones (a boolean gather would cost a host synchronisation); the ranking
    losses treat weight 0 as ignored, which is the same. ``avg_factor`` is not passed
    to the ranking loss, which normalises as its reference code does. Under
    data-parallel training each process ranks the anchors of its own images, as both
    reference codes do (no gathering across GPUs).
    """

    def __init__(self, *args, loss_cls: Optional[dict] = None, **kwargs) -> None:
        loss_cls = dict(type='detloss_plugin.APLoss') if loss_cls is None else dict(loss_cls)
        # AnchorHead chooses C (not C + 1) output channels from the config dict
        loss_cls.setdefault('use_sigmoid', True)
        super().__init__(*args, loss_cls=loss_cls, **kwargs)
        if not getattr(self.loss_cls, 'is_ranking_loss', False):
            raise ValueError(
                f'RankingRetinaHead needs a ranking loss_cls (detloss_plugin.APLoss or '
                f'detloss_plugin.DRLoss), got {type(self.loss_cls).__name__}: use '
                f"type='RetinaHead' for per-anchor classification losses")
        self.loss_cls.attach(self)  # called once per batch by loss_by_feat

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=device)
        targets = self.get_targets(anchor_list, valid_flag_list, batch_gt_instances,
                                   batch_img_metas,
                                   batch_gt_instances_ignore=batch_gt_instances_ignore)
        (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list,
         avg_factor) = targets[:5]
        num_imgs = len(batch_img_metas)

        # image-major, then level, then position: the order of labels_list[l] rows
        def gather(levels: List[Tensor], channels: int) -> Tensor:
            return torch.cat([lvl.permute(0, 2, 3, 1).reshape(num_imgs, -1, channels)
                              for lvl in levels], dim=1).reshape(-1, channels)

        cls_score = gather(cls_scores, self.cls_out_channels)
        labels = torch.cat(labels_list, dim=1).reshape(-1)
        label_weights = torch.cat(label_weights_list, dim=1).reshape(-1)
        loss_cls = self.loss_cls(cls_score, labels, label_weights)

        bbox_pred = gather(bbox_preds, self.bbox_coder.encode_size)
        bbox_targets = torch.cat(bbox_targets_list, dim=1).reshape(-1, bbox_pred.shape[-1])
        bbox_weights = torch.cat(bbox_weights_list, dim=1).reshape(-1, bbox_pred.shape[-1])
        if self.reg_decoded_bbox:
            anchors = torch.cat([torch.cat(a) for a in anchor_list]).reshape(-1, 4)
            bbox_pred = self.bbox_coder.decode(anchors, bbox_pred)
            bbox_targets = bbox_targets.reshape(-1, 4)
            bbox_weights = bbox_weights.reshape(-1, 4)
        loss_bbox = self.loss_bbox(bbox_pred, bbox_targets, bbox_weights, avg_factor=avg_factor)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)
