r"""Ranking losses for one-stage detectors: AP-loss and DR loss.

Both replace the classification loss of a dense detector by an objective over *every*
(anchor, class) entry of the batch at once, so they are not element-wise: one call
returns one scalar for the whole batch. The inputs are mmdet's ``loss_cls`` inputs,
gathered over every FPN level and image (a ranking head does that, see
:class:`detloss_plugin.models.dense_heads.RankingRetinaHead`):

- ``cls_score`` ``Tensor[n, C]``: logits of every anchor;
- ``labels`` ``LongTensor[n]`` in ``0..C``, ``C`` = background (mmdet's convention);
- ``label_weights`` ``Tensor[n]`` or None: an anchor whose weight is 0 is ignored
  (neither positive nor negative); any other value only marks the anchor as used
  (the ranking objectives have no per-anchor weight).

An (anchor, class) entry is *positive* when the anchor is used and the class is its
label, *negative* when the anchor is used and the class is any other one (the other
classes of a positive anchor are negatives, as in both reference codes).

Labels must lie in ``0..C``. On the CPU an out-of-range label raises ``ValueError``;
on an accelerator the same condition is checked by ``torch._assert_async`` (a device
assert, no host synchronisation).
"""
import ctypes
import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_positive, check_tensor, saturating_cast
from ._kernels import BASE_FLAGS, CompiledLibrary

__all__ = ['ap_loss', 'dr_loss', 'ranking_entries', 'DR_NEG_LAMBDA']

#: DR loss's default negative temperature, ``0.1 / ln(3.5)`` (the reference's default).
DR_NEG_LAMBDA = 0.1 / math.log(3.5)

# Elements of ``cls_score`` processed at once by AP-loss's passes over the negatives:
# bounds the temporary memory to a few times 2**22 float64 numbers (~32 MiB each).
_CHUNK_ELEMENTS = 1 << 22

AvgFactor = Optional[Union[float, int, Tensor]]

# None: AP-loss's two passes over the entries run in the C kernel (csrc/ap_loss.c) for
# float32 / float64 CPU tensors when it can be built, else in torch; False: always
# torch; True: like None, but an error instead of the fallback.
CPU_KERNEL: Optional[bool] = None


def _bind_ap(lib):
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fns = {}
    for suffix in ('f32', 'f64'):
        f = getattr(lib, f'detloss_ap_intervals_{suffix}')
        f.restype, f.argtypes = None, [p, p, p, i64, i64, p, i64, p, p, p]
        g = getattr(lib, f'detloss_ap_update_{suffix}')
        g.restype, g.argtypes = None, [p, p, p, i64, i64, p, p, p, p]
        fns[suffix] = (f, g)
    return fns


AP_KERNEL = CompiledLibrary('ap_loss.c', BASE_FLAGS, 'AP-loss', 'the plain torch code',
                            _bind_ap)


def _ap_kernel_for(logits: Tensor, cpu_kernel: Optional[bool]):
    if cpu_kernel is None:
        cpu_kernel = CPU_KERNEL
    if cpu_kernel is False:
        return None
    applies = logits.device.type == 'cpu' and logits.dtype in (torch.float32, torch.float64)
    fns = AP_KERNEL.load() if applies else None
    if cpu_kernel and applies and fns is None:
        raise RuntimeError('the C AP-loss kernel could not be built (see the warning)')
    return None if fns is None else fns['f32' if logits.dtype == torch.float32 else 'f64']


# ----------------------------------------------------------------------------- inputs
def _check_inputs(cls_score: Tensor, labels: Tensor, label_weights: Optional[Tensor]) -> None:
    check_tensor('cls_score', cls_score)
    if cls_score.dim() != 2 or cls_score.shape[1] < 1:
        raise ValueError(f'cls_score must have shape (n, C) with C >= 1 (logits of every '
                         f'anchor of the batch), got {tuple(cls_score.shape)}')
    if not isinstance(labels, Tensor):
        raise TypeError(f'labels must be a torch.Tensor, got {type(labels).__name__}')
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f'labels must be an integer tensor, got dtype {labels.dtype}')
    n, c = cls_score.shape
    if labels.shape != (n,):
        raise ValueError(f'labels must have shape ({n},) for cls_score of shape ({n}, {c}), '
                         f'got {tuple(labels.shape)}')
    if label_weights is not None:
        if not isinstance(label_weights, Tensor):
            raise TypeError(f'label_weights must be a torch.Tensor or None, got '
                            f'{type(label_weights).__name__}')
        if label_weights.shape != (n,):
            raise ValueError(f'label_weights must have shape ({n},) (one weight per anchor), '
                             f'got {tuple(label_weights.shape)}')
    _check_label_range(labels, c)


