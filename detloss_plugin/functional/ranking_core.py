r"""The shared core of the ranking losses (AP-loss, aLRP loss, Rank & Sort loss).

Each of them needs, for every positive :math:`i` with score :math:`s_i`, sums over the
entries :math:`j` of a set (the negatives, or the positives) of the piecewise-linear
step

.. math:: H(v_j - s_i), \qquad H(x) = \mathrm{clip}\!\left(\frac{x}{2\delta} + \frac12,
          0, 1\right),

and the *adjoint* sums :math:`F(v) = \sum_i c_i H(v - s_i)` at every entry (the
error-driven update of a negative). Both are computed without a loop over positives:
the breakpoints :math:`s_i \pm \delta` are sorted once and every entry is placed among
them once (``searchsorted``); in each interval between consecutive breakpoints both sums
are linear in the entry's score.

Exactness, also when :math:`\delta` is far below the scores' resolution (scores of
:math:`10^{16}`, :math:`\delta = 10^{-16}`): nothing is computed from differences of large
prefix sums of scores. Writing :math:`N(t)` for the number (weight) of entries above
:math:`t`,

.. math:: \sum_j H(v_j - s_i) = \frac{1}{2\delta}\int_{s_i - \delta}^{s_i + \delta} N(t)\,dt,

and the integral is accumulated interval by interval from the entries' offsets to their
interval's lower breakpoint and the intervals' widths, only over intervals that lie
inside some positive's ramp (whose width is at most :math:`2\delta`); likewise
:math:`F` is integrated from its slope. A ramp whose two breakpoints are equal in float64
(:math:`\delta` below half an ulp of :math:`s_i`, or an infinite :math:`s_i`) is an exact
step: entries strictly above count 1, the others 0.

Also here: the C kernel of the two passes over the entries (``csrc/ap_loss.c``) on the
CPU, and the boundary checks shared by the ranking losses.
"""
import ctypes
from typing import Optional, Tuple

import torch
from torch import Tensor

from ._kernels import BASE_FLAGS, CompiledLibrary

__all__ = ['Breakpoints', 'entry_passes', 'CHUNK_ELEMENTS', 'ranking_kernel']

F64 = torch.float64

#: entries of ``Tensor[n, C]`` processed at once by the torch passes over the entries:
#: bounds the temporary memory to a few times 2**22 float64 numbers (~32 MiB each)
CHUNK_ELEMENTS = 1 << 22


def _bind(lib):
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    fns = {}
    for suffix in ('f32', 'f64'):
        f = getattr(lib, f'detloss_rank_intervals_{suffix}')
        f.restype, f.argtypes = None, [p, p, i64, p, i64, p, p, p]
        g = getattr(lib, f'detloss_rank_update_{suffix}')
        g.restype, g.argtypes = None, [p, p, i64, p, p, p, p, p]
        fns[suffix] = (f, g)
    return fns


KERNEL = CompiledLibrary('ap_loss.c', BASE_FLAGS, 'ranking-loss', 'the plain torch code',
                         _bind)


def ranking_kernel(logits: Tensor, mode: int):
    """The C passes for ``logits`` (float32 / float64 on the CPU), or None.

    ``mode``: 0 never, 1 when the kernel can be built, 2 always (an error if it cannot)."""
    if mode == 0:
        return None
    applies = logits.device.type == 'cpu' and logits.dtype in (torch.float32, torch.float64)
    fns = KERNEL.load() if applies else None
    if mode == 2 and applies and fns is None:
        raise RuntimeError('the C ranking-loss kernel could not be built (see the warning)')
    return None if fns is None else fns['f32' if logits.dtype == torch.float32 else 'f64']


