r"""``detloss_plugin.RankingAssigner``: ranking-based assignment (RKA) of Xu et al.,
"Detecting tiny objects in aerial images: A normalized Wasserstein distance and a new
benchmark", ISPRS J. 2022, https://arxiv.org/abs/2206.13996.

For tiny objects a fixed IoU (or NWD) threshold leaves many ground truths with no
positive prior at all. RKA ranks the priors of each ground truth by their similarity
(NWD in the paper) and makes the top ``k`` positives, whatever their value::

    rpn=dict(assigner=dict(type='detloss_plugin.RankingAssigner', topk=2,
                           neg_iou_thr=0.3,
                           iou_calculator=dict(type='detloss_plugin.BboxOverlaps2D',
                                               mode='nwd')))

A prior is

- **positive** (``gt_inds = j + 1``) when it is among the ``topk`` most similar priors
  of ground truth ``j`` (ties at the k-th value included, as the reference);
- **negative** (0) otherwise, when its largest similarity to any ground truth is below
  ``neg_iou_thr`` (0.3);
- **ignored** (-1) otherwise.

Departures from the reference (mmdet 2.x ``RankingAssigner``): a prior in the top k of
several ground truths goes to the one it is most similar to (the reference gives it to
the last in index order); priors ignored through ``gt_bboxes_ignore`` are masked: never
positive and left out of the ranking (the reference writes -1 into the similarity,
which a raw GIoU can also take).
Vectorised: no Python loop over ground truths.
"""
from typing import Optional

import torch
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS

from detloss_plugin.registry import TASK_UTILS

__all__ = ['RankingAssigner']


@TASK_UTILS.register_module()
class RankingAssigner(BaseAssigner):
    """Top-k ranking assignment (module docstring).

    Args:
        topk: positives per ground truth (2, the paper's), >= 1.
        neg_iou_thr: priors whose best similarity is below it are negatives (0.3).
        iou_calculator: config of the similarity
            (``dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd')``).
        ignore_iof_thr: IoF with ``gt_instances_ignore`` above which a prior is
            ignored (-1: off). ignore_wrt_candidates: IoF relative to the prior (True)
            or to the ignored box.
        gpu_assign_thr: with more ground truths than this, assign on the CPU (-1: never).
    """

    def __init__(self, topk: int = 2, neg_iou_thr: float = 0.3,
                 iou_calculator: dict = dict(type='detloss_plugin.BboxOverlaps2D',
                                             mode='nwd'),
                 ignore_iof_thr: float = -1, ignore_wrt_candidates: bool = True,
                 gpu_assign_thr: int = -1) -> None:
        if not isinstance(topk, int) or isinstance(topk, bool) or topk < 1:
            raise ValueError(f'topk must be an integer >= 1, got {topk!r}')
        if not isinstance(neg_iou_thr, (int, float)) or isinstance(neg_iou_thr, bool):
            raise TypeError(f'neg_iou_thr must be a number, got {type(neg_iou_thr).__name__}')
        self.topk = topk
        self.neg_iou_thr = float(neg_iou_thr)
        self.iou_calculator = MMDET_TASK_UTILS.build(iou_calculator)
        self.ignore_iof_thr = ignore_iof_thr
        self.ignore_wrt_candidates = ignore_wrt_candidates
        self.gpu_assign_thr = gpu_assign_thr

    def assign(self, pred_instances, gt_instances, gt_instances_ignore=None,
               **kwargs) -> AssignResult:
        """Assign ``pred_instances.priors`` (``(n, 4)``) to ``gt_instances.bboxes``
        (``(k, 4)``, labels ``(k,)``); returns mmdet's ``AssignResult``."""
        priors = pred_instances.priors
        gt_bboxes = gt_instances.bboxes
        gt_labels = gt_instances.labels
        gt_ignore = None if gt_instances_ignore is None else gt_instances_ignore.bboxes
        device = priors.device
        if self.gpu_assign_thr > 0 and gt_bboxes.shape[0] > self.gpu_assign_thr:
            priors, gt_bboxes, gt_labels = priors.cpu(), gt_bboxes.cpu(), gt_labels.cpu()
            gt_ignore = None if gt_ignore is None else gt_ignore.cpu()
        overlaps = self.iou_calculator(gt_bboxes, priors)
        ignored = torch.zeros(priors.shape[0], dtype=torch.bool, device=priors.device)
        if (self.ignore_iof_thr > 0 and gt_ignore is not None and gt_ignore.numel() > 0
                and priors.numel() > 0):
            if self.ignore_wrt_candidates:
                iof = self.iou_calculator(priors, gt_ignore, mode='iof').max(dim=1).values
            else:
                iof = self.iou_calculator(gt_ignore, priors, mode='iof').max(dim=0).values
            ignored = iof > self.ignore_iof_thr
        result = self.assign_wrt_ranking(overlaps, gt_labels, ignored)
        result.gt_inds = result.gt_inds.to(device)
        result.max_overlaps = result.max_overlaps.to(device)
        result.labels = result.labels.to(device)
        return result

    def assign_wrt_ranking(self, overlaps: torch.Tensor, gt_labels: torch.Tensor,
                           ignored: Optional[torch.Tensor] = None) -> AssignResult:
        """The assignment from the ``(num_gts, num_priors)`` similarity matrix."""
        num_gts, num_priors = overlaps.shape
        gt_inds = overlaps.new_full((num_priors,), -1, dtype=torch.long)
        labels = overlaps.new_full((num_priors,), -1, dtype=torch.long)
        if num_gts == 0 or num_priors == 0:
            if num_gts == 0:
                gt_inds.fill_(0)   # no ground truth: everything is background
            return AssignResult(num_gts, gt_inds, overlaps.new_zeros((num_priors,)),
                                labels=labels)
        if ignored is None:
            ignored = torch.zeros(num_priors, dtype=torch.bool, device=overlaps.device)
        max_overlaps = overlaps.max(dim=0).values
        gt_inds[(max_overlaps < self.neg_iou_thr) & ~ignored] = 0
        # ignored priors take no place in the ranking
        minus_inf = overlaps.new_tensor(float('-inf'))
        ranked = torch.where(ignored[None, :], minus_inf, overlaps)
        k = min(self.topk, num_priors)
        kth = ranked.topk(k, dim=1).values[:, -1:]             # (num_gts, 1)
        selected = (ranked >= kth) & ~ignored[None, :]
        best = torch.where(selected, overlaps, minus_inf)
        best_gt = best.max(dim=0).indices
        positive = selected.any(dim=0)
        gt_inds = torch.where(positive, best_gt + 1, gt_inds)
        labels = torch.where(positive, gt_labels[best_gt], labels)
        return AssignResult(num_gts, gt_inds, max_overlaps, labels=labels)
