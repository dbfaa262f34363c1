r"""Gradient Harmonizing Mechanism: GHM-C and GHM-R, vectorised.

Li, Liu and Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019,
https://arxiv.org/abs/1811.05181; reference code libuyu/GHM_Detection (which became
mmdet's ``GHMC`` / ``GHMR``).

Each example (an element of the classification or regression output) has a gradient
norm :math:`g \in [0, 1]`. The range is cut into ``bins`` unit regions; with
:math:`R_b` the number of valid examples whose :math:`g` falls in region :math:`b`,
:math:`n` the number of non-empty regions and :math:`N` the number of valid examples,
the harmonising weight is

.. math:: \beta_i = \frac{N}{n\,R_{b(i)}}

and the loss is :math:`\frac{1}{N}\sum_i \beta_i L_i`: every non-empty region
contributes the mean loss of its examples, divided by :math:`n`. With ``momentum``
:math:`\mu > 0`, :math:`R_b` is replaced by an exponential moving average over calls,
:math:`S_b \leftarrow \mu S_b + (1 - \mu) R_b`, updated only for regions that are
non-empty in the current call (as the reference code does; :math:`S` starts at 0, so
the first call weighs by :math:`1 / (1 - \mu)` more).

Region edges are those of the reference: ``arange(bins + 1) / bins`` in float32, the
last edge moved to ``1 + 1e-6`` (GHM-C) or ``1e3`` (GHM-R); an example falls in region
``b`` when ``edges[b] <= g < edges[b + 1]``.

Nothing here synchronises with the host: regions are found with ``bucketize``,
counted with ``scatter_add`` in int64 (exact for any batch size), and all per-region
arithmetic stays on the device. Under ``torch.distributed`` the counts can be summed
over ranks (``all_reduce``), see :func:`ghm_weights`.
"""
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_positive, check_tensor, upcast

__all__ = ['GHMWeights', 'ghm_edges', 'ghm_weights', 'ghmc_loss', 'ghmr_loss',
           'authentic_smooth_l1', 'GHMC_LAST_EDGE', 'GHMR_LAST_EDGE']

GHMC_LAST_EDGE = 1.0 + 1e-6
GHMR_LAST_EDGE = 1e3


class GHMWeights(NamedTuple):
    """``weight``: :math:`\\beta_i` per element (0 on invalid elements), the shape of
    ``g``. ``total``: the normaliser :math:`N` as a 0-d tensor (:math:`N / W` under
    ``W`` synchronised ranks, see :func:`ghm_weights`), at least 1. ``acc_sum``: the
    updated moving average ``Tensor[bins]`` (float32), or None without momentum."""
    weight: Tensor
    total: Tensor
    acc_sum: Optional[Tensor]


def ghm_edges(bins: int, last_edge: float, device=None) -> Tensor:
    """Region edges ``Tensor[bins + 1]`` (float32), as the reference computes them."""
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f'bins must be a positive integer, got {bins!r}')
    edges = torch.arange(bins + 1, dtype=torch.float32, device=device) / bins
    edges[-1] = last_edge
    return edges


def _dist_world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def ghm_weights(g: Tensor, valid: Tensor, edges: Tensor, momentum: float = 0.0,
                acc_sum: Optional[Tensor] = None, sync: bool = True) -> GHMWeights:
    r"""Harmonising weights :math:`\beta_i = N / (n R_{b(i)})` from gradient norms.

    Args:
        g: gradient norms, any shape, in [0, 1] (no gradient is taken through them).
        valid: bool tensor of the shape of ``g``; invalid elements are not counted and
            get weight 0.
        edges: ``Tensor[bins + 1]`` from :func:`ghm_edges`.
        momentum: :math:`\mu` in [0, 1); 0 uses the current counts only.
        acc_sum: ``Tensor[bins]``, the moving average before this call (required when
            ``momentum > 0``; not modified: the new value is returned).
        sync: when ``torch.distributed`` is initialised with more than one rank, sum the
            region counts and :math:`N` over all ranks before computing the weights
            (one ``all_reduce`` of ``bins + 1`` int64 numbers). The paper's density is
            a statistic of the whole mini-batch, which data-parallel training splits
            across ranks, so this is what the paper's semantics need; it also keeps the
            moving average identical on every rank. The returned ``total`` is then
            :math:`N_{global} / W`, so that ``sum(beta * loss) / total``, averaged by
            DDP over ``W`` ranks, equals the single-process loss of the whole batch.
            Every rank must make the same calls (true for a head's per-level loss).
    """
    bins = edges.numel() - 1
    g = g.detach()
    edges = edges.to(device=g.device, dtype=g.dtype)
    index = (torch.bucketize(g, edges, right=True) - 1).clamp(0, bins - 1)
    stats = torch.zeros(bins + 1, dtype=torch.int64, device=g.device)
    stats[:bins].scatter_add_(0, index.flatten(), valid.flatten().to(torch.int64))
    stats[bins] = valid.sum()
    per_bin, total, new_acc = _region_weights(stats, momentum, acc_sum, sync)
    weight = per_bin.to(g.dtype)[index]
    weight = torch.where(valid, weight, torch.zeros_like(weight))
    return GHMWeights(weight, total.to(g.dtype), new_acc)


