#!/usr/bin/env python
"""Benchmark suite ``ranking``: AP-loss, DR loss, Rank & Sort loss and aLRP loss against
their reference codes.

    python -m tools.benchmarks.ranking --device cpu --threads 1 [--quick]
    python -m tools.benchmark --suite ranking          # through the dispatcher

- **AP-loss**, forward + backward of one batch-wide call (what ``RankingRetinaHead``
  does): ``detloss_plugin.functional.ap_loss`` (default: the C kernel on CPU; and its
  torch path, ``cpu_kernel=False``, which accelerators run) against the reference's per-positive
  loop (cccorn/AP-loss ``lib/model/aploss.py``, ``AP_loss``), transcribed below with
  its device hard-coding removed and nothing else changed (float32, one Python
  iteration per positive, negatives below ``min(positive) - delta`` dropped first).
  Full size: ``10^5`` anchors x 80 classes with 200 positives; ``--quick``: ``2 x 10^4``
  x 80 with 50. Scores ``N(-4, 1)`` for every entry (a detector early in training: the
  reference can drop few negatives). The updates are compared (max abs difference).
- **DR loss**, forward + backward: ``detloss_plugin.functional.dr_loss`` against the
  reference's ``SigmoidDRLoss.forward`` (idstcv/DR_loss), transcribed below, with the
  labels converted to its convention (1..C foreground, 0 background, -1 ignored).

- **Rank & Sort loss** and **aLRP loss**, forward + backward:
  ``detloss_plugin.functional.rank_sort_loss`` / ``alrp_loss`` against the references'
  per-positive loops (kemaloksuz/RankSortLoss ``RankSort``, kemaloksuz/aLRPLoss
  ``aLRPLoss`` with the head's localisation term), transcribed below with the device
  hard-coding removed (float32, one Python iteration per positive). Positives get IoU
  targets / localisation losses drawn uniformly.

``run(args)`` returns ``torch.utils.benchmark`` Measurements (label ``'ranking'``,
sub_label = loss and size, description = implementation; detloss's default path carries
``metadata['ref']``, the reference of the ratios); ``extras(args)`` the largest value and
gradient differences against the references.
"""
import argparse
import math
from typing import Dict, List

import torch
import torch.utils.benchmark as benchmark

from detloss_plugin.functional.rank_sort import alrp_loss, rank_sort_loss
from detloss_plugin.functional.ranking import ap_loss, dr_loss

FULL = dict(anchors=100_000, classes=80, positives=200)
QUICK = dict(anchors=20_000, classes=80, positives=50)


# --------------------------------------------------------------- reference transcriptions
def reference_ap_loss(logits: torch.Tensor, targets: torch.Tensor, delta: float = 1.0):
    """cccorn/AP-loss ``AP_loss(logits, targets)``: ``targets`` 1 positive, 0 negative,
    -1 ignored, shape of ``logits``. Returns ``(update, loss)``; one iteration per
    positive."""
    dev = logits.device
    grad = torch.zeros(logits.shape, device=dev)
    metric = torch.zeros(1, device=dev)
    if torch.max(targets) <= 0:
        return grad, metric
    labels_p = targets == 1
    fg_logits = logits[labels_p]
    threshold_logit = torch.min(fg_logits) - delta
    valid_labels_n = (targets == 0) & (logits >= threshold_logit)
    valid_bg_logits = logits[valid_labels_n]
    valid_bg_grad = torch.zeros(len(valid_bg_logits), device=dev)
    fg_num = len(fg_logits)
    prec = torch.zeros(fg_num, device=dev)
    order = torch.argsort(fg_logits)
    max_prec = 0
    for ii in order:
        tmp1 = torch.clamp((fg_logits - fg_logits[ii]) / (2 * delta) + 0.5, min=0, max=1)
        tmp2 = torch.clamp((valid_bg_logits - fg_logits[ii]) / (2 * delta) + 0.5, min=0, max=1)
        a = torch.sum(tmp1) + 0.5
        b = torch.sum(tmp2)
        tmp2 /= (a + b)
        current_prec = a / (a + b)
        if max_prec <= current_prec:
            max_prec = current_prec
        else:
            tmp2 *= ((1 - max_prec) / (1 - current_prec))
        valid_bg_grad += tmp2
        prec[ii] = max_prec
    grad[valid_labels_n] = valid_bg_grad
    grad[labels_p] = -(1 - prec)
    fg_num = max(fg_num, 1)
    grad /= fg_num
    metric = torch.sum(prec, dim=0, keepdim=True) / fg_num
    return grad, 1 - metric