def _check_label_range(labels: Tensor, num_classes: int) -> None:
    if labels.numel() == 0:
        return
    if labels.device.type == 'cpu':
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > num_classes:
            raise ValueError(f'labels must lie in [0, {num_classes}] ({num_classes} = '
                             f'background), got values in [{low}, {high}]')
    else:  # a device-side assert: no host synchronisation
        torch._assert_async(((labels >= 0) & (labels <= num_classes)).all(),
                            f'labels must lie in [0, {num_classes}] ({num_classes} = '
                            f'background)')


def _check_avg_factor(avg_factor: AvgFactor) -> None:
    if avg_factor is None or isinstance(avg_factor, Tensor):
        return
    check_positive('avg_factor', avg_factor)


def ranking_entries(labels: Tensor, label_weights: Optional[Tensor], num_classes: int):
    """``(pos, neg)``: boolean ``Tensor[n, C]`` masks of the positive and negative
    entries (see the module docstring)."""
    used = torch.ones_like(labels, dtype=torch.bool) if label_weights is None \
        else label_weights > 0
    classes = torch.arange(num_classes, device=labels.device)
    is_label = labels.unsqueeze(1) == classes
    pos = is_label & used.unsqueeze(1)
    neg = ~is_label & used.unsqueeze(1)
    return pos, neg