def check_momentum(momentum: float) -> None:
    """``momentum`` is a number in [0, 1)."""
    check_positive('momentum', momentum, allow_zero=True)
    if momentum >= 1:
        raise ValueError(f'momentum must be in [0, 1), got {momentum}')


def _region_weights(stats: Tensor, momentum: float, acc_sum: Optional[Tensor], sync: bool):
    """From ``stats`` (int64 ``Tensor[bins + 1]``: valid elements per region, then
    their total) to ``(per_bin, total, new_acc)``: the weight of each region
    ``Tensor[bins]`` (float64, 0 for empty regions), the normaliser (float64, divided
    by the number of synchronised ranks) and the updated moving average (float32, or
    None). ``stats`` is summed over ranks first when ``sync`` applies."""
    check_momentum(momentum)
    bins = stats.numel() - 1
    world = _dist_world_size() if sync else 1
    if world > 1:
        dist.all_reduce(stats)
    counts = stats[:bins].to(torch.float64)
    total = stats[bins].to(torch.float64).clamp(min=1)
    nonempty = counts > 0
    num_nonempty = nonempty.sum().clamp(min=1)
    new_acc = None
    if momentum > 0:
        if acc_sum is None:
            raise ValueError('acc_sum is required when momentum > 0')
        prev = acc_sum.detach().to(device=stats.device, dtype=torch.float64)
        density = torch.where(nonempty, momentum * prev + (1 - momentum) * counts, prev)
        new_acc = density.to(torch.float32)
    else:
        density = counts
    per_bin = torch.where(nonempty, total / (num_nonempty * density.clamp(min=1e-12)),
                          torch.zeros_like(density))
    return per_bin, total / world, new_acc


def ghmc_loss(logits: Tensor, targets: Tensor, valid: Tensor, bins: int = 10,
              momentum: float = 0.0, acc_sum: Optional[Tensor] = None,
              sync: bool = True):
    r"""GHM-C: binary cross-entropy weighted by :math:`\beta`, per element.

    The gradient norm of sigmoid BCE with respect to the logit is
    :math:`g = |\sigma(x) - t|`.

    Args:
        logits, targets: ``Tensor[N, C]`` (0/1 targets).
        valid: bool ``Tensor[N, C]``.
        bins, momentum, acc_sum, sync: see :func:`ghm_weights` (paper: 10 regions in
            the ablation, 30 in the released config; momentum 0.75).

    Returns:
        ``(loss, total, acc_sum)``: :math:`\beta_i\,BCE_i` as ``Tensor[N, C]``, the
        normaliser :math:`N` (0-d) and the updated moving average (or None). The
        paper's loss is ``loss.sum() / total``.
    """
    check_tensor('logits', logits)
    check_tensor('targets', targets)
    if logits.shape != targets.shape or valid.shape != logits.shape:
        raise ValueError(f'logits, targets and valid must have one shape, got '
                         f'{tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(valid.shape)}')
    logits, targets, dtype = upcast(logits, targets)
    edges = ghm_edges(bins, GHMC_LAST_EDGE, logits.device)
    g = (torch.sigmoid(logits.detach()) - targets).abs()
    w = ghm_weights(g, valid, edges, momentum, acc_sum, sync)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    return (bce * w.weight).to(dtype), w.total, w.acc_sum


def authentic_smooth_l1(diff: Tensor, mu: float = 0.02) -> Tensor:
    r"""Authentic smooth L1 (ASL1) of GHM-R: :math:`\sqrt{d^2 + \mu^2} - \mu`; smooth
    everywhere, quadratic near 0 and L1-like for :math:`|d| \gg \mu`."""
    return torch.sqrt(diff * diff + mu * mu) - mu


def ghmr_loss(pred: Tensor, target: Tensor, valid: Tensor, mu: float = 0.02, bins: int = 10,
              momentum: float = 0.0, acc_sum: Optional[Tensor] = None, sync: bool = True):
    r"""GHM-R: authentic smooth L1 weighted by :math:`\beta`, per element.

    The gradient norm of ASL1 is :math:`g = |d| / \sqrt{d^2 + \mu^2} \in [0, 1)`.

    Args:
        pred, target: any equal shapes (box deltas ``Tensor[N, 4]`` in heads).
        valid: bool tensor of that shape.
        mu: ASL1 parameter, 0.02 in the paper.
        bins, momentum, acc_sum, sync: see :func:`ghm_weights`.

    Returns:
        ``(loss, total, acc_sum)`` as :func:`ghmc_loss`.
    """
    check_tensor('pred', pred)
    check_tensor('target', target)
    check_positive('mu', mu)
    if pred.shape != target.shape or valid.shape != pred.shape:
        raise ValueError(f'pred, target and valid must have one shape, got '
                         f'{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(valid.shape)}')
    pred, target, dtype = upcast(pred, target)
    diff = pred - target
    with torch.no_grad():
        g = diff.abs() / torch.sqrt(diff * diff + mu * mu)
    w = ghm_weights(g, valid, ghm_edges(bins, GHMR_LAST_EDGE, pred.device), momentum,
                    acc_sum, sync)
    return (authentic_smooth_l1(diff, mu) * w.weight).to(dtype), w.total, w.acc_sum