class ReferenceAPLoss(torch.autograd.Function):
    """The reference's error-driven Function, classification part only."""

    @staticmethod
    def forward(ctx, logits, targets):
        grad, loss = reference_ap_loss(logits.detach(), targets)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, out_grad):
        (grad,) = ctx.saved_tensors
        return grad * out_grad, None


def reference_dr_loss(logits, targets, pos_lambda=1.0, neg_lambda=0.1 / math.log(3.5),
                      L=6.0, tau=4.0, margin=0.5):
    """idstcv/DR_loss ``SigmoidDRLoss.forward``: ``targets`` ``(n,)`` in 1..C, 0
    background, -1 ignored."""
    num_classes = logits.shape[1]
    class_range = torch.arange(1, num_classes + 1, dtype=targets.dtype,
                               device=targets.device).unsqueeze(0)
    t = targets.unsqueeze(1)
    pos_ind = t == class_range
    neg_ind = (t != class_range) * (t >= 0)
    pos_prob = logits[pos_ind].sigmoid()
    neg_prob = logits[neg_ind].sigmoid()
    neg_q = torch.softmax(neg_prob / neg_lambda, dim=0)
    neg_dist = torch.sum(neg_q * neg_prob)
    if pos_prob.numel() > 0:
        pos_q = torch.softmax(-pos_prob / pos_lambda, dim=0)
        pos_dist = torch.sum(pos_q * pos_prob)
        return tau * torch.log(1. + torch.exp(L * (neg_dist - pos_dist + margin))) / L
    return tau * torch.log(1. + torch.exp(L * (neg_dist - 1. + margin))) / L


def reference_rank_sort(logits, targets, delta=0.5, eps=1e-10):
    """kemaloksuz/RankSortLoss ``RankSort.forward``: flat ``targets`` (IoU > 0
    positive, 0 negative, else ignored). Returns ``(update, ranking, sorting)``."""
    dev = logits.device
    grads = torch.zeros(logits.shape, device=dev)
    fg_labels = targets > 0.
    fg_logits, fg_targets = logits[fg_labels], targets[fg_labels]
    fg_num = len(fg_logits)
    threshold_logit = torch.min(fg_logits) - delta
    relevant_bg_labels = (targets == 0) & (logits >= threshold_logit)
    relevant_bg_logits = logits[relevant_bg_labels]
    relevant_bg_grad = torch.zeros(len(relevant_bg_logits), device=dev)
    sorting_error = torch.zeros(fg_num, device=dev)
    ranking_error = torch.zeros(fg_num, device=dev)
    fg_grad = torch.zeros(fg_num, device=dev)
    for ii in torch.argsort(fg_logits):
        fg_relations = torch.clamp((fg_logits - fg_logits[ii]) / (2 * delta) + 0.5, 0, 1)
        bg_relations = torch.clamp((relevant_bg_logits - fg_logits[ii]) / (2 * delta) + 0.5,
                                   0, 1)
        rank_pos = torch.sum(fg_relations)
        fp_num = torch.sum(bg_relations)
        rank = rank_pos + fp_num
        ranking_error[ii] = fp_num / rank
        current_sorting_error = torch.sum(fg_relations * (1 - fg_targets)) / rank_pos
        iou_relations = fg_targets >= fg_targets[ii]
        target_sorted_order = iou_relations * fg_relations
        rank_pos_target = torch.sum(target_sorted_order)
        target_sorting_error = torch.sum(target_sorted_order * (1 - fg_targets)) / rank_pos_target
        sorting_error[ii] = current_sorting_error - target_sorting_error
        if fp_num > eps:
            fg_grad[ii] -= ranking_error[ii]
            relevant_bg_grad += bg_relations * (ranking_error[ii] / fp_num)
        missorted_examples = (~iou_relations) * fg_relations
        sorting_pmf_denom = torch.sum(missorted_examples)
        if sorting_pmf_denom > eps:
            fg_grad[ii] -= sorting_error[ii]
            fg_grad += missorted_examples * (sorting_error[ii] / sorting_pmf_denom)
    grads[fg_labels] = fg_grad / fg_num
    grads[relevant_bg_labels] = relevant_bg_grad / fg_num
    return grads, ranking_error.mean(), sorting_error.mean()