# ---------------------------------------------------------------------------- AP-loss
def _chunks(n: int, num_classes: int):
    rows = max(1, _CHUNK_ELEMENTS // max(num_classes, 1))
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


def _negatives(labels: Tensor, used: Tensor, classes: Tensor) -> Tensor:
    return (labels.unsqueeze(1) != classes) & used.unsqueeze(1)


def _ap_loss_forward(logits: Tensor, labels: Tensor, used: Tensor, delta: float,
                     avg_factor: AvgFactor, cpu_kernel: Optional[bool] = None):
    r"""AP-loss value and the error-driven update w.r.t. ``logits`` (see
    :func:`ap_loss`), in float64.

    Every sum over pairs is a sum of :math:`H` terms, and :math:`H(x - s_i)` is linear in
    :math:`x` between consecutive *breakpoints* :math:`s_i \pm \delta`. So each entry is
    placed among the sorted breakpoints once per pass (``searchsorted``), and

    - :math:`b_i = \sum_j H(s_j - s_i)`: a count and a sum of the negatives per interval
      between breakpoints (``index_add``), then suffix sums;
    - the update of a negative, :math:`\sum_i c_i H(s_j - s_i)`, is
      :math:`\alpha_m s_j + \beta_m` in its interval :math:`m`, with
      :math:`\alpha, \beta` prefix sums over the breakpoints.

    Cost :math:`O(nC \log n)`; memory: the update ``Tensor[n, C]`` (which also holds
    every entry's interval between the passes), :math:`O(n)` and a chunk of rows.
    """
    n, c = logits.shape
    dev = logits.device
    f64 = torch.float64
    big = torch.finfo(f64).max / 4
    two_delta = 2.0 * delta

    # positives: one per used foreground anchor, its logit in its own column. The
    # per-positive arrays have one slot per anchor (non-positives masked), except with
    # the CPU kernel, where reading the positives' rows costs no device synchronisation
    # and the arrays hold the positives only.
    kernel = _ap_kernel_for(logits, cpu_kernel)
    is_fg = used & (labels < c)
    cols = labels.clamp(max=c - 1)
    pos_rows = is_fg.nonzero().squeeze(1) if kernel is not None else None
    if pos_rows is None:
        is_pos = is_fg
        s = logits.gather(1, cols.unsqueeze(1)).squeeze(1).to(f64)
    else:
        is_pos = torch.ones(pos_rows.shape[0], dtype=torch.bool, device=dev)
        s = logits[pos_rows, cols[pos_rows]].to(f64)
    k = is_pos.shape[0]  # slots
    w_pos = is_pos.to(f64)
    s_safe = torch.where(is_pos, s, torch.zeros_like(s))
    num_pos = is_pos.sum()

    # breakpoints s_i - delta (kind 0) and s_i + delta (kind 1), sorted; those of
    # non-positives are pushed past every value (finite, so that 0 * t stays 0)
    s_fin = torch.where(is_pos, s, torch.full_like(s, big))
    bp, bp_order = torch.sort(torch.cat([s_fin - delta, s_fin + delta]))
    bp_pos = torch.empty_like(bp_order)
    bp_pos[bp_order] = torch.arange(2 * k, device=dev)
    low_at, up_at = bp_pos[:k], bp_pos[k:]  # where s_i - delta / s_i + delta landed

    def step_sums(counts: Tensor, sums: Tensor) -> Tensor:
        # R(t) = sum_j w_j max(v_j - t, 0) at every breakpoint t = bp[k] (the values in
        # the intervals above k), then sum_j w_j H(v_j - s_i) =
        # (R(s_i - delta) - R(s_i + delta)) / (2 delta)
        above_n = counts.flip(0).cumsum(0).flip(0)[1:]
        above_s = sums.flip(0).cumsum(0).flip(0)[1:]
        r = above_s - bp * above_n
        return (r[low_at] - r[up_at]) / two_delta

    def pair_sums(values: Tensor, weights: Tensor, counts: Tensor, sums: Tensor,
                  out: Optional[Tensor] = None) -> None:
        m = torch.searchsorted(bp, values, out_int32=out is not None and
                               out.dtype == torch.int32)
        counts.index_add_(0, m, weights)
        sums.index_add_(0, m, weights * values)
        if out is not None:
            out.copy_(m.view(out.shape))

    # a_i = 1/2 + sum_k H(s_k - s_i) over positives, k = i included (H(0) = 1/2)
    counts = torch.zeros(2 * k + 1, dtype=f64, device=dev)
    sums = torch.zeros_like(counts)
    pair_sums(s_safe, w_pos, counts, sums)
    a = 0.5 + step_sums(counts, sums)
    # b_i: the same over the negatives of the whole batch, chunk by chunk
    # The interval of every entry is kept for the second pass in the memory of the
    # update itself (an integer view of the same size), so each entry is searched once.
    counts.zero_()
    sums.zero_()
    chunks = _chunks(n, c)
    classes = torch.arange(c, device=dev)
    grad = torch.empty(n, c, dtype=logits.dtype, device=dev)
    interval = grad.view(torch.int32 if grad.element_size() == 4 else torch.int64)
    if kernel is not None:
        logits, labels = logits.contiguous(), labels.contiguous()
        used_c, bp_c = used.contiguous(), bp.contiguous()
        kernel[0](logits.data_ptr(), labels.data_ptr(), used_c.data_ptr(), n, c,
                  bp_c.data_ptr(), 2 * k, interval.data_ptr(), counts.data_ptr(),
                  sums.data_ptr())
    else:
        for start, stop in chunks:
            v = logits[start:stop].to(f64).reshape(-1)
            w = _negatives(labels[start:stop], used[start:stop], classes).reshape(-1).to(f64)
            pair_sums(v, w, counts, sums, out=interval[start:stop])
    b = step_sums(counts, sums)
    a = torch.where(is_pos, a, torch.ones_like(a))
    b = torch.where(is_pos, b, torch.zeros_like(b))
    prec = a / (a + b)

    # interpolated precision: the running maximum over positives of lower or equal
    # score, visited in ascending order as the reference does (tied positives have
    # equal a and b, hence equal precision, so their order does not matter)
    key = torch.where(is_pos, s, torch.full_like(s, math.inf))
    order = torch.sort(key).indices
    prec_sorted = torch.where(is_pos[order], prec[order], torch.zeros_like(prec))
    prec_int = torch.empty_like(prec)
    prec_int[order] = torch.cummax(prec_sorted, 0).values
    # where it exceeds the precision, row i of L is rescaled to sum to 1 - interpolated
    # precision (the reference's max_prec branch)
    scale = torch.where(prec >= prec_int, torch.ones_like(prec),
                        (1 - prec_int) / (1 - prec).clamp_min(torch.finfo(f64).tiny))

    if avg_factor is None:
        norm = num_pos.clamp(min=1).to(f64)
    elif isinstance(avg_factor, Tensor):
        norm = avg_factor.to(device=dev, dtype=f64)
    else:  # a Python number divides as is (no copy from the host)
        norm = float(avg_factor)
    err = (1 - prec_int) * w_pos  # 1 - interpolated precision, 0 off the positives
    loss = err.sum() / norm

    # negatives: sum_i coef_i H(v - s_i), coef_i = scale_i / ((a_i + b_i) norm), is
    # alpha_m v + beta_m in interval m. Crossing s_i - delta adds coef_i / (2 delta) to
    # the slope and coef_i (1/2 - s_i / (2 delta)) to the intercept; crossing
    # s_i + delta removes them and adds coef_i (H = 1 from there on).
    coef = scale / (a + b) * w_pos / norm
    d_alpha = torch.cat([coef, -coef]) / two_delta
    ramp_b = coef * (0.5 - s_safe / two_delta)
    d_beta = torch.cat([ramp_b, coef - ramp_b])
    zero = torch.zeros(1, dtype=f64, device=dev)
    alpha = torch.cat([zero, d_alpha[bp_order].cumsum(0)])
    beta = torch.cat([zero, d_beta[bp_order].cumsum(0)])

    if kernel is not None:
        alpha_c, beta_c = alpha.contiguous(), beta.contiguous()
        kernel[1](logits.data_ptr(), labels.data_ptr(), used_c.data_ptr(), n, c,
                  interval.data_ptr(), alpha_c.data_ptr(), beta_c.data_ptr(), grad.data_ptr())
        chunks = []
    for start, stop in chunks:
        v = logits[start:stop].to(f64)
        m = interval[start:stop].long()
        g = alpha[m] * v + beta[m]
        neg = _negatives(labels[start:stop], used[start:stop], classes)
        grad[start:stop] = torch.where(neg, g, torch.zeros_like(g)).to(logits.dtype)
    # positives: -(1 - interpolated precision) / norm
    g_pos = (-err / norm).to(logits.dtype)
    if pos_rows is None:
        grad.scatter_add_(1, cols.unsqueeze(1), g_pos.unsqueeze(1))
    else:
        grad.index_put_((pos_rows, cols[pos_rows]), g_pos, accumulate=True)
    return loss, grad


class _APLossFunction(torch.autograd.Function):
    """The loss value forward, the algorithm's update backward (not the derivative of
    the value, which is piecewise constant)."""

    @staticmethod
    def forward(ctx, cls_score, labels, used, delta, avg_factor, cpu_kernel):
        with torch.no_grad():
            logits = cls_score.detach()
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()
            loss, grad = _ap_loss_forward(logits, labels, used, delta, avg_factor,
                                          cpu_kernel)
        ctx.save_for_backward(grad)
        ctx.dtype = cls_score.dtype
        out_dtype = torch.float32 if cls_score.dtype in (torch.float16, torch.bfloat16) \
            else cls_score.dtype
        return loss.to(out_dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        grad = grad * grad_output.to(grad.dtype)
        return saturating_cast(grad, ctx.dtype), None, None, None, None, None


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
        labels: ``LongTensor[n]`` in ``0..C`` (``C`` = background).
        label_weights: ``Tensor[n]`` or None; 0 = ignored anchor.
        delta: half-width of the linear part of :math:`H` (paper and reference: 1.0).
        avg_factor: the normaliser. None (default): the number of positives, at least
            1, which is the reference's value and update exactly. A number or 0-d tensor
            replaces it: value :math:`(|\mathcal P| - \sum_i \hat p_i) / \mathrm{avg\_factor}`
            and the update divided by it likewise (so ``avg_factor = |P|`` is the
            reference again). :class:`~detloss_plugin.RankingRetinaHead` passes None.
        cpu_kernel: on the CPU, run the two passes over the entries in the C kernel
            ``csrc/ap_loss.c`` (None: when it can be built, see :data:`CPU_KERNEL`;
            False: the torch code, which is what runs on accelerators).

    Returns:
        0-d tensor (float32 for half-precision input, else the input's dtype). With no
        positive in the batch: 0 and a zero update (the reference's result).

    Implementation. No loop over positives: with :math:`R(t) = \sum \max(s - t, 0)`,
    :math:`\sum_j H(s_j - s_i) = (R(s_i - \delta) - R(s_i + \delta)) / 2\delta`, and
    :math:`\sum_i c_i H(s_j - s_i)` is the same kind of difference of ramps of the
    positives. Both are evaluated exactly, in float64: one sort of the breakpoints
    :math:`s_i \pm \delta`, one ``searchsorted`` of every entry among them (its
    interval, kept for the second pass in the memory of the update), per-interval
    counts and sums, prefix sums; the passes over the entries go in chunks of rows
    that bound the temporary memory (about :math:`2^{22}` entries). Cost
    :math:`O(nC \log n)` instead of the reference's :math:`O(nCP)`; no host
    synchronisation (the number of positives stays a tensor). On the CPU the two
    passes over the entries run in one compiled loop each (``cpu_kernel``), and the
    per-positive arrays hold the positives only (reading their rows costs no device
    synchronisation there).

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
    _check_inputs(cls_score, labels, label_weights)
    check_positive('delta', delta)
    _check_avg_factor(avg_factor)
    used = torch.ones_like(labels, dtype=torch.bool) if label_weights is None \
        else label_weights > 0
    return _APLossFunction.apply(cls_score, labels, used, float(delta), avg_factor,
                                 cpu_kernel)


# ---------------------------------------------------------------------------- DR loss
def _masked_softmax_mean(values: Tensor, mask: Tensor, temperature: float) -> Tensor:
    r""":math:`\sum_k q_k v_k` with :math:`q = \mathrm{softmax}(v / T)` over the masked
    entries; 0 when none is masked."""
    z = values / temperature
    z_max = torch.where(mask, z, torch.full_like(z, -math.inf)).max().detach()
    z_max = torch.where(torch.isfinite(z_max), z_max, torch.zeros_like(z_max))
    # softmax is shift invariant: the maximum is taken out without gradient
    e = torch.where(mask, torch.exp(z - z_max), torch.zeros_like(z))
    total = e.sum()
    return (e * values).sum() / total.clamp_min(torch.finfo(values.dtype).tiny)


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
        pos_lambda, neg_lambda: temperatures :math:`\lambda_+ = 1`,
            :math:`\lambda_- = 0.1 / \ln 3.5` (paper and reference).
        L, tau, margin: smoothness :math:`L = 6`, scale :math:`\tau = 4`, margin
            :math:`\gamma = 0.5` (paper and reference).
        avg_factor: None (default): the reference's scalar for the batch, unnormalised.
            A number or 0-d tensor divides it (value and gradient).
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
    _check_inputs(cls_score, labels, label_weights)
    for name, value in (('pos_lambda', pos_lambda), ('neg_lambda', neg_lambda), ('L', L),
                        ('tau', tau)):
        check_positive(name, value)
    if not isinstance(margin, (int, float)) or isinstance(margin, bool):
        raise TypeError(f'margin must be a number, got {type(margin).__name__}')
    _check_avg_factor(avg_factor)
    logits = cls_score.float() if cls_score.dtype in (torch.float16, torch.bfloat16) \
        else cls_score
    pos, neg = ranking_entries(labels, label_weights, logits.shape[1])
    prob = torch.sigmoid(logits)
    neg_dist = _masked_softmax_mean(prob, neg, neg_lambda)
    pos_dist = _masked_softmax_mean(prob, pos, -pos_lambda)
    pos_dist = torch.where(pos.any(), pos_dist, torch.ones_like(pos_dist))
    loss = tau / L * F.softplus(L * (neg_dist - pos_dist + margin))
    if avg_factor is not None:
        loss = loss / avg_factor
    return loss
