"""Heads trained with Rank & Sort loss: ``RankSortATSSHead``, ``RankSortRPNHead``, and
the routine they share with ``RankSortBBoxHead`` (Faster R-CNN's RoI head).

Rank & Sort loss (Oksuz et al., ICCV 2021, https://arxiv.org/abs/2107.11669) ranks every
(anchor, class) entry of the batch, positives sorted by the IoU of their predicted box.
As the reference's heads (kemaloksuz/RankSortLoss ``RankBasedATSSHead``,
``RankBasedRPNHead``, ``RankBasedShared2FCBBoxHead``): the classification targets are
the IoU of each positive's decoded prediction with its ground truth; the box loss
(GIoU) of the positives is weighted by their highest class probability and rescaled to
the value of ranking + sorting (no box-loss weight to tune).
"""
from types import SimpleNamespace
from typing import List, Optional

import torch
from torch import Tensor

from mmdet.models.dense_heads import ATSSHead, RPNHead
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import InstanceList, OptInstanceList

from detloss_plugin.functional._checks import check_choice, check_positive
from detloss_plugin.registry import MODELS
from .alrp_retina_head import positive_box_losses
from .ranking_retina_head import flatten_levels, gather_anchor_batch

__all__ = ['RankSortATSSHead', 'RankSortRPNHead', 'rank_sort_head_losses',
           'build_rank_sort_loss']

# the reference's floor of the box loss's normaliser
_EPS = 1e-12


def build_rank_sort_loss(head, loss_cls: Optional[dict]) -> dict:
    """The config of ``loss_cls`` (default ``RankSortLoss``), sigmoid scores."""
    loss_cls = dict(type='detloss_plugin.RankSortLoss') if loss_cls is None else dict(loss_cls)
    loss_cls.setdefault('use_sigmoid', True)
    return loss_cls


def check_rank_sort_loss(head) -> None:
    if type(head.loss_cls).__name__ != 'RankSortLoss':
        raise ValueError(f'{type(head).__name__} needs loss_cls=dict(type='
                         f'"detloss_plugin.RankSortLoss"), got {type(head.loss_cls).__name__}')
    head.loss_cls.attach(head)


def rank_sort_head_losses(head, cls_score: Tensor, labels: Tensor, label_weights: Tensor,
                          pos: Tensor, per_box: Tensor, pred: Tensor, target: Tensor,
                          num_imgs: int = 1, ranking: str = 'batch'):
    """``(loss_rank, loss_sort, loss_bbox)`` of the reference's heads.

    ``cls_score`` ``[M, C]``, ``labels`` / ``label_weights`` ``[M]`` (mmdet's: ``C`` =
    background, weight 0 = ignored), ``pos`` the positives' rows, ``per_box`` their box
    losses ``[P]``, ``pred`` / ``target`` their decoded boxes ``[P, 4]``. ``ranking``
    ``'image'`` ranks the ``num_imgs`` equal blocks of rows separately."""
    # classification targets: the IoU of the prediction at its class, 0 for the other
    # entries of used anchors, -1 for ignored anchors
    used = (label_weights > 0).unsqueeze(1)
    targets = torch.where(used, cls_score.new_zeros(()), cls_score.new_full((), -1.0))
    targets = targets.expand_as(cls_score).clone()
    iou = bbox_overlaps(pred.detach(), target.detach(), is_aligned=True)
    targets[pos, labels[pos]] = iou.to(targets.dtype)
    if ranking == 'batch':
        loss_rank, loss_sort = head.loss_cls(cls_score, targets)
    else:  # per image: the mean over the images with a positive
        outs, has_pos = [], []
        for score, tgt in zip(cls_score.chunk(num_imgs), targets.chunk(num_imgs)):
            outs.append(torch.stack(head.loss_cls(score, tgt)))
            has_pos.append((tgt > 0).any())
        outs, has_pos = torch.stack(outs), torch.stack(has_pos).to(cls_score.dtype)
        mean = (outs * has_pos.unsqueeze(1)).sum(0) / has_pos.sum().clamp_min(1)
        loss_rank, loss_sort = mean[0], mean[1]
    # box loss weighted by the positives' best class probability, rescaled to the
    # ranking losses' value (both factors without gradient, as the reference)
    weight = cls_score.detach().sigmoid().max(dim=1).values[pos]
    total = weight.sum()
    total = torch.where(total < _EPS, torch.ones_like(total), total)
    loss_bbox = (weight * per_box).sum() / total
    scale = (loss_rank + loss_sort).detach() / \
        loss_bbox.detach().clamp_min(torch.finfo(loss_bbox.dtype).tiny)
    return loss_rank, loss_sort, loss_bbox * scale


