r"""Rank & Sort loss and aLRP loss (Oksuz et al.), on the ranking core of AP-loss.

Both rank every (anchor, class) entry of the batch jointly, with the piecewise-linear
step :math:`H(x) = \mathrm{clip}(x / 2\delta + 1/2, 0, 1)` of AP-loss, and train with an
error-driven ("identity") update built in forward: backward returns the update times
the incoming gradient, not a derivative of the value (which is piecewise constant).
Neither is twice differentiable. The sums over negatives use the shared core
(:mod:`detloss_plugin.functional.ranking_core`: one sort of the positives'
breakpoints, one ``searchsorted`` of every entry, prefix sums; no loop over positives);
each loss is one custom operator (``torch.ops.detloss.rank_sort_loss``,
``torch.ops.detloss.alrp_loss``) with a fake kernel, so that ``torch.compile`` traces
through it.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import ranking_core as core
from ._checks import check_positive, check_tensor, upcast
from .ranking import (PositiveRanks, _require, add_to_positives, check_op_logits,
                      check_ranking_inputs, check_ranking_values, kernel_mode, nan_if_any_nan,
                      not_twice_differentiable, used_anchors)

__all__ = ['rank_sort_loss', 'alrp_loss', 'RS_EPS', 'ALRP_EPS']

#: the references' thresholds below which a positive's error is not distributed
#: (Rank & Sort: ``eps = 1e-10``; aLRP: ``eps = 1e-5``)
RS_EPS = 1e-10
ALRP_EPS = 1e-5


# ------------------------------------------------------------------- Rank & Sort loss
def _rs_update(logits: Tensor, targets: Tensor, delta: float, mode: int):
    """Rank & Sort loss: ``(ranking, sorting, ranking update, sorting update)`` for
    ``logits`` / ``targets`` ``[n, 1]`` (float64 sums)."""
    dev = logits.device
    f64 = core.F64
    kernel = core.ranking_kernel(logits, mode)
    flat_t = targets.reshape(-1)
    # the positives, compacted (P x P terms below; one host synchronisation on an
    # accelerator, as the reference's boolean indexing)
    pos = (flat_t > 0).nonzero().squeeze(1)
    num_pos = pos.shape[0]
    rank_grad = torch.empty_like(logits)
    sort_grad = torch.zeros_like(logits)
    zero = torch.zeros((), dtype=logits.dtype, device=dev)
    if num_pos == 0:
        rank_grad.zero_()
        return zero, zero.clone(), rank_grad, sort_grad
    s = logits.reshape(-1)[pos].to(f64)
    y = flat_t[pos].to(f64)
    valid = torch.ones(num_pos, dtype=torch.bool, device=dev)
    bps = core.Breakpoints(s, valid, delta)

    # false positives above each positive: the negatives (targets == 0) of the batch
    counts, offsets = bps.new_sums()
    finish = core.entry_passes(bps, logits, lambda a, b: targets[a:b] == 0, kernel,
                               counts, offsets, rank_grad)
    fp = bps.step_sums(counts, offsets)

    # positive-positive terms, a block of rows i at a time: H[i, k] = H(s_k - s_i)
    rank_pos = torch.empty_like(s)
    sort_err = torch.empty_like(s)
    sort_self = torch.empty_like(s)
    sort_spread = torch.zeros_like(s)
    rows = max(1, core.CHUNK_ELEMENTS // num_pos)
    for a in range(0, num_pos, rows):
        b = min(a + rows, num_pos)
        diff = s.unsqueeze(0) - s[a:b].unsqueeze(1)
        diff = torch.where(s.unsqueeze(0) == s[a:b].unsqueeze(1), torch.zeros_like(diff), diff)
        h = (diff / (2 * delta) + 0.5).clamp(0, 1)  # H(0) = 1/2: i itself counts 1/2
        rp = h.sum(1)
        current = (h * (1 - y)).sum(1) / rp
        # the target order: the positives of IoU >= y_i above i
        above = y.unsqueeze(0) >= y[a:b].unsqueeze(1)
        t = torch.where(above, h, torch.zeros_like(h))
        target = (t * (1 - y)).sum(1) / t.sum(1)
        err = current - target
        # the cause of the sorting error: positives of lower IoU scored above i
        missorted = torch.where(above, torch.zeros_like(h), h)
        denom = missorted.sum(1)
        spread = denom > RS_EPS
        share = torch.where(spread, err / torch.where(spread, denom, torch.ones_like(denom)),
                            torch.zeros_like(err))
        sort_spread += (missorted * share.unsqueeze(1)).sum(0)
        rank_pos[a:b], sort_err[a:b] = rp, err
        sort_self[a:b] = torch.where(spread, -err, torch.zeros_like(err))

    rank = rank_pos + fp
    rank_err = fp / rank
    has_fp = fp > RS_EPS
    # ranking update: -error at i, the error spread over the negatives above i in
    # proportion to H (bg_relations / FP), i.e. coefficient error_i / FP_i = 1 / rank_i
    finish(*bps.spread(torch.where(has_fp, 1.0 / rank, torch.zeros_like(rank)) / num_pos))
    flat_rank = rank_grad.view(-1)
    flat_rank.index_add_(0, pos, (torch.where(has_fp, -rank_err, torch.zeros_like(rank_err))
                                  / num_pos).to(rank_grad.dtype))
    sort_grad.view(-1).index_add_(0, pos, ((sort_self + sort_spread) / num_pos)
                                  .to(sort_grad.dtype))
    return (rank_err.mean().to(logits.dtype), sort_err.mean().to(logits.dtype), rank_grad,
            sort_grad)


@torch.library.custom_op('detloss::rank_sort_loss', mutates_args=())
def _rank_sort_op(logits: Tensor, targets: Tensor, delta: float,
                  mode: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(ranking, sorting, ranking update, sorting update)`` for ``logits`` float32 /
    float64 and ``targets`` of the same shape (checked by :func:`rank_sort_loss`)."""
    check_op_logits('detloss::rank_sort_loss', logits)
    if targets.shape != logits.shape:
        raise ValueError(f'detloss::rank_sort_loss takes targets of the shape of logits '
                         f'{tuple(logits.shape)}, got {tuple(targets.shape)}')
    shape = logits.shape
    out = _rs_update(logits.reshape(-1, 1), targets.reshape(-1, 1).to(logits.dtype), delta,
                     mode)
    out = out[:2] + (out[2].reshape(shape), out[3].reshape(shape))
    return nan_if_any_nan(logits, *out)