class Breakpoints:
    """The ramps :math:`[s_i - \\delta, s_i + \\delta]` of ``k`` slots, sorted.

    ``s``: ``Tensor[k]`` float64 scores; ``valid``: ``BoolTensor[k]`` (invalid slots take
    part in nothing). Intervals are numbered ``0..K`` (``K = 2k``): interval ``m`` holds
    the values ``v`` with ``bp[m-1] < v <= bp[m]``.
    """

    def __init__(self, s: Tensor, valid: Tensor, delta: float) -> None:
        k = s.shape[0]
        dev = s.device
        self.k, self.K = k, 2 * k
        big = torch.finfo(F64).max / 4
        s_fin = torch.where(valid, s, torch.full_like(s, big))
        lo, up = s_fin - delta, s_fin + delta
        # stable: of two equal breakpoints, a lower end comes first
        self.bp, order = torch.sort(torch.cat([lo, up]), stable=True)
        pos = torch.empty_like(order)
        pos[order] = torch.arange(self.K, device=dev)
        self.lo_pos, self.up_pos = pos[:k], pos[k:]
        self.lo = lo
        width = up - lo
        # a ramp of positive, finite width; the others are exact steps
        self.ramp = valid & (width > 0) & torch.isfinite(width)
        self.width = torch.where(self.ramp, width, torch.ones_like(width))
        # intervals lying inside at least one ramp (interval q: lo_pos < q <= up_pos)
        marks = torch.zeros(self.K + 2, dtype=torch.long, device=dev)
        r = self.ramp.long()
        marks.index_add_(0, self.lo_pos + 1, r)
        marks.index_add_(0, self.up_pos + 1, -r)
        self.covered = marks.cumsum(0)[:self.K + 1] > 0
        # interval widths bp[q] - bp[q-1] (0 for the outer intervals 0 and K)
        gap = torch.zeros(self.K + 1, dtype=F64, device=dev)
        gap[1:self.K] = self.bp[1:] - self.bp[:-1]
        self.gap = torch.where(self.covered, gap, torch.zeros_like(gap))
        self.low_end = torch.cat([torch.zeros(1, dtype=F64, device=dev), self.bp])

    # ------------------------------------------------------------------ locating values
    def locate(self, values: Tensor, out_int32: bool = False) -> Tuple[Tensor, Tensor]:
        """``(m, theta)``: each value's interval and its offset above the interval's
        lower breakpoint (0 in interval 0)."""
        m = torch.searchsorted(self.bp, values, out_int32=out_int32)
        theta = torch.where(m > 0, values - self.low_end[m], torch.zeros_like(values))
        return m, theta

    def accumulate(self, values: Tensor, weights: Tensor, counts: Tensor, offsets: Tensor,
                   interval: Optional[Tensor] = None) -> None:
        """Adds ``weights`` and ``weights * theta`` per interval (``values`` float64)."""
        m, theta = self.locate(values, out_int32=interval is not None and
                               interval.dtype == torch.int32)
        counts.index_add_(0, m, weights)
        offsets.index_add_(0, m, torch.where(weights != 0, weights * theta,
                                             torch.zeros_like(theta)))
        if interval is not None:
            interval.copy_(m.view(interval.shape))

    def new_sums(self) -> Tuple[Tensor, Tensor]:
        z = torch.zeros(self.K + 1, dtype=F64, device=self.bp.device)
        return z, z.clone()

    # --------------------------------------------------------------------- step sums
    def step_sums(self, counts: Tensor, offsets: Tensor) -> Tensor:
        """:math:`\\sum_j w_j H(v_j - s_i)` for every slot ``i``, from the per-interval
        sums of :meth:`accumulate`."""
        above = counts.flip(0).cumsum(0).flip(0)  # above[q] = weight in intervals >= q
        above = torch.cat([above[1:], torch.zeros_like(above[:1])])  # intervals > q
        # integral of N(t) over interval q: entries above it span its width, entries in
        # it their offset; only intervals inside a ramp are ever summed
        integral = torch.where(self.covered, above * self.gap + offsets,
                               torch.zeros_like(offsets))
        cum = integral.cumsum(0)
        ramp_sum = (cum[self.up_pos] - cum[self.lo_pos]) / self.width
        return torch.where(self.ramp, ramp_sum, above[self.up_pos])

    def self_term(self, s: Tensor) -> Tensor:
        """What :meth:`step_sums` counts for an entry at :math:`s_i` itself in slot
        ``i``'s sum (1/2 up to rounding for a ramp, 0 for an exact step)."""
        return torch.where(self.ramp, (s - self.lo) / self.width, torch.zeros_like(s))

    # ---------------------------------------------------------------- adjoint sums
    def spread(self, coef: Tensor) -> Tuple[Tensor, Tensor]:
        """``(f_low, slope)`` per interval, with
        :math:`\\sum_i c_i H(v - s_i) = f_{low}[m] + slope[m]\\,\\theta` for a value in
        interval ``m`` at offset :math:`\\theta` (see :meth:`locate`)."""
        dev = coef.device
        rate = torch.where(self.ramp, coef / self.width, torch.zeros_like(coef))
        marks = torch.zeros(self.K + 2, dtype=F64, device=dev)
        marks.index_add_(0, self.lo_pos + 1, rate)
        marks.index_add_(0, self.up_pos + 1, -rate)
        slope = marks.cumsum(0)[:self.K + 1]
        slope = torch.where(self.covered, slope, torch.zeros_like(slope))
        # an exact step of slot i adds c_i to every value above its breakpoint up_pos
        jumps = torch.zeros(self.K + 1, dtype=F64, device=dev)
        jumps.index_add_(0, self.up_pos, torch.where(self.ramp, torch.zeros_like(coef), coef))
        # f_low[m]: the value at interval m's lower breakpoint bp[m - 1], the slope
        # integrated over the intervals below m plus the jumps at their breakpoints
        f_low = (slope * self.gap + jumps).cumsum(0)
        f_low = torch.cat([torch.zeros(1, dtype=F64, device=dev), f_low[:-1]])
        return f_low, slope

    @staticmethod
    def evaluate(m: Tensor, theta: Tensor, f_low: Tensor, slope: Tensor) -> Tensor:
        sl = slope[m]
        return f_low[m] + torch.where(sl != 0, sl * theta, torch.zeros_like(theta))