@MODELS.register_module()
class RankSortATSSHead(ATSSHead):
    """An ``ATSSHead`` trained with Rank & Sort loss (no centerness branch).

    Args:
        loss_cls: ``dict(type='detloss_plugin.RankSortLoss')`` (default; ``delta`` 0.5).
        loss_bbox: a box loss giving one value per box with ``reduction_override=
            'none'`` on decoded boxes (the reference: ``GIoULoss``). Its value is
            rescaled to ranking + sorting, so its ``loss_weight`` has no effect.
        ranking: ``'batch'`` (default, the reference: every entry of the batch ranked
            jointly) or ``'image'`` (each image ranked on its own, the losses averaged
            over the images that have positives). Under data-parallel training each
            process ranks its own images, as the reference (no gathering across GPUs).
        everything else: as ``ATSSHead`` (``loss_centerness`` is not used).

    Losses: ``loss_rank``, ``loss_sort`` (see
    :func:`detloss_plugin.functional.rank_sort_loss`) and ``loss_bbox`` =
    :math:`\\frac{\\sum_i w_i \\ell_i}{\\sum_i w_i} \\cdot
    \\frac{L_R + L_S}{\\mathrm{sg}(\\cdot)}` with :math:`w_i` the positive's highest class
    probability (no gradient) and the rescaling factor without gradient. Positive
    anchors whose prediction does not overlap their ground truth (IoU 0) are negatives
    of the ranking, as in the reference.
    """

    def __init__(self, *args, loss_cls: Optional[dict] = None, ranking: str = 'batch',
                 **kwargs) -> None:
        check_choice('ranking', ranking, ('batch', 'image'))
        super().__init__(*args, loss_cls=build_rank_sort_loss(self, loss_cls), **kwargs)
        check_rank_sort_loss(self)
        self.ranking = ranking

    def _init_layers(self) -> None:
        super()._init_layers()
        del self.atss_centerness  # the reference has no centerness branch

    def forward_single(self, x: Tensor, scale) -> tuple:
        cls_feat, reg_feat = x, x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)
        return self.atss_cls(cls_feat), scale(self.atss_reg(reg_feat)).float()

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=cls_scores[0].device)
        (anchor_list, labels_list, label_weights_list, bbox_targets_list, _,
         _) = self.get_targets(anchor_list, valid_flag_list, batch_gt_instances,
                               batch_img_metas, batch_gt_instances_ignore)
        num_imgs = len(batch_img_metas)
        # every level and image, image-major (the order of the targets' rows)
        b = SimpleNamespace()
        b.cls_score = flatten_levels(cls_scores, num_imgs, self.cls_out_channels)
        b.bbox_pred = flatten_levels(bbox_preds, num_imgs, 4)
        b.anchors = torch.cat(anchor_list, dim=1).reshape(-1, 4)
        b.bbox_targets = torch.cat(bbox_targets_list, dim=1).reshape(-1, 4)
        if self.reg_decoded_bbox:  # the targets are boxes: so are the predictions
            b.bbox_pred = self.bbox_coder.decode(b.anchors, b.bbox_pred)
        labels = torch.cat(labels_list, dim=1).reshape(-1)
        label_weights = torch.cat(label_weights_list, dim=1).reshape(-1)
        pos = ((labels < self.num_classes) & (label_weights > 0)).nonzero().squeeze(1)
        per_box, pred, target = positive_box_losses(self, b, pos)
        loss_rank, loss_sort, loss_bbox = rank_sort_head_losses(
            self, b.cls_score, labels, label_weights, pos, per_box, pred, target, num_imgs,
            self.ranking)
        return dict(loss_rank=loss_rank, loss_sort=loss_sort, loss_bbox=loss_bbox)


@MODELS.register_module()
class RankSortRPNHead(RPNHead):
    """mmdet's ``RPNHead`` trained with Rank & Sort loss (the reference's
    ``RankBasedRPNHead``): objectness ranked over every anchor of the batch, IoU
    targets, the box loss weighted and rescaled as in :class:`RankSortATSSHead`, and
    every loss times ``head_weight`` (0.2 in the reference).

    Args:
        loss_cls: ``dict(type='detloss_plugin.RankSortLoss')`` (default).
        loss_bbox: one value per box with ``reduction_override='none'`` on decoded
            boxes (the reference: ``GIoULoss``).
        head_weight: multiplies the three losses (0.2).
        **kwargs: as ``RPNHead``.

    The reference samples every anchor: ``train_cfg.rpn.sampler`` is
    ``dict(type='PseudoSampler')``.

    Losses (``loss_rank``, ``loss_sort``, ``loss_bbox``; the detector logs them as
    ``rpn_loss_*``).
    """

    def __init__(self, *args, loss_cls: Optional[dict] = None, head_weight: float = 0.2,
                 **kwargs) -> None:
        check_positive('head_weight', head_weight)
        super().__init__(*args, loss_cls=build_rank_sort_loss(self, loss_cls), **kwargs)
        check_rank_sort_loss(self)
        self.head_weight = float(head_weight)

    def loss_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        b = gather_anchor_batch(self, cls_scores, bbox_preds, batch_gt_instances,
                                batch_img_metas, batch_gt_instances_ignore)
        pos = ((b.labels < self.num_classes) & (b.label_weights > 0)).nonzero().squeeze(1)
        per_box, pred, target = positive_box_losses(self, b, pos)
        losses = rank_sort_head_losses(self, b.cls_score, b.labels, b.label_weights, pos,
                                       per_box, pred, target)
        return {name: self.head_weight * value
                for name, value in zip(('loss_rank', 'loss_sort', 'loss_bbox'), losses)}