@_rank_sort_op.register_fake
def _(logits, targets, delta, mode):
    return (logits.new_empty(()), logits.new_empty(()), torch.empty_like(logits),
            torch.empty_like(logits))


def _save_updates(ctx, inputs, output):
    """Both ops return ``(loss_a, loss_b, update_a, update_b)``: keep the two updates
    (the error-driven gradients built in forward) for the backward."""
    ctx.save_for_backward(output[2], output[3])
    ctx.mark_non_differentiable(output[2], output[3])


def _rs_backward(ctx, g_rank, g_sort, _g2, _g3):
    not_twice_differentiable('Rank & Sort loss')
    rank_update, sort_update = ctx.saved_tensors
    return (rank_update * g_rank.to(rank_update.dtype) +
            sort_update * g_sort.to(sort_update.dtype)), None, None, None


_rank_sort_op.register_autograd(_rs_backward, setup_context=_save_updates)


def check_rs_targets(targets: Tensor) -> None:
    if targets.numel():
        ok = targets <= 1  # False for NaN too
        _require('targets', ok.all(),
                 'hold IoUs in (0, 1] at the positives, 0 at the negatives and a negative '
                 'value (-1) at ignored entries (NaN and values above 1 are refused)',
                 lambda: targets[~ok][:4].tolist())


