"""``RankingRetinaHead``: RetinaNet trained with a ranking loss (AP-loss, DR loss).

mmdet's ``AnchorHead.loss_by_feat`` calls ``loss_cls`` once per FPN level; a ranking
loss must see every anchor of the batch at once. This head keeps everything of
``RetinaHead`` (layers, anchors, assigner, inference, so ``diou_nms`` works too) and
only replaces ``loss_by_feat``: the scores, labels and label weights of every level and
image are concatenated and the ranking loss is called once; box regression stays a
normal ``loss_bbox`` (Smooth L1, L1 or any detloss IoU loss), over the same anchors,
with mmdet's ``avg_factor`` (the number of positives).
"""
from types import SimpleNamespace
from typing import List, Optional

import torch
from torch import Tensor

from mmdet.models.dense_heads import RetinaHead
from mmdet.utils import InstanceList, OptInstanceList

from detloss_plugin.registry import MODELS

__all__ = ['RankingRetinaHead', 'flatten_levels', 'gather_anchor_batch']


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

    #: the losses this head calls (named in its errors)
    ranking_losses = 'detloss_plugin.APLoss or detloss_plugin.DRLoss'

    def __init__(self, *args, loss_cls: Optional[dict] = None, **kwargs) -> None:
        loss_cls = dict(type='detloss_plugin.APLoss') if loss_cls is None else dict(loss_cls)
        # AnchorHead chooses C (not C + 1) output channels from the config dict
        loss_cls.setdefault('use_sigmoid', True)
        super().__init__(*args, loss_cls=loss_cls, **kwargs)
        if not getattr(self.loss_cls, 'is_ranking_loss', False):
            raise ValueError(
                f'{type(self).__name__} needs a ranking loss_cls ({self.ranking_losses}), '
                f'got {type(self.loss_cls).__name__}: use '
                f"type='RetinaHead' for per-anchor classification losses")
        if self.loss_cls.head != f'detloss_plugin.{type(self).__name__}':
            raise ValueError(
                f'{type(self).__name__} needs loss_cls {self.ranking_losses}; '
                f'{type(self.loss_cls).__name__} is called by bbox_head=dict(type='
                f'{self.loss_cls.head!r})')
        self.loss_cls.attach(self)  # called once per batch by loss_by_feat

    def gather_batch(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> SimpleNamespace:
        """See :func:`gather_anchor_batch`."""
        return gather_anchor_batch(self, cls_scores, bbox_preds, batch_gt_instances,
                                   batch_img_metas, batch_gt_instances_ignore)

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        b = self.gather_batch(cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
                              batch_gt_instances_ignore)
        loss_cls = self.loss_cls(b.cls_score, b.labels, b.label_weights)
        loss_bbox = self.loss_bbox(b.bbox_pred, b.bbox_targets, b.bbox_weights,
                                   avg_factor=b.avg_factor)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)


def flatten_levels(levels: List[Tensor], num_imgs: int, channels: int) -> Tensor:
    """``[M, channels]`` from per-level ``[num_imgs, A * channels, H, W]`` maps:
    image-major, then level, then position and anchor (mmdet's target order)."""
    return torch.cat([lvl.permute(0, 2, 3, 1).reshape(num_imgs, -1, channels)
                      for lvl in levels], dim=1).reshape(-1, channels)


def gather_anchor_batch(head, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                        batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                        batch_gt_instances_ignore: OptInstanceList = None) -> SimpleNamespace:
    """The batch of an mmdet ``AnchorHead`` (RetinaNet, RPN), every level and image
    aligned (image-major, then level, then position, the order of mmdet's
    ``labels_list[l]`` rows): ``cls_score`` ``[M, C]``, ``labels``, ``label_weights``
    ``[M]``, ``bbox_pred``, ``bbox_targets``, ``bbox_weights`` ``[M, 4]`` (decoded boxes
    with ``reg_decoded_bbox``), ``anchors`` ``[M, 4]`` and mmdet's ``avg_factor``."""
    featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
    device = cls_scores[0].device
    anchor_list, valid_flag_list = head.get_anchors(featmap_sizes, batch_img_metas,
                                                    device=device)
    targets = head.get_targets(anchor_list, valid_flag_list, batch_gt_instances,
                               batch_img_metas,
                               batch_gt_instances_ignore=batch_gt_instances_ignore)
    (labels_list, label_weights_list, bbox_targets_list, bbox_weights_list,
     avg_factor) = targets[:5]
    num_imgs = len(batch_img_metas)
    out = SimpleNamespace(avg_factor=avg_factor)
    out.cls_score = flatten_levels(cls_scores, num_imgs, head.cls_out_channels)
    out.labels = torch.cat(labels_list, dim=1).reshape(-1)
    out.label_weights = torch.cat(label_weights_list, dim=1).reshape(-1)
    out.bbox_pred = flatten_levels(bbox_preds, num_imgs, head.bbox_coder.encode_size)
    width = out.bbox_pred.shape[-1]
    out.bbox_targets = torch.cat(bbox_targets_list, dim=1).reshape(-1, width)
    out.bbox_weights = torch.cat(bbox_weights_list, dim=1).reshape(-1, width)
    out.anchors = torch.cat([torch.cat(a) for a in anchor_list]).reshape(-1, 4)
    if head.reg_decoded_bbox:
        out.bbox_pred = head.bbox_coder.decode(out.anchors, out.bbox_pred)
        out.bbox_targets = out.bbox_targets.reshape(-1, 4)
        out.bbox_weights = out.bbox_weights.reshape(-1, 4)
    return out
