r"""Ranking losses for one-stage detectors: AP-loss and DR loss.

Both replace the classification loss of a dense detector by an objective over *every*
(anchor, class) entry of the batch at once, so they are not element-wise: one call
returns one scalar for the whole batch. The inputs are mmdet's ``loss_cls`` inputs,
gathered over every FPN level and image (a ranking head does that, see
:class:`detloss_plugin.models.dense_heads.RankingRetinaHead`):

- ``cls_score`` ``Tensor[n, C]``: logits of every anchor;
- ``labels`` integer ``Tensor[n]`` (``uint8``, ``int8``, ``int16``, ``int32`` or
  ``int64``) in ``0..C``, ``C`` = background (mmdet's convention);
- ``label_weights`` ``Tensor[n]`` or None, every weight ``>= 0``: an anchor whose
  weight is 0 is ignored (neither positive nor negative); a weight ``> 0`` only marks
  the anchor as used (the ranking objectives have no per-anchor weight). A negative or
  NaN weight is refused.

An (anchor, class) entry is *positive* when the anchor is used and the class is its
label, *negative* when the anchor is used and the class is any other one (the other
classes of a positive anchor are negatives, as in both reference codes).

Value checks (labels in ``0..C``, weights ``>= 0``, a tensor ``avg_factor`` finite and
``> 0``): on the CPU a ``ValueError``; on an accelerator ``torch._assert_async`` (a
device assert, no host synchronisation). A NaN anywhere in ``cls_score`` (ignored
anchors included, as for mmdet's weighted losses) makes the loss NaN.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as TF
from torch import Tensor

from . import ranking_core as core
from ._checks import check_finite, check_positive, check_tensor, upcast

__all__ = ['ap_loss', 'dr_loss', 'ranking_entries', 'DR_NEG_LAMBDA', 'CPU_KERNEL']

#: DR loss's default negative temperature, ``0.1 / ln(3.5)`` (the reference's default).
DR_NEG_LAMBDA = 0.1 / math.log(3.5)

AvgFactor = Optional[Union[float, int, Tensor]]

# None: the ranking losses' two passes over the entries run in the C kernel
# (csrc/ap_loss.c) for float32 / float64 CPU tensors when it can be built, else in
# torch; False: always torch; True: like None, but an error instead of the fallback.
CPU_KERNEL: Optional[bool] = None

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def kernel_mode(cpu_kernel: Optional[bool]) -> int:
    """0 / 1 / 2 (see :func:`ranking_core.ranking_kernel`) for ``cpu_kernel``."""
    if cpu_kernel is None:
        cpu_kernel = CPU_KERNEL
    return 1 if cpu_kernel is None else (2 if cpu_kernel else 0)


# ----------------------------------------------------------------------------- inputs
def check_ranking_inputs(cls_score: Tensor, labels: Tensor,
                         label_weights: Optional[Tensor]) -> Tensor:
    """Checks the shapes and dtypes; returns ``labels`` as ``int64``."""
    check_tensor('cls_score', cls_score)
    if cls_score.dim() != 2 or cls_score.shape[1] < 1:
        raise ValueError(f'cls_score must have shape (n, C) with C >= 1 (logits of every '
                         f'anchor of the batch), got {tuple(cls_score.shape)}')
    if not isinstance(labels, Tensor):
        raise TypeError(f'labels must be a torch.Tensor, got {type(labels).__name__}')
    if labels.dtype not in _INT_DTYPES:
        raise TypeError(f'labels must be an integer tensor (uint8, int8, int16, int32 or '
                        f'int64), got dtype {labels.dtype}')
    n, c = cls_score.shape
    if labels.shape != (n,):
        raise ValueError(f'labels must have shape ({n},) for cls_score of shape ({n}, {c}), '
                         f'got {tuple(labels.shape)}')
    if labels.device != cls_score.device:
        raise ValueError(f'labels must be on the device of cls_score ({cls_score.device}), '
                         f'got {labels.device}')
    if label_weights is not None:
        if not isinstance(label_weights, Tensor):
            raise TypeError(f'label_weights must be a torch.Tensor or None, got '
                            f'{type(label_weights).__name__}')
        if label_weights.shape != (n,):
            raise ValueError(f'label_weights must have shape ({n},) (one weight per anchor), '
                             f'got {tuple(label_weights.shape)}')
        if label_weights.device != cls_score.device:
            raise ValueError(f'label_weights must be on the device of cls_score '
                             f'({cls_score.device}), got {label_weights.device}')
    return labels.long()


def _require(name: str, ok: Tensor, message: str, found) -> None:
    """``ok`` (a 0-d bool tensor) must hold: ``ValueError`` on the CPU (naming what was
    found), a device-side assert elsewhere and under ``torch.compile``."""
    if ok.device.type == 'cpu' and not torch.compiler.is_compiling():
        if not bool(ok):
            raise ValueError(f'{name} must {message}, got {found()}')
    else:
        torch._assert_async(ok, f'{name} must {message}')


def check_ranking_values(labels: Tensor, label_weights: Optional[Tensor], num_classes: int,
                         avg_factor: AvgFactor = None) -> None:
    """The value checks of the module docstring (what reads tensor contents)."""
    if labels.numel():
        _require('labels', ((labels >= 0) & (labels <= num_classes)).all(),
                 f'lie in [0, {num_classes}] ({num_classes} = background)',
                 lambda: f'values in [{int(labels.min())}, {int(labels.max())}]')
    if label_weights is not None and label_weights.numel():
        _require('label_weights', (label_weights >= 0).all(),
                 'be >= 0 (0 = ignored anchor, > 0 = used; NaN is refused)',
                 lambda: label_weights[~(label_weights >= 0)][:4].tolist())
    if isinstance(avg_factor, Tensor):
        _require('avg_factor', torch.isfinite(avg_factor).all() & (avg_factor > 0).all(),
                 'be finite and > 0', lambda: avg_factor.tolist())


def check_avg_factor(avg_factor: AvgFactor) -> None:
    """A Python number: finite and > 0; a tensor: one element (its value is checked by
    :func:`check_ranking_values`)."""
    if avg_factor is None:
        return
    if isinstance(avg_factor, Tensor):
        if avg_factor.numel() != 1 or avg_factor.dim() > 1:
            raise ValueError(f'avg_factor must be a number or a tensor of one element '
                             f'(shape () or (1,)), got shape {tuple(avg_factor.shape)}')
        if not (avg_factor.is_floating_point() or avg_factor.dtype in _INT_DTYPES):
            raise TypeError(f'avg_factor must be a real tensor, got dtype {avg_factor.dtype}')
        return
    check_positive('avg_factor', avg_factor)


def ranking_entries(labels: Tensor, label_weights: Optional[Tensor], num_classes: int):
    """``(pos, neg)``: boolean ``Tensor[n, C]`` masks of the positive and negative
    entries (see the module docstring)."""
    used = used_anchors(labels, label_weights)
    classes = torch.arange(num_classes, device=labels.device)
    is_label = labels.unsqueeze(1) == classes
    return is_label & used.unsqueeze(1), ~is_label & used.unsqueeze(1)


def used_anchors(labels: Tensor, label_weights: Optional[Tensor]) -> Tensor:
    if label_weights is None:
        return torch.ones_like(labels, dtype=torch.bool)
    return label_weights > 0


def positive_slots(logits: Tensor, labels: Tensor, used: Tensor, compact: bool):
    """The positives' slots: ``(rows, cols, s, valid)``. ``compact``: one slot per
    positive (``rows`` their anchors; reading them syncs an accelerator, so only the
    CPU does it); else one slot per anchor, non-positives masked (``rows`` None)."""
    c = logits.shape[1]
    is_fg = used & (labels < c)
    cols = labels.clamp(max=c - 1)
    if compact:
        rows = is_fg.nonzero().squeeze(1)
        cols = cols[rows]
        return rows, cols, logits[rows, cols].to(core.F64), \
            torch.ones(rows.shape[0], dtype=torch.bool, device=logits.device)
    return None, cols, logits.gather(1, cols.unsqueeze(1)).squeeze(1).to(core.F64), is_fg


def add_to_positives(grad: Tensor, rows: Optional[Tensor], cols: Tensor, g: Tensor) -> None:
    g = g.to(grad.dtype)
    if rows is None:
        grad.scatter_add_(1, cols.unsqueeze(1), g.unsqueeze(1))
    else:
        grad.index_put_((rows, cols), g, accumulate=True)


def negative_rows(labels: Tensor, used: Tensor, num_classes: int):
    classes = torch.arange(num_classes, device=labels.device)

    def rows(a: int, b: int) -> Tensor:
        return (labels[a:b].unsqueeze(1) != classes) & used[a:b].unsqueeze(1)
    return rows


def nan_if_any_nan(logits: Tensor, *outputs: Tensor):
    """Every output NaN where ``logits`` holds a NaN (no host synchronisation): a 0-d
    NaN or 0 is added to each (in place for the updates, which are new tensors)."""
    poison = torch.where(torch.isnan(logits).any(), math.nan, 0.0).to(core.F64)
    return tuple(o.add_(poison.to(o.dtype)) if o.dim() else o + poison.to(o.dtype)
                 for o in outputs)


def check_op_logits(name: str, logits: Tensor) -> None:
    """What the ranking operators accept (the Python functions upcast half precision
    before calling them)."""
    if logits.dtype not in (torch.float32, torch.float64):
        raise TypeError(f'{name} takes float32 or float64 scores (the functions upcast half '
                        f'precision), got {logits.dtype}')


def normaliser(num_pos: Tensor, avg_factor: Optional[Tensor], avg_number: float):
    if avg_factor is not None:
        return avg_factor.to(device=num_pos.device, dtype=core.F64).reshape(())
    if avg_number > 0:
        return avg_number
    return num_pos.clamp(min=1).to(core.F64)


class PositiveRanks:
    r"""What AP-loss and aLRP loss share, for the positives of ``logits`` ``[n, C]``
    (one per used foreground anchor, its logit in its own column):

    - ``rows, cols, s, valid, w_pos``: the slots (see :func:`positive_slots`);
    - ``bps``: their :class:`~ranking_core.Breakpoints`;
    - ``a``: :math:`1 + \sum_{k \in P, k \ne i} H(s_k - s_i)`, the rank among
      positives (1 off the positives);
    - ``b``: :math:`\sum_{j \in N} H(s_j - s_i)`, the negatives above (0 off them);
    - ``grad``: ``Tensor[n, C]`` holding the entries' intervals until
      ``finish(f_low, slope)`` writes the negatives' update into it.
    """

    def __init__(self, logits: Tensor, labels: Tensor, used: Tensor, delta: float,
                 mode: int) -> None:
        n, c = logits.shape
        kernel = core.ranking_kernel(logits, mode)
        self.rows, self.cols, s, valid = positive_slots(logits, labels, used,
                                                        compact=kernel is not None)
        self.s, self.valid = s, valid
        self.w_pos = valid.to(core.F64)
        self.s_safe = torch.where(valid, s, torch.zeros_like(s))
        self.bps = bps = core.Breakpoints(s, valid, delta)
        self.a = torch.where(valid, 1.0 + self.pair_sums(self.w_pos), torch.ones_like(s))
        counts, offsets = bps.new_sums()
        self.grad = torch.empty(n, c, dtype=logits.dtype, device=logits.device)
        self.finish = core.entry_passes(bps, logits, negative_rows(labels, used, c), kernel,
                                        counts, offsets, self.grad)
        self.b = torch.where(valid, bps.step_sums(counts, offsets), torch.zeros_like(s))

    def pair_sums(self, weights: Tensor) -> Tensor:
        r""":math:`\sum_{k \in P, k \ne i} w_k H(s_k - s_i)` for every slot ``i``
        (``weights`` 0 off the positives)."""
        counts, offsets = self.bps.new_sums()
        self.bps.accumulate(self.s_safe, weights, counts, offsets)
        return self.bps.step_sums(counts, offsets) - weights * self.bps.self_term(self.s_safe)


# ---------------------------------------------------------------------------- AP-loss
def _ap_loss_update(logits: Tensor, labels: Tensor, used: Tensor, delta: float,
                    avg_factor: Optional[Tensor], avg_number: float, mode: int):
    r"""AP-loss value and the error-driven update w.r.t. ``logits`` (see
    :func:`ap_loss`), in float64, on the ranking core
    (:class:`~detloss_plugin.functional.ranking_core.Breakpoints`)."""
    r = PositiveRanks(logits, labels, used, delta, mode)
    valid, s, w_pos = r.valid, r.s, r.w_pos
    prec = r.a / (r.a + r.b)

    # interpolated precision: the running maximum over positives of lower or equal
    # score, visited in ascending order as the reference does (tied positives have
    # equal a and b, hence equal precision, so their order does not matter)
    key = torch.where(valid, s, torch.full_like(s, math.inf))
    order = torch.sort(key, stable=True).indices
    prec_sorted = torch.where(valid[order], prec[order], torch.zeros_like(prec))
    prec_int = torch.empty_like(prec)
    prec_int[order] = torch.cummax(prec_sorted, 0).values
    # where it exceeds the precision, row i of L is rescaled to sum to 1 - interpolated
    # precision (the reference's max_prec branch)
    scale = torch.where(prec >= prec_int, torch.ones_like(prec),
                        (1 - prec_int) / (1 - prec).clamp_min(torch.finfo(core.F64).tiny))

    norm = normaliser(valid.sum(), avg_factor, avg_number)
    err = (1 - prec_int) * w_pos  # 1 - interpolated precision, 0 off the positives
    loss = err.sum() / norm
    # negatives (pass 2): sum_i coef_i H(v - s_i), coef_i = scale_i / ((a_i + b_i) norm)
    r.finish(*r.bps.spread(scale / (r.a + r.b) * w_pos / norm))
    # positives: -(1 - interpolated precision) / norm
    add_to_positives(r.grad, r.rows, r.cols, -err / norm)
    return loss.to(logits.dtype), r.grad


@torch.library.custom_op('detloss::ap_loss', mutates_args=())
def _ap_loss_op(logits: Tensor, labels: Tensor, used: Tensor, delta: float,
                avg_factor: Optional[Tensor], avg_number: float,
                mode: int) -> Tuple[Tensor, Tensor]:
    """``(loss, update)``: ``logits`` float32 / float64 ``[n, C]``, ``labels`` int64
    ``[n]``, ``used`` bool ``[n]`` (checked by :func:`ap_loss`); ``avg_number`` > 0
    replaces the normaliser when ``avg_factor`` is None."""
    check_op_logits('detloss::ap_loss', logits)
    if logits.dim() != 2 or labels.shape != logits.shape[:1] or used.shape != labels.shape:
        raise ValueError(f'detloss::ap_loss takes logits [n, C], labels and used [n], got '
                         f'{tuple(logits.shape)}, {tuple(labels.shape)}, {tuple(used.shape)}')
    loss, grad = _ap_loss_update(logits, labels.long(), used.bool(), delta, avg_factor,
                                 avg_number, mode)
    return nan_if_any_nan(logits, loss, grad)


@_ap_loss_op.register_fake
def _(logits, labels, used, delta, avg_factor, avg_number, mode):
    return logits.new_empty(()), torch.empty_like(logits)


def not_twice_differentiable(name: str) -> None:
    if torch.is_grad_enabled():
        raise RuntimeError(
            f'{name} is not twice differentiable: its backward returns the error-driven '
            f'update computed in forward (a constant), which has no derivative. Call '
            f'backward without create_graph=True.')


def _ap_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _ap_backward(ctx, grad_loss, _grad_update):
    not_twice_differentiable('AP-loss')
    (update,) = ctx.saved_tensors
    return update * grad_loss.to(update.dtype), None, None, None, None, None, None


_ap_loss_op.register_autograd(_ap_backward, setup_context=_ap_setup)


def ap_loss(cls_score: Tensor, labels: Tensor, label_weights: Optional[Tensor] = None,
            delta: float = 1.0, avg_factor: AvgFactor = None,
            cpu_kernel: Optional[bool] = None) -> Tensor:
    r"""AP-loss with the error-driven update.

    Chen et al., "Towards Accurate One-Stage Object Detection with AP-Loss", CVPR 2019,
    https://arxiv.org/abs/1904.06373 (extended: TPAMI 2020,
    https://arxiv.org/abs/2008.07294); reference code cccorn/AP-loss
    (``lib/model/aploss.py``).

    Every entry (anchor, class) of the batch gets a score :math:`s` (its logit). For a
    positive :math:`i` and any entry :math:`k`, with the piecewise-linear step

    .. math:: H(x) = \mathrm{clip}\!\left(\frac{x}{2\delta} + \frac12, 0, 1\right),

    .. math::
        a_i = \frac12 + \sum_{k \in \mathcal P} H(s_k - s_i), \qquad
        b_i = \sum_{j \in \mathcal N} H(s_j - s_i), \qquad
        p_i = \frac{a_i}{a_i + b_i}

    (:math:`a_i` counts :math:`i` itself as :math:`H(0) + \frac12 = 1`), and the
    interpolated precision :math:`\hat p_i = \max\{p_k : k \in \mathcal P,
    s_k \le s_i\}`. The loss is :math:`1 - \frac{1}{|\mathcal P|}\sum_i \hat p_i`. Its
    "gradient" is the paper's error-driven update (Algorithm 1), not a derivative:
    with :math:`L_{ij} = H(s_j - s_i) / (a_i + b_i)`, rescaled by
    :math:`(1 - \hat p_i) / (1 - p_i)` when :math:`\hat p_i > p_i`,

    .. math::
        \frac{\partial}{\partial s_j} = \frac{1}{|\mathcal P|}\sum_{i} L_{ij}
        \ (j \in \mathcal N), \qquad
        \frac{\partial}{\partial s_i} = -\frac{1 - \hat p_i}{|\mathcal P|}
        \ (i \in \mathcal P),

    and 0 for ignored anchors. Backward returns this update times the incoming gradient
    (so ``loss_weight`` scales it).

    Args:
        cls_score: ``Tensor[n, C]`` logits of every anchor of the batch.
        labels: integer ``Tensor[n]`` in ``0..C`` (``C`` = background).
        label_weights: ``Tensor[n]`` (``>= 0``) or None; 0 = ignored anchor.
        delta: half-width of the linear part of :math:`H` (paper and reference: 1.0),
            finite and > 0.
        avg_factor: the normaliser. None (default): the number of positives, at least
            1, which is the reference's value and update exactly. A finite number > 0 or
            a one-element tensor (finite, > 0) replaces it: value
            :math:`(|\mathcal P| - \sum_i \hat p_i) / \mathrm{avg\_factor}`
            and the update divided by it likewise (so ``avg_factor = |P|`` is the
            reference again). :class:`~detloss_plugin.RankingRetinaHead` passes None.
        cpu_kernel: on the CPU, run the two passes over the entries in the C kernel
            ``csrc/ap_loss.c`` (None: when it can be built, see :data:`CPU_KERNEL`;
            False: the torch code, which is what runs on accelerators).

    Returns:
        0-d tensor (float32 for half-precision input, else the input's dtype). With no
        positive in the batch: 0 and a zero update (the reference's result).

    Implementation: the shared ranking core
    (:mod:`detloss_plugin.functional.ranking_core`), with no loop over positives: one
    sort of the breakpoints :math:`s_i \pm \delta`, one ``searchsorted`` of every entry
    among them (its interval, kept for the second pass in the memory of the update),
    per-interval sums, prefix sums, in float64; exact also when :math:`\delta` is far
    below the scores' resolution (then :math:`H` is the exact step, ties aside). The
    passes over the entries go in chunks of rows that bound the temporary memory
    (about :math:`2^{22}` entries). Cost :math:`O(nC \log n)` instead of the
    reference's :math:`O(nCP)`; no host synchronisation (the number of positives stays
    a tensor). On the CPU the two passes over the entries run in one compiled loop each
    (``cpu_kernel``), and the per-positive arrays hold the positives only (reading their
    rows costs no device synchronisation there). The whole computation is the custom
    operator ``torch.ops.detloss.ap_loss`` (a fake kernel for ``torch.compile``, and
    this update as its registered backward). The update is a constant of the forward:
    AP-loss is not twice differentiable (``create_graph=True`` raises).

    Infinite scores are ordinary extreme scores (a negative at :math:`+\infty` is above
    every finite positive, at :math:`-\infty` below all); a NaN anywhere in
    ``cls_score`` gives a NaN loss and a NaN update.

    Departures:
        - The reference drops negatives scored below :math:`\min_i s_i - \delta` before
          its loop, to save time. They have :math:`H = 0` against every positive, so
          they contribute nothing; here they are not removed (that would need a host
          synchronisation) and get exactly the same zero update.
        - Sums are accumulated in float64 (the reference: float32 sums of up to
          :math:`10^7` terms); values and updates agree with it to float32 rounding.
        - The reference builds its labels inside the loss (IoU 0.5 / 0.4, the
          best-matching anchor of every ground truth); here they come from the head's
          assigner (mmdet's ``MaxIoUAssigner`` with the same thresholds does the same).
        - The reference ranks over the images of one GPU; so does this function over
          whatever batch it is given (no all-gather across GPUs).
    """
    labels = check_ranking_inputs(cls_score, labels, label_weights)
    check_positive('delta', delta)
    check_avg_factor(avg_factor)
    check_ranking_values(labels, label_weights, cls_score.shape[1], avg_factor)
    logits, dtype = upcast(cls_score)
    used = used_anchors(labels, label_weights)
    tensor_avg = avg_factor if isinstance(avg_factor, Tensor) else None
    number_avg = float(avg_factor) if avg_factor is not None and tensor_avg is None else 0.0
    loss, _ = _ap_loss_op(logits, labels, used, float(delta), tensor_avg, number_avg,
                          kernel_mode(cpu_kernel))
    return loss


# ---------------------------------------------------------------------------- DR loss
def _masked_softmax_mean(values: Tensor, mask: Tensor, temperature: float) -> Tensor:
    r""":math:`\sum_k q_k v_k` with :math:`q = \mathrm{softmax}(v / T)` over the masked
    entries; 0 when none is masked. The entries off the mask are set to :math:`-\infty`
    before the exponential (which gives them exactly 0, and a 0 gradient, whatever the
    temperature)."""
    z = torch.where(mask, values / temperature, torch.full_like(values, -math.inf))
    # softmax is shift invariant: the maximum is taken out without gradient
    z_max = z.amax().detach()
    z_max = torch.where(torch.isinf(z_max), torch.zeros_like(z_max), z_max)
    e = torch.exp(z - z_max)
    total = e.sum()
    weighted = torch.where(mask, e * values, torch.zeros_like(values))
    return weighted.sum() / total.clamp_min(torch.finfo(values.dtype).tiny)


def dr_loss(cls_score: Tensor, labels: Tensor, label_weights: Optional[Tensor] = None,
            pos_lambda: float = 1.0, neg_lambda: float = DR_NEG_LAMBDA, L: float = 6.0,
            tau: float = 4.0, margin: float = 0.5, avg_factor: AvgFactor = None) -> Tensor:
    r"""DR loss (distributional ranking), sigmoid form.

    Qian et al., "DR Loss: Improving Object Detection by Distributional Ranking", CVPR
    2020, https://arxiv.org/abs/1907.10156; reference code idstcv/DR_loss
    (``SigmoidDRLoss``).

    With :math:`p = \sigma(s)` the probabilities of the positive entries
    :math:`\mathcal P` and of the negative entries :math:`\mathcal N` of the whole
    batch, the distributions are re-weighted towards their hard ends,

    .. math::
        \hat p_- = \sum_{j \in \mathcal N} q^-_j p_j,\ q^- = \mathrm{softmax}_{\mathcal N}
        (p / \lambda_-), \qquad
        \hat p_+ = \sum_{i \in \mathcal P} q^+_i p_i,\ q^+ = \mathrm{softmax}_{\mathcal P}
        (-p / \lambda_+),

    and the loss is a smoothed hinge on their difference,

    .. math:: \ell = \frac{\tau}{L}\log\left(1 + e^{L(\hat p_- - \hat p_+ + \gamma)}\right).

    With no positive in the batch :math:`\hat p_+ = 1`; with no negative
    :math:`\hat p_- = 0` (the reference's results).

    Args:
        cls_score: ``Tensor[n, C]`` logits of every anchor of the batch.
        labels: ``LongTensor[n]`` in ``0..C`` (``C`` = background). The reference's
            labels are ``1..C`` with 0 = background and negative = ignored: here the
            foreground label ``c`` is the reference's ``c + 1``, background ``C`` its 0.
        label_weights: ``Tensor[n]`` or None; 0 = ignored anchor (the reference's -1).
        pos_lambda, neg_lambda: temperatures (finite, > 0) :math:`\lambda_+ = 1`,
            :math:`\lambda_- = 0.1 / \ln 3.5` (paper and reference).
        L, tau, margin: smoothness :math:`L = 6`, scale :math:`\tau = 4`, margin
            :math:`\gamma = 0.5` (paper and reference).
        avg_factor: None (default): the reference's scalar for the batch, unnormalised.
            A finite number > 0 or a one-element tensor (finite, > 0) divides it (value
            and gradient).
            :class:`~detloss_plugin.RankingRetinaHead` passes None.

    Returns:
        0-d tensor (float32 for half-precision input, else the input's dtype).
        Differentiable by autograd (the gradient is the derivative of the value).

    Departures:
        - ``softplus`` in place of ``log(1 + exp(.))`` (the same value, finite for any
          argument).
        - The softmax over a masked set is taken over the full ``Tensor[n, C]`` with the
          other entries masked out, instead of over the gathered entries: the same
          value without the host synchronisation of boolean indexing.
    """
    labels = check_ranking_inputs(cls_score, labels, label_weights)
    for name, value in (('pos_lambda', pos_lambda), ('neg_lambda', neg_lambda), ('L', L),
                        ('tau', tau)):
        check_positive(name, value)
    check_finite('margin', margin)
    check_avg_factor(avg_factor)
    check_ranking_values(labels, label_weights, cls_score.shape[1], avg_factor)
    logits, _ = upcast(cls_score)
    if logits.numel() == 0:  # no anchor: the graph stays connected
        return logits.sum() * 0.0
    pos, neg = ranking_entries(labels, label_weights, logits.shape[1])
    prob = torch.sigmoid(logits)
    neg_dist = _masked_softmax_mean(prob, neg, neg_lambda)
    pos_dist = _masked_softmax_mean(prob, pos, -pos_lambda)
    pos_dist = torch.where(pos.any(), pos_dist, torch.ones_like(pos_dist))
    loss = tau / L * TF.softplus(L * (neg_dist - pos_dist + margin))
    if avg_factor is not None:
        loss = loss / (avg_factor.reshape(()) if isinstance(avg_factor, Tensor) else
                       avg_factor)
    # a NaN score anywhere (ignored anchors included) makes the loss NaN
    return nan_if_any_nan(logits, loss)[0]