def rank_sort_loss(logits: Tensor, targets: Tensor, delta: float = 0.5,
                   cpu_kernel: Optional[bool] = None) -> Tuple[Tensor, Tensor]:
    r"""Rank & Sort loss, ``(ranking_loss, sorting_loss)``, with the error-driven update.

    Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation",
    ICCV 2021, https://arxiv.org/abs/2107.11669; reference code kemaloksuz/RankSortLoss
    (``mmdet/models/losses/ranking_losses.py``, ``RankSort``).

    Every entry of ``logits`` is an (anchor, class) score. Positives :math:`\mathcal P`
    are the entries with ``targets > 0`` (their continuous target :math:`y`, the IoU of
    the prediction with its ground truth), negatives :math:`\mathcal N` those with
    ``targets == 0``; entries with ``targets < 0`` are ignored. For a positive
    :math:`i`, with :math:`H_{ik} = H(s_k - s_i)` (:math:`H_{ii} = 1/2`),

    .. math::
        \mathrm{rank}^+(i) = \sum_{k \in \mathcal P} H_{ik}, \quad
        N_{FP}(i) = \sum_{j \in \mathcal N} H(s_j - s_i), \quad
        \ell_R(i) = \frac{N_{FP}(i)}{\mathrm{rank}^+(i) + N_{FP}(i)},

    .. math::
        \ell_S(i) = \frac{\sum_{k \in \mathcal P} H_{ik} (1 - y_k)}{\mathrm{rank}^+(i)}
        - \frac{\sum_{k \in \mathcal P,\, y_k \ge y_i} H_{ik} (1 - y_k)}
               {\sum_{k \in \mathcal P,\, y_k \ge y_i} H_{ik}}

    (the current minus the target sorting error), and the outputs are
    :math:`\frac{1}{|\mathcal P|}\sum_i \ell_R(i)` and
    :math:`\frac{1}{|\mathcal P|}\sum_i \ell_S(i)`.

    Update (backward), divided by :math:`|\mathcal P|`, as the reference: where
    :math:`N_{FP}(i) > 10^{-10}`, :math:`-\ell_R(i)` to positive :math:`i` and
    :math:`H(s_j - s_i) / \mathrm{rank}(i)` to every negative :math:`j` (the ranking
    error spread over the negatives above :math:`i`); where the positives of lower IoU
    scored above :math:`i`, :math:`M_{ik} = [y_k < y_i] H_{ik}`, sum to more than
    :math:`10^{-10}`, :math:`-\ell_S(i)` to :math:`i` and
    :math:`\ell_S(i) M_{ik} / \sum_k M_{ik}` to every positive :math:`k`.

    The reference returns the whole update through the ranking output (the sorting
    output carries none). Here it is split consistently: the ranking output carries the
    ranking part, the sorting output the sorting part, so ``ranking + sorting`` (what
    the heads minimise) has the reference's update exactly, and a weight on either
    output scales its own part.

    Args:
        logits: ``Tensor[...]`` scores of every entry of the batch (any shape; the
            heads pass ``Tensor[n, C]``).
        targets: ``Tensor`` of the shape of ``logits``: the IoU in (0, 1] at the
            positives, 0 at the negatives, a negative value (``-1``) at ignored
            entries. NaN and values above 1 are refused.
        delta: half-width of the step's linear part (0.5, paper and reference),
            finite and > 0.
        cpu_kernel: as for :func:`~detloss_plugin.functional.ap_loss`.

    Returns:
        ``(ranking_loss, sorting_loss)``, 0-d tensors (float32 for half-precision
        input). With no positive: two zeros and a zero update (the reference fails).

    Implementation. The negatives go through the shared core (sorted breakpoints,
    ``searchsorted``, prefix sums; no loop over positives); the positive-positive terms,
    whose target order is a second key (the IoU), as blocks of rows of the
    :math:`P \times P` matrix :math:`H_{ik}` (about :math:`2^{22}` entries at a time).
    Compacting the positives reads their count on the host: one synchronisation per
    call on an accelerator (the reference does the same, and one more per positive).

    Departures: the reference drops the negatives below :math:`\min_i s_i - \delta`
    first (they have :math:`H = 0` against every positive: the same value and update);
    sums in float64 (the reference: float32).
    """
    check_tensor('logits', logits)
    check_tensor('targets', targets)
    if targets.shape != logits.shape:
        raise ValueError(f'targets must have the shape of logits {tuple(logits.shape)}, got '
                         f'{tuple(targets.shape)}')
    if targets.device != logits.device:
        raise ValueError(f'targets must be on the device of logits ({logits.device}), got '
                         f'{targets.device}')
    check_positive('delta', delta)
    check_rs_targets(targets)
    x, _ = upcast(logits)
    ranking, sorting, _, _ = _rank_sort_op(x, targets.detach(), float(delta),
                                           kernel_mode(cpu_kernel))
    return ranking, sorting


# ------------------------------------------------------------------------ aLRP loss
def hard_rank_sums(s: Tensor, weights: Tensor, valid: Tensor) -> Tuple[Tensor, Tensor]:
    r"""``(above, below)`` for every slot ``i``: :math:`\sum_{k \ne i} [s_k > s_i] w_k`
    and :math:`\sum_{k \ne i} [s_k < s_i] w_k`, ties (:math:`s_k = s_i`, k != i)
    counting :math:`w_k / 2` in both (``weights`` 0 off ``valid``)."""
    key = torch.where(valid, s, torch.full_like(s, -math.inf))
    sorted_key, order = torch.sort(key)
    cum = torch.cat([weights.new_zeros(1), weights[order].cumsum(0)])
    left = torch.searchsorted(sorted_key, key)  # #{k: s_k < s_i}
    right = torch.searchsorted(sorted_key, key, right=True)  # #{k: s_k <= s_i}
    below, upto = cum[left], cum[right]
    ties = upto - below - weights  # the other entries equal to s_i
    return cum[-1] - upto + ties / 2, below + ties / 2