def reference_alrp(logits, targets, regression_losses, delta=1.0, eps=1e-5):
    """kemaloksuz/aLRPLoss ``aLRPLoss.forward`` (flat ``targets`` 1 / 0 / -1) and the
    head's localisation term. Returns ``(update, cls_loss, loc_loss)``."""
    dev = logits.device
    grads = torch.zeros(logits.shape, device=dev)
    fg_labels = targets == 1
    fg_logits = logits[fg_labels]
    fg_num = len(fg_logits)
    threshold_logit = torch.min(fg_logits) - delta
    relevant_bg_labels = (targets == 0) & (logits >= threshold_logit)
    relevant_bg_logits = logits[relevant_bg_labels]
    relevant_bg_grad = torch.zeros(len(relevant_bg_logits), device=dev)
    rank = torch.zeros(fg_num, device=dev)
    prec = torch.zeros(fg_num, device=dev)
    fg_grad = torch.zeros(fg_num, device=dev)
    order = torch.argsort(fg_logits)
    for ii in order:
        fg_relations = torch.clamp((fg_logits - fg_logits[ii]) / (2 * delta) + 0.5, 0, 1)
        fg_relations[ii] = 0
        bg_relations = torch.clamp((relevant_bg_logits - fg_logits[ii]) / (2 * delta) + 0.5,
                                   0, 1)
        rank_pos = 1 + torch.sum(fg_relations)
        fp_num = torch.sum(bg_relations)
        rank[ii] = rank_pos + fp_num
        prec[ii] = rank_pos / rank[ii]
        if fp_num > eps:
            fg_grad[ii] = -(torch.sum(fg_relations * regression_losses) + fp_num) / rank[ii]
            relevant_bg_grad += bg_relations * (-fg_grad[ii] / fp_num)
    grads[fg_labels] = fg_grad
    grads[relevant_bg_labels] = relevant_bg_grad
    grads /= fg_num
    ordered = regression_losses[order].flip(dims=[0])
    loc_loss = (torch.cumsum(ordered, dim=0) / rank[order].flip(dims=[0])).mean()
    return grads, 1 - prec.mean(), loc_loss


class _ReferenceUpdate(torch.autograd.Function):
    """A reference's value(s) forward, its update backward (through the first output)."""

    @staticmethod
    def forward(ctx, logits, fn, *args):
        grad, *values = fn(logits.detach(), *args)
        ctx.save_for_backward(grad)
        return torch.stack([v.reshape(()) for v in values]).sum()

    @staticmethod
    def backward(ctx, out_grad):
        (grad,) = ctx.saved_tensors
        return (grad * out_grad, None) + (None,) * 3


