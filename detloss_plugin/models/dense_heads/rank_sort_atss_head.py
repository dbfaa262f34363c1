"""``RankSortATSSHead``: ATSS trained with Rank & Sort loss.

Rank & Sort loss (Oksuz et al., ICCV 2021, https://arxiv.org/abs/2107.11669) ranks every
(anchor, class) entry of the batch, positives sorted by the IoU of their predicted box.
As the reference's ``RankBasedATSSHead``: mmdet's ``ATSSHead`` (layers, ATSS assigner,
inference) without the centerness branch; the classification targets are the IoU of
each positive's decoded prediction with its ground truth; the box loss (GIoU) of the
positives is weighted by their highest class probability and rescaled to the value of
ranking + sorting (no box-loss weight to tune).
"""
from types import SimpleNamespace
from typing import List, Optional

import torch
from torch import Tensor

from mmdet.models.dense_heads import ATSSHead
from mmdet.structures.bbox import bbox_overlaps
from mmdet.utils import InstanceList, OptInstanceList

from detloss_plugin.functional._checks import check_choice
from detloss_plugin.registry import MODELS
from .alrp_retina_head import positive_box_losses
from .ranking_retina_head import flatten_levels

__all__ = ['RankSortATSSHead']

# the reference's floor of the box loss's normaliser
_EPS = 1e-12


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
        loss_cls = dict(type='detloss_plugin.RankSortLoss') if loss_cls is None \
            else dict(loss_cls)
        loss_cls.setdefault('use_sigmoid', True)
        check_choice('ranking', ranking, ('batch', 'image'))
        super().__init__(*args, loss_cls=loss_cls, **kwargs)
        if getattr(self.loss_cls, 'head', None) != 'detloss_plugin.RankSortATSSHead':
            raise ValueError(f'RankSortATSSHead needs loss_cls=dict(type='
                             f'"detloss_plugin.RankSortLoss"), got '
                             f'{type(self.loss_cls).__name__}')
        self.loss_cls.attach(self)
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
        # classification targets: the IoU of the prediction at its class, 0 for the
        # other entries of used anchors, -1 for ignored anchors
        targets = torch.where((label_weights > 0).unsqueeze(1), b.cls_score.new_zeros(()),
                              b.cls_score.new_full((), -1.0)).expand_as(b.cls_score).clone()
        iou = bbox_overlaps(pred.detach(), target.detach(), is_aligned=True)
        targets[pos, labels[pos]] = iou.to(targets.dtype)
        loss_rank, loss_sort = self._rank(b.cls_score, targets, num_imgs)

        # box loss weighted by the positives' best class probability, rescaled to the
        # ranking losses' value (both factors without gradient, as the reference)
        weight = b.cls_score.detach().sigmoid().max(dim=1).values[pos]
        total = weight.sum()
        total = torch.where(total < _EPS, torch.ones_like(total), total)
        loss_bbox = (weight * per_box).sum() / total
        scale = (loss_rank + loss_sort).detach() / \
            loss_bbox.detach().clamp_min(torch.finfo(loss_bbox.dtype).tiny)
        return dict(loss_rank=loss_rank, loss_sort=loss_sort, loss_bbox=loss_bbox * scale)

    def _rank(self, cls_score: Tensor, targets: Tensor, num_imgs: int):
        if self.ranking == 'batch':
            return self.loss_cls(cls_score, targets)
        # per image: the mean over the images with a positive
        outs, has_pos = [], []
        for score, tgt in zip(cls_score.chunk(num_imgs), targets.chunk(num_imgs)):
            outs.append(torch.stack(self.loss_cls(score, tgt)))
            has_pos.append((tgt > 0).any())
        outs, has_pos = torch.stack(outs), torch.stack(has_pos).to(cls_score.dtype)
        mean = (outs * has_pos.unsqueeze(1)).sum(0) / has_pos.sum().clamp_min(1)
        return mean[0], mean[1]