def _alrp_update(logits: Tensor, labels: Tensor, used: Tensor, loc: Tensor, delta: float,
                 mode: int):
    """aLRP loss: ``(classification, localisation, logits update, loc_losses
    gradient)``."""
    r = PositiveRanks(logits, labels, used, delta, mode)
    valid, w_pos = r.valid, r.w_pos
    l_slot = loc.to(core.F64) if r.rows is None else loc[r.rows].to(core.F64)
    l_slot = torch.where(valid, l_slot, torch.zeros_like(l_slot))
    num_pos = valid.sum()
    norm = num_pos.clamp(min=1).to(core.F64)
    rank = r.a + r.b
    prec = r.a / rank
    cls_loss = torch.where(num_pos > 0, 1 - (prec * w_pos).sum() / norm,
                           torch.zeros_like(norm))

    # each positive's error: its false positives and the localisation errors of the
    # positives above it (smoothed by H, i itself excluded), over its rank
    has_fp = valid & (r.b > ALRP_EPS)
    err = torch.where(has_fp, (r.pair_sums(l_slot) + r.b) / rank, torch.zeros_like(rank))
    # negatives: the error spread in proportion to H (bg_relations / FP)
    r.finish(*r.bps.spread(torch.where(has_fp, err / r.b.clamp_min(ALRP_EPS),
                                       torch.zeros_like(err)) / norm))
    add_to_positives(r.grad, r.rows, r.cols, -err / norm)

    # localisation: (l_i + the losses of the positives ranked above i) / rank_i (rank
    # without gradient), ranked by the scores themselves, ties counting 1/2
    inv_rank = torch.where(valid, 1.0 / rank, torch.zeros_like(rank)) / norm
    above, _ = hard_rank_sums(r.s, l_slot, valid)
    loc_loss = ((l_slot + above) * inv_rank).sum()
    _, below = hard_rank_sums(r.s, inv_rank, valid)
    g_slot = torch.where(valid, inv_rank + below, torch.zeros_like(below))
    if r.rows is None:
        loc_grad = g_slot.to(loc.dtype)
    else:
        loc_grad = torch.zeros_like(loc).index_put_((r.rows,), g_slot.to(loc.dtype))
    return cls_loss.to(logits.dtype), loc_loss.to(loc.dtype), r.grad, loc_grad