# ------------------------------------------------------------------------------ inputs
def make_case(sizes: Dict[str, int], device: str, seed: int = 0):
    """Logits ``N(-4, 1)``; ``positives`` foreground anchors with random classes, 5% of
    the anchors ignored, the rest background. Returns mmdet-style inputs and the
    references' targets."""
    g = torch.Generator().manual_seed(seed)
    n, c, p = sizes['anchors'], sizes['classes'], sizes['positives']
    logits = torch.randn(n, c, generator=g) - 4.0
    labels = torch.full((n,), c, dtype=torch.long)
    perm = torch.randperm(n, generator=g)
    labels[perm[:p]] = torch.randint(0, c, (p,), generator=g)
    weights = torch.ones(n)
    weights[perm[p:p + n // 20]] = 0.0
    # AP-loss reference: targets (n, C) of 1 / 0 / -1
    ap_targets = torch.zeros(n, c)
    pos = labels < c
    ap_targets[pos.nonzero().squeeze(1), labels[pos]] = 1.0
    ap_targets[weights == 0] = -1.0
    # DR reference: 1..C, 0 background, -1 ignored
    dr_targets = torch.where(pos, labels + 1, torch.zeros_like(labels))
    dr_targets[weights == 0] = -1
    to = dict(device=device)
    return (logits.to(**to), labels.to(**to), weights.to(**to), ap_targets.to(**to),
            dr_targets.to(**to))


def make_rs_alrp_case(sizes: Dict[str, int], device: str, seed: int = 0):
    """The case of :func:`make_case` plus each positive's IoU target (Rank & Sort) and
    localisation loss (aLRP), uniform in [0.05, 0.95] and [0, 1]: ``(logits, labels,
    weights, rs_targets (n, C) IoU / 0 / -1, loc_losses (n,), alrp_targets,
    positive loc losses in the reference's order)``."""
    logits, labels, weights, ap_targets, _ = make_case(sizes, 'cpu', seed)
    g = torch.Generator().manual_seed(seed + 1)
    n = labels.shape[0]
    iou = torch.rand(n, generator=g) * 0.9 + 0.05
    loc = torch.rand(n, generator=g)
    rs_targets = ap_targets.clone()
    fg = ap_targets == 1
    rs_targets[fg] = iou[fg.nonzero()[:, 0]]
    pos_rows = ((labels < logits.shape[1]) & (weights > 0)).nonzero().squeeze(1)
    to = dict(device=device)
    return (logits.to(**to), labels.to(**to), weights.to(**to), rs_targets.to(**to),
            loc.to(**to), ap_targets.reshape(-1).to(**to), loc[pos_rows].to(**to))


def _fwd_bwd(fn):
    def step(logits, *args):
        x = logits.detach().requires_grad_(True)
        fn(x, *args).sum().backward()
        return x.grad
    return step


OURS_AP = _fwd_bwd(lambda x, labels, weights: ap_loss(x, labels, weights))
OURS_AP_TORCH = _fwd_bwd(lambda x, labels, weights: ap_loss(x, labels, weights,
                                                            cpu_kernel=False))
REF_AP = _fwd_bwd(lambda x, targets: ReferenceAPLoss.apply(x, targets))
OURS_DR = _fwd_bwd(lambda x, labels, weights: dr_loss(x, labels, weights))
REF_DR = _fwd_bwd(lambda x, targets: reference_dr_loss(x, targets))
OURS_RS = _fwd_bwd(lambda x, targets: sum(rank_sort_loss(x, targets)))
REF_RS = _fwd_bwd(lambda x, targets: _ReferenceUpdate.apply(x.reshape(-1), reference_rank_sort,
                                                             targets.reshape(-1)))
OURS_ALRP = _fwd_bwd(lambda x, labels, loc, weights: alrp_loss(x, labels, loc, weights)[0])
REF_ALRP = _fwd_bwd(lambda x, targets, loc: _ReferenceUpdate.apply(x.reshape(-1),
                                                                   reference_alrp, targets, loc))


def _sizes(args):
    return QUICK if args.quick else FULL


def run(args) -> List[benchmark.Measurement]:
    """One Measurement per case, contender and thread count: ``label`` ``'ranking'``,
    ``sub_label`` the case, ``description`` the contender; detloss's default path is the
    reference of each case's ratios (``metadata['ref']``)."""
    sizes = _sizes(args)
    logits, labels, weights, ap_targets, dr_targets = make_case(sizes, args.device)
    shape = f"{sizes['anchors']} x {sizes['classes']}, {sizes['positives']} positives"
    ap_case, dr_case = f'AP-loss fwd+bwd ({shape})', f'DR loss fwd+bwd ({shape})'
    cases = [
        (ap_case, 'detloss ap_loss', OURS_AP, (logits, labels, weights), 2.0, True),
        (ap_case, 'detloss ap_loss, torch path (accelerators)', OURS_AP_TORCH,
         (logits, labels, weights), 2.0, False),
        # the reference AP-loss takes seconds: one timed call is enough
        (ap_case, 'reference loop (cccorn/AP-loss)', REF_AP, (logits, ap_targets), 0.0, False),
        (dr_case, 'detloss dr_loss', OURS_DR, (logits, labels, weights), 2.0, True),
        (dr_case, 'reference (idstcv/DR_loss)', REF_DR, (logits, dr_targets), 2.0, False),
    ]
    _, _, _, rs_targets, loc, alrp_targets, pos_loc = make_rs_alrp_case(sizes, args.device)
    rs_case, alrp_case = f'Rank & Sort fwd+bwd ({shape})', f'aLRP fwd+bwd ({shape})'
    cases += [
        (rs_case, 'detloss rank_sort_loss', OURS_RS, (logits, rs_targets), 2.0, True),
        (rs_case, 'reference loop (kemaloksuz/RankSortLoss)', REF_RS, (logits, rs_targets),
         0.0, False),
        (alrp_case, 'detloss alrp_loss', OURS_ALRP, (logits, labels, loc, weights), 2.0,
         True),
        (alrp_case, 'reference loop (kemaloksuz/aLRPLoss)', REF_ALRP,
         (logits, alrp_targets, pos_loc), 0.0, False),
    ]
    results = []
    for threads in args.threads:
        for case, contender, fn, inputs, min_time, ref in cases:
            timer = benchmark.Timer(stmt='fn(*inputs)', globals=dict(fn=fn, inputs=inputs),
                                    num_threads=threads, label='ranking', sub_label=case,
                                    description=contender)
            fn(*inputs)  # warm-up
            m = timer.timeit(1) if min_time == 0 else timer.blocked_autorange(
                min_run_time=min_time)
            m.metadata = dict(ref=ref, device=args.device)
            results.append(m)
    return results


def extras(args) -> dict:
    """Largest differences against the references (same inputs as :func:`run`)."""
    sizes = _sizes(args)
    logits, labels, weights, ap_targets, dr_targets = make_case(sizes, args.device)
    out = {}
    g_ours = OURS_AP(logits, labels, weights)
    g_ref = REF_AP(logits, ap_targets)
    out['ap_loss_grad_max_abs_diff'] = float((g_ours - g_ref).abs().max())
    out['ap_loss_grad_max_abs'] = float(g_ref.abs().max())
    out['ap_loss_value_abs_diff'] = float(
        (ap_loss(logits, labels, weights) - ReferenceAPLoss.apply(logits, ap_targets)).abs())
    g_ours = OURS_DR(logits, labels, weights)
    g_ref = REF_DR(logits, dr_targets)
    out['dr_loss_grad_max_abs_diff'] = float((g_ours - g_ref).abs().max())
    out['dr_loss_grad_max_abs'] = float(g_ref.abs().max())
    out['dr_loss_value_abs_diff'] = float(
        (dr_loss(logits, labels, weights) - reference_dr_loss(logits, dr_targets)).abs())
    _, _, _, rs_targets, loc, alrp_targets, pos_loc = make_rs_alrp_case(sizes, args.device)
    g_ours, g_ref = OURS_RS(logits, rs_targets), REF_RS(logits, rs_targets).reshape(logits.shape)
    out['rank_sort_grad_max_abs_diff'] = float((g_ours - g_ref).abs().max())
    out['rank_sort_grad_max_abs'] = float(g_ref.abs().max())
    _, rank_ref, sort_ref = reference_rank_sort(logits.reshape(-1), rs_targets.reshape(-1))
    rank, sort = rank_sort_loss(logits, rs_targets)
    out['rank_sort_value_abs_diff'] = float(max((rank - rank_ref).abs(), (sort - sort_ref).abs()))
    g_ours = OURS_ALRP(logits, labels, loc, weights)
    g_ref = REF_ALRP(logits, alrp_targets, pos_loc).reshape(logits.shape)
    out['alrp_grad_max_abs_diff'] = float((g_ours - g_ref).abs().max())
    out['alrp_grad_max_abs'] = float(g_ref.abs().max())
    _, cls_ref, loc_ref = reference_alrp(logits.reshape(-1), alrp_targets, pos_loc)
    cls, loc_loss = alrp_loss(logits, labels, loc, weights)
    out['alrp_value_abs_diff'] = float(max((cls - cls_ref).abs(), (loc_loss - loc_ref).abs()))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description='AP-loss, DR, Rank & Sort and aLRP losses against '
                                            'their references')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, nargs='+', default=[1])
    p.add_argument('--quick', action='store_true', help='2 x 10^4 anchors, 50 positives')
    args = p.parse_args(argv)
    results = run(args)
    benchmark.Compare(results).print()
    refs = {(m.sub_label, m.num_threads): m for m in results if m.metadata['ref']}
    for m in results:
        ref = refs[(m.sub_label, m.num_threads)]
        if m is not ref:
            print(f'{m.sub_label} [{m.num_threads} thread(s)]: {m.description} / '
                  f'{ref.description} = {m.median / ref.median:.1f}x')
    for k, v in extras(args).items():
        print(f'{k}: {v:.3g}')


if __name__ == '__main__':
    main()