def entry_passes(core: Breakpoints, logits: Tensor, negative_rows, kernel,
                 counts: Tensor, offsets: Tensor, grad: Tensor):
    """The two passes over every entry of ``logits`` ``Tensor[n, C]``.

    ``negative_rows(start, stop)`` returns the ``BoolTensor[stop - start, C]`` mask of
    the negatives in those rows. Pass 1 (now) adds the negatives to ``counts`` /
    ``offsets`` and keeps every entry's interval in the memory of ``grad``; the returned
    ``finish(f_low, slope)`` writes :math:`F` at the negatives (0 elsewhere) into
    ``grad``."""
    n, c = logits.shape
    interval = grad.view(torch.int32 if grad.element_size() == 4 else torch.int64)
    if kernel is not None:
        logits = logits.contiguous()
        neg = negative_rows(0, n).contiguous().view(torch.uint8)
        bp = core.bp.contiguous()
        kernel[0](logits.data_ptr(), neg.data_ptr(), n * c, bp.data_ptr(), core.K,
                  interval.data_ptr(), counts.data_ptr(), offsets.data_ptr())

        def finish(f_low: Tensor, slope: Tensor) -> None:
            f_c, s_c = f_low.contiguous(), slope.contiguous()
            kernel[1](logits.data_ptr(), neg.data_ptr(), n * c, interval.data_ptr(),
                      bp.data_ptr(), f_c.data_ptr(), s_c.data_ptr(), grad.data_ptr())
        return finish

    rows = max(1, CHUNK_ELEMENTS // max(c, 1))
    chunks = [(a, min(a + rows, n)) for a in range(0, n, rows)]
    for a, b in chunks:
        v = logits[a:b].to(F64).reshape(-1)
        w = negative_rows(a, b).reshape(-1).to(F64)
        core.accumulate(v, w, counts, offsets, interval=interval[a:b])

    def finish_torch(f_low: Tensor, slope: Tensor) -> None:
        for a, b in chunks:
            v = logits[a:b].to(F64)
            m = interval[a:b].long()
            theta = torch.where(m > 0, v - core.low_end[m], torch.zeros_like(v))
            g = core.evaluate(m, theta, f_low, slope)
            grad[a:b] = torch.where(negative_rows(a, b), g, torch.zeros_like(g)).to(grad.dtype)
    return finish_torch