@torch.library.custom_op('detloss::alrp_loss', mutates_args=())
def _alrp_op(logits: Tensor, labels: Tensor, used: Tensor, loc_losses: Tensor, delta: float,
             mode: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(classification, localisation, logits update, loc_losses gradient)``
    (checked by :func:`alrp_loss`)."""
    check_op_logits('detloss::alrp_loss', logits)
    if logits.dim() != 2 or not (labels.shape == used.shape == loc_losses.shape ==
                                 logits.shape[:1]):
        raise ValueError(f'detloss::alrp_loss takes logits [n, C], labels, used and '
                         f'loc_losses [n], got {tuple(logits.shape)}, {tuple(labels.shape)}, '
                         f'{tuple(used.shape)}, {tuple(loc_losses.shape)}')
    out = _alrp_update(logits, labels.long(), used.bool(), loc_losses, delta, mode)
    is_pos = used & (labels < logits.shape[1])
    # a NaN score anywhere, or a NaN localisation loss at a positive, gives NaN
    bad_loc = torch.where(is_pos, loc_losses, torch.zeros_like(loc_losses))
    return nan_if_any_nan(torch.cat([logits.reshape(-1), bad_loc.to(logits.dtype)]), *out)


@_alrp_op.register_fake
def _(logits, labels, used, loc_losses, delta, mode):
    return (logits.new_empty(()), loc_losses.new_empty(()), torch.empty_like(logits),
            torch.empty_like(loc_losses))


def _alrp_backward(ctx, g_cls, g_loc, _g2, _g3):
    not_twice_differentiable('aLRP loss')
    cls_update, loc_grad = ctx.saved_tensors
    return (cls_update * g_cls.to(cls_update.dtype), None, None,
            loc_grad * g_loc.to(loc_grad.dtype), None, None)


_alrp_op.register_autograd(_alrp_backward, setup_context=_save_updates)


def alrp_loss(cls_score: Tensor, labels: Tensor, loc_losses: Tensor,
              label_weights: Optional[Tensor] = None, delta: float = 1.0,
              cpu_kernel: Optional[bool] = None) -> Tuple[Tensor, Tensor]:
    r"""aLRP loss, ``(classification_loss, localisation_loss)``.

    Oksuz et al., "A Ranking-based, Balanced Loss Function Unifying Classification and
    Localisation in Object Detection", NeurIPS 2020, https://arxiv.org/abs/2009.13592;
    reference code kemaloksuz/aLRPLoss (``mmdet/models/losses/alrp_loss.py`` and
    ``alrp_loss_retina_head.py``).

    Inputs as :func:`~detloss_plugin.functional.ap_loss` (positives: a used anchor's
    label column; negatives: the other columns of used anchors), plus ``loc_losses``
    ``Tensor[n]``, each positive anchor's localisation loss :math:`\ell_i \ge 0` (the
    head passes the GIoU loss of its decoded box, as the reference; values at
    non-positives are not read). With :math:`H` of AP-loss,
    :math:`\mathrm{rank}^+(i) = 1 + \sum_{k \in \mathcal P, k \ne i} H(s_k - s_i)`,
    :math:`N_{FP}(i) = \sum_{j \in \mathcal N} H(s_j - s_i)` and
    :math:`\mathrm{rank}(i) = \mathrm{rank}^+(i) + N_{FP}(i)`:

    .. math::
        L_{cls} = 1 - \frac{1}{|\mathcal P|}\sum_i
                  \frac{\mathrm{rank}^+(i)}{\mathrm{rank}(i)}, \qquad
        L_{loc} = \frac{1}{|\mathcal P|}\sum_i \frac{\ell_i + \sum_{k \ne i}
                  [s_k > s_i]\,\ell_k}{\mathrm{rank}(i)}

    (ties :math:`s_k = s_i` count 1/2 in :math:`L_{loc}`; :math:`\mathrm{rank}` is a
    constant there). :math:`L_{loc}` is differentiable w.r.t. ``loc_losses``, not
    w.r.t. the scores. :math:`L_{cls}`'s update (backward), divided by
    :math:`|\mathcal P|`: where :math:`N_{FP}(i) > 10^{-5}`, with the aLRP error
    :math:`e_i = (N_{FP}(i) + \sum_{k \ne i} H(s_k - s_i)\,\ell_k) / \mathrm{rank}(i)`,
    :math:`-e_i` to positive :math:`i` and :math:`e_i H(s_j - s_i) / N_{FP}(i)` to every
    negative :math:`j` (the reference's update, localisation errors of the positives
    above included).

    Args:
        cls_score: ``Tensor[n, C]`` logits of every anchor of the batch.
        labels: integer ``Tensor[n]`` in ``0..C`` (``C`` = background).
        loc_losses: ``Tensor[n]`` localisation losses (read at the positives; the
            gradient of :math:`L_{loc}` flows into it).
        label_weights: ``Tensor[n]`` (``>= 0``) or None; 0 = ignored anchor.
        delta: half-width of the step's linear part (1.0, paper and reference).
        cpu_kernel: as for :func:`~detloss_plugin.functional.ap_loss`.

    Returns:
        ``(classification_loss, localisation_loss)``, 0-d tensors. The heads weight
        :math:`L_{loc}` by the self-balance factor (see ``ALRPRetinaHead``). With no
        positive: zeros and zero updates.

    Implementation: the ranking core shared with AP-loss (no loop over positives, no
    host synchronisation); the localisation ranks by one sort and ``searchsorted``.

    Departures: the reference's localisation term ranks the positives by their sorted
    order (``cumsum`` of the losses in descending score), so tied scores are ordered
    arbitrarily; here ties count 1/2 each way (the average over those orders; for
    distinct scores the reference's value exactly). Sums in float64.
    """
    labels = check_ranking_inputs(cls_score, labels, label_weights)
    check_tensor('loc_losses', loc_losses)
    if loc_losses.shape != labels.shape:
        raise ValueError(f'loc_losses must have shape {tuple(labels.shape)} (one per '
                         f'anchor), got {tuple(loc_losses.shape)}')
    if loc_losses.device != cls_score.device:
        raise ValueError(f'loc_losses must be on the device of cls_score '
                         f'({cls_score.device}), got {loc_losses.device}')
    check_positive('delta', delta)
    check_ranking_values(labels, label_weights, cls_score.shape[1])
    x, _ = upcast(cls_score)
    loc, _ = upcast(loc_losses)
    used = used_anchors(labels, label_weights)
    cls, loc_loss, _, _ = _alrp_op(x, labels, used, loc, float(delta),
                                   kernel_mode(cpu_kernel))
    return cls, loc_loss
