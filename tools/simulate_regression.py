#!/usr/bin/env python
r"""The DIoU paper's regression simulation (Zheng et al., AAAI 2020, Algorithm 1).

    python tools/simulate_regression.py [--points 5000]
        [--mode both|autograd|authors|ablation] [--losses GIoU DIoU ...]
        [--out-dir work_dirs/simulation] [--dtype float64] [--from-results DIR]

Seven target boxes of area 1 centred at (10, 10), with aspect ratios 1:4 .. 4:1; anchor
centres at ``--points`` points uniform in the disk of radius 3 around (10, 10)
(:math:`r = 3\sqrt{u}`, :math:`\theta = 2\pi u'`); at each point 7 scales
S in {0.5, 0.67, 0.75, 1, 1.33, 1.5, 2} times the target's area and the same 7 aspect
ratios (:math:`w = a_w\sqrt{S}`, :math:`h = a_h\sqrt{S}`): 343 cases per point,
1,715,000 for the paper's 5000 points. Every case is regressed for 200 steps of

.. math::
    B_t = B_{t-1} - \eta_t\,(2 - IoU(B_{t-1}, B^{gt}))\,\nabla_B L(B_{t-1}, B^{gt})

on :math:`B = (x, y, w, h)`, with :math:`\eta = 0.1` for steps 1-160, 0.01 for 161-180
and 0.001 for 181-200, and the error :math:`E(t) = \sum_{cases} \|B_t - B^{gt}\|_1`
(over x, y, w, h) is recorded after each step. *Total error* is
:math:`\sum_{t=1}^{200} E(t)` (the authors' ``total_*_loss``), *final error* is
:math:`E(200)`; both are also given per case.

Two gradient modes:

- ``autograd``: the gradient autograd gives through detloss's own functional losses
  (:data:`autograd_losses`: every box loss of the plugin, and SIoU / Alpha-IoU / WIoU as
  soon as :mod:`detloss_plugin.functional` has them). ``(x, y, w, h)`` is turned into
  ``(x1, y1, x2, y2)`` inside the graph; the IoU of the step size is detloss's.
- ``authors``: a torch transcription of the hand-derived MATLAB gradients with which the
  paper's curves were drawn (``dIOU.m``, ``dGIOU.m``, ``dDIOU.m``, ``dCIOU.m``,
  ``to_xywh.m`` and the helpers they call, in the "simulation experiment" folder of
  https://github.com/Zzh-tju/DIoU), with their IoU (``iou.m``) in the step size. They
  differ from the true derivatives; docs/simulation.md lists each difference and what it
  does to the curves. ``ablation`` runs them with each difference corrected in turn
  (:data:`AUTHORS_ABLATIONS`).

Outputs in ``--out-dir``: ``curves.png`` (E(t) of every loss, one panel per mode),
``maps_<mode>.png`` (the final error summed over the 343 cases of each anchor point, as a
surface over the disk, like the paper's figures), ``results.md`` and ``results.json``
(total and final error, absolute and per case, and the E(t) curves), and
``point_errors.json`` (the anchor points and each loss's final error per point).

The cases are vectorised and processed in chunks of ``--chunk`` cases (bounded memory).
The full run of every loss in both modes took 22 minutes on one thread of a 2-core
machine shared with other jobs (docs/simulation.md); ``--points 200`` with three losses
takes under a minute.
"""
import argparse
import functools
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor

import detloss_plugin  # noqa: F401

from detloss_plugin import functional as dlf
from detloss_plugin.functional import box_pair_geometry  # noqa: E402

# --------------------------------------------------------------------------- cases
TARGET_CENTER = 10.0
DISK_RADIUS = 3.0
PAPER_POINTS = 5000
# the seven aspect ratios w:h = 1:4, 1:3, 1:2, 1:1, 2:1, 3:1, 4:1 at area 1 (the
# authors' (w, h) = (0.5, 2), (sqrt(3)/3, sqrt(3)), (sqrt(2)/2, sqrt(2)), (1, 1), ...)
ASPECT_RATIOS = (1 / 4, 1 / 3, 1 / 2, 1.0, 2.0, 3.0, 4.0)
SCALES = (0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0)
CASES_PER_POINT = len(ASPECT_RATIOS) * len(SCALES) * len(ASPECT_RATIOS)  # 343
STEPS = 200


def learning_rate(step: int) -> float:
    """eta of step ``step`` (1-based): 0.1 up to 160, 0.01 up to 180, 0.001 to 200."""
    if step <= 160:
        return 0.1
    if step <= 180:
        return 0.01
    return 0.001


def sample_points(num_points: int, seed: int = 0, dtype=torch.float64) -> Tensor:
    r"""``Tensor[num_points, 2]``: anchor centres uniform in the disk of radius 3 around
    (10, 10), :math:`r = 3\sqrt{u}`, :math:`\theta = 2\pi u'` (as ``test_1715k.m``)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(2, num_points, generator=gen, dtype=torch.float64)
    r = DISK_RADIUS * u[0].sqrt()
    theta = 2 * math.pi * u[1]
    pts = torch.stack([TARGET_CENTER + r * theta.cos(), TARGET_CENTER + r * theta.sin()], -1)
    return pts.to(dtype)


def _unit_area_wh(ratios, dtype) -> Tensor:
    a = torch.tensor(ratios, dtype=torch.float64)
    return torch.stack([a.sqrt(), a.rsqrt()], -1).to(dtype)  # w = sqrt(a), h = 1/sqrt(a)


def make_cases(points: Tensor):
    """All cases of the anchor centres ``points`` (``Tensor[P, 2]``), ordered as the
    authors' loops (point, target ratio, scale, anchor ratio).

    Returns ``(anchors, targets)``, two ``Tensor[P * 343, 4]`` in ``(x, y, w, h)``.
    """
    dtype = points.dtype
    wh = _unit_area_wh(ASPECT_RATIOS, dtype)                      # (7, 2), area 1
    scale = torch.tensor(SCALES, dtype=torch.float64).sqrt().to(dtype)  # sqrt(S)
    p, n_a, n_s = points.shape[0], len(ASPECT_RATIOS), len(SCALES)
    # target (t), scale (s), anchor ratio (a): the anchor's area is S times the target's
    # (1), so w = a_w sqrt(S), h = a_h sqrt(S) whatever the target's ratio.
    anchor_wh = (scale[:, None, None] * wh[None]).expand(n_s, n_a, 2)
    anchor_wh = anchor_wh[None, None].expand(p, n_a, n_s, n_a, 2)
    centers = points[:, None, None, None].expand(p, n_a, n_s, n_a, 2)
    anchors = torch.cat([centers, anchor_wh], -1).reshape(-1, 4)
    target_wh = wh[None, :, None, None].expand(p, n_a, n_s, n_a, 2)
    target_xy = torch.full_like(target_wh, TARGET_CENTER)
    targets = torch.cat([target_xy, target_wh], -1).reshape(-1, 4)
    return anchors.contiguous(), targets.contiguous()


def xywh_to_xyxy(b: Tensor) -> Tensor:
    xy, wh = b[..., :2], b[..., 2:]
    return torch.cat([xy - wh / 2, xy + wh / 2], -1)


# ------------------------------------------------------------------ autograd losses
def autograd_losses() -> Dict[str, Callable[[Tensor, Tensor], Tensor]]:
    """name -> functional loss ``f(pred, target)`` on ``(x1, y1, x2, y2)`` boxes, every
    box loss of the plugin with its defaults; coordinate losses (per coordinate) are
    summed over the four coordinates. SIoU, Alpha-IoU and WIoU join as soon as
    :mod:`detloss_plugin.functional` exposes them (:data:`OPTIONAL_LOSSES`)."""
    losses = {
        'IoU': dlf.iou_loss,
        'IoU (log)': functools.partial(dlf.iou_loss, mode='log'),
        'GIoU': dlf.giou_loss,
        'DIoU': dlf.diou_loss,
        'CIoU': dlf.ciou_loss,
        "CIoU (authors' dv)": functools.partial(dlf.ciou_loss, authors_gradient=True),
        'EIoU': dlf.eiou_loss,
        'Focal-EIoU': dlf.focal_eiou_loss,
        'Focal-EIoU (detached)': functools.partial(dlf.focal_eiou_loss, detach_weight=True),
        'L1': dlf.l1_loss,
        'Smooth L1': dlf.smooth_l1_loss,
        'L2': dlf.mse_loss,
        'Focal L1': dlf.focal_l1_loss,
    }
    for name, attr in OPTIONAL_LOSSES.items():
        fn = getattr(dlf, attr, None)
        if fn is not None:
            losses[name] = fn
    if 'WIoU' in losses:
        losses['WIoU'] = functools.partial(dlf.wiou_loss, version='v1')
        losses['WIoU v3'] = _wiou_v3_chunk_mean
    return losses


def _wiou_v3_chunk_mean(pred: Tensor, target: Tensor) -> Tensor:
    """Wise-IoU v3 with the running mean of 1 - IoU replaced by its mean over the cases of
    this call (momentum 1): the simulation has no training schedule for the paper's
    momentum, and each step sees every case of a chunk at once."""
    one = pred.new_ones(())
    mean = dlf.wiou_running_mean(pred.detach(), target, one, momentum=1.0, sync=False)
    return dlf.wiou_loss(pred, target, version='v3', iou_mean=mean)


# losses that may not exist yet in detloss_plugin.functional: display name -> attribute
OPTIONAL_LOSSES = {'SIoU': 'siou_loss', 'Alpha-IoU': 'alpha_iou_loss', 'WIoU': 'wiou_loss'}
# losses without a (useful) gradient for disjoint boxes (IoU = 0): the IoU loss in both
# forms (mmdet's and detloss's clamp makes -ln IoU flat there), and Focal-EIoU, whose
# weight IoU^gamma is eps^gamma (3e-4) there.
NO_DISJOINT_GRADIENT = frozenset({'IoU', 'IoU (log)', 'Focal-EIoU', 'Focal-EIoU (detached)'})
# losses with a gradient for disjoint boxes that are not expected to reach the target in
# 200 steps of this schedule, and why (the tests hold them only to beating IoU):
SLOW_LOSSES = {
    'Alpha-IoU': 'IoU^3 and penalty^3 (alpha = 3) have vanishing gradients at small IoU '
                 'and small penalty; a sketch of the paper\'s alpha-CIoU ended at 3.1 per '
                 'case (IoU: 3.5) in a 12-point run',
}


def _per_box(loss: Tensor, pred: Tensor) -> Tensor:
    if isinstance(loss, (tuple, list)):  # a loss that also returns state
        loss = loss[0]
    return loss.sum(-1) if loss.dim() == pred.dim() else loss


def autograd_direction(loss_fn: Callable, boxes: Tensor, targets: Tensor):
    r"""``(-\nabla_B L, IoU)`` for ``B = (x, y, w, h)``: autograd through ``loss_fn``."""
    with torch.enable_grad():
        b = boxes.detach().requires_grad_(True)
        pred = xywh_to_xyxy(b)
        loss = _per_box(loss_fn(pred, xywh_to_xyxy(targets)), pred)
        grad, = torch.autograd.grad(loss.sum(), b)
    with torch.no_grad():
        iou = box_pair_geometry(pred.detach(), xywh_to_xyxy(targets)).iou
    return -grad, iou


# ------------------------------------------------------- the authors' MATLAB gradients
# Boxes as the authors hold them: (t, b, l, r) = (y - h/2, y + h/2, x - w/2, x + w/2).
# Each direction function returns the *ascent* direction the authors add to the box
# (pred = pred + eta (2 - IoU) s), i.e. minus their gradient of the loss.
def _tblr(b: Tensor):
    x, y, w, h = b.unbind(-1)
    return y - h / 2, y + h / 2, x - w / 2, x + w / 2


def _area(t, b, l, r):
    return (b - t) * (r - l)


def _where0(cond: Tensor, x: Tensor) -> Tensor:
    return torch.where(cond, x, torch.zeros_like(x))


class AuthorsPair:
    """A prediction ``a`` and its target ``b`` (``Tensor[N, 4]``, (x, y, w, h)) with the
    quantities of the authors' helper files, each computed once per step (the MATLAB
    helpers recompute them in every call; the values are the same)."""

    def __init__(self, a: Tensor, b: Tensor):
        self.a, self.b = a, b
        self.p, self.g = _tblr(a), _tblr(b)

    @functools.cached_property
    def inter_edges(self):
        """In.m: the intersection's edges, *not* clamped (negative sides when disjoint)."""
        p, g = self.p, self.g
        return (torch.maximum(p[0], g[0]), torch.minimum(p[1], g[1]),
                torch.maximum(p[2], g[2]), torch.minimum(p[3], g[3]))

    @functools.cached_property
    def cover_edges(self):
        """cover.m: the enclosing box's edges."""
        p, g = self.p, self.g
        return (torch.minimum(p[0], g[0]), torch.maximum(p[1], g[1]),
                torch.minimum(p[2], g[2]), torch.maximum(p[3], g[3]))

    @functools.cached_property
    def areas(self):
        return _area(*self.p), _area(*self.g)

    @functools.cached_property
    def inter(self) -> Tensor:
        """(b - t)(r - l) of the unclamped intersection: negative for boxes apart along
        one axis, positive for boxes apart along both."""
        return _area(*self.inter_edges)

    @functools.cached_property
    def union(self) -> Tensor:
        return self.areas[0] + self.areas[1] - self.inter

    @functools.cached_property
    def overlap(self) -> Tensor:
        t, b, l, r = self.inter_edges
        return (t < b) & (l < r)

    @functools.cached_property
    def iou(self) -> Tensor:
        """iou.m: I / U when the intersection has positive sides, else 0."""
        safe_union = torch.where(self.union == 0, torch.ones_like(self.union), self.union)
        return _where0(self.overlap, self.inter / safe_union)

    @functools.cached_property
    def d_inter(self):
        """dIbox.m: d I / d(t, b, l, r) of the predicted edge that bounds the
        intersection, from the unclamped intersection (so also for disjoint boxes)."""
        p, g = self.p, self.g
        t, b, l, r = self.inter_edges
        return (_where0(p[0] > g[0], -(r - l)), _where0(p[1] < g[1], r - l),
                _where0(p[2] > g[2], -(b - t)), _where0(p[3] < g[3], b - t))

    @functools.cached_property
    def d_area(self):
        """dXbox.m: d area / d(t, b, l, r)."""
        t, b, l, r = self.p
        w, h = r - l, b - t
        return -w, w, -h, h

    @functools.cached_property
    def d_union(self):
        """dUbox.m: dU = dX - dI."""
        return tuple(x - i for x, i in zip(self.d_area, self.d_inter))

    @functools.cached_property
    def d_cover(self):
        """dCbox.m: d C / d(t, b, l, r), C the enclosing box's area."""
        p, g = self.p, self.g
        t, b, l, r = self.cover_edges
        return (_where0(p[0] < g[0], -(r - l)), _where0(p[1] > g[1], r - l),
                _where0(p[2] < g[2], -(b - t)), _where0(p[3] > g[3], b - t))


def authors_diou_tblr(pair: AuthorsPair):
    """dIOU.m: d IoU / d(t, b, l, r), zero unless the boxes overlap.

    dIOU.m ends with a branch for a flipped box (``t >= b``: ``s.dt = s.db; s.db =
    s.dt``, which copies rather than swaps); it cannot change anything, since a flipped
    box never passes the overlap test (``max(t, t_gt) >= t >= b >= min(b, b_gt)``), so
    both components are already 0 there. It is left out.
    """
    inter, union = pair.inter, pair.union
    ok = pair.overlap & (union > 0)
    u2 = torch.where(ok, union * union, torch.ones_like(union))
    return tuple(_where0(ok, (union * di - inter * du) / u2)
                 for di, du in zip(pair.d_inter, pair.d_union))


def authors_dgiou_tblr(pair: AuthorsPair, clamp: bool = False):
    """dGIOU.m: GIoU = IoU - 1 + U / C; d(U / C) from the unclamped intersection's U,
    added to dIoU when the boxes overlap (if C > 0), alone otherwise.

    ``clamp=True`` (a correction, not the authors'): for disjoint boxes use the true
    I = 0, i.e. U = |B| + |B_gt| and dU = d|B|.
    """
    overlap = pair.overlap
    c = _area(*pair.cover_edges)
    union, d_u = pair.union, pair.d_union
    if clamp:
        union = torch.where(overlap, union, pair.areas[0] + pair.areas[1])
        d_u = tuple(torch.where(overlap, du, dx) for du, dx in zip(d_u, pair.d_area))
    c2 = torch.where(c != 0, c * c, torch.ones_like(c))
    d_uc = [(c * du - union * dc) / c2 for du, dc in zip(d_u, pair.d_cover)]
    c_pos = c > 0
    return tuple(torch.where(overlap, di + _where0(c_pos, d), d)
                 for di, d in zip(authors_diou_tblr(pair), d_uc))


def authors_to_xywh(d, half: bool = False):
    """to_xywh.m: (dx, dy, dw, dh) = (dl + dr, dt + db, dr - dl, db - dt). The chain rule
    through l = x - w/2, r = x + w/2 gives (dr - dl) / 2 for dw: the authors drop 1/2
    (``half=True`` puts it back)."""
    dt, db, dl, dr = d
    k = 0.5 if half else 1.0
    return torch.stack([dl + dr, dt + db, k * (dr - dl), k * (db - dt)], -1)


def _authors_distance_term(pair: AuthorsPair, true_enclosing: bool = False) -> Tensor:
    r"""The rho^2 / c^2 part of dDIOU.m / dCIOU.m, on (x, y, w, h).

    The authors build d(enclosing edge)/d(x, y, w, h) for each edge of the enclosing
    box, then give the enclosing width *and* height the same derivative record
    (dx and dw from the left/right edges, dy and dh from the top/bottom ones), set
    d Cw/dw = -1 when the prediction spans the target horizontally (and d Ch/dh = -1
    vertically), and write the x, y components as
    ``(2 (x_gt - x) c^2 - d(c^2)/dx rho^2) / c^4`` (the true ascent direction has
    ``+ d(c^2)/dx rho^2``) and the w, h ones as ``+ d(c^2)/dw rho^2 / c^4``.

    ``true_enclosing=True`` (a correction, not the authors'): the width depends on
    x, w only and the height on y, h only, no -1 overrides, ``+`` in x and y: the true
    :math:`-\partial(\rho^2/c^2)`.
    """
    a, b, p, g = pair.a, pair.b, pair.p, pair.g
    ct, cb, cl, cr = pair.cover_edges
    cw, ch = cr - cl, cb - ct
    c2 = cw * cw + ch * ch
    # the prediction owns the enclosing box's top / bottom / left / right edge
    top, bottom = p[0] < g[0], p[1] > g[1]
    left, right = p[2] < g[2], p[3] > g[3]
    t, bo, le, ri = (m.to(cw.dtype) for m in (top, bottom, left, right))
    # d/dx, d/dy, d/dw, d/dh of the enclosing width (right - left edge) and height
    # (bottom - top edge): edge (x +- w/2) or (y +- h/2) when the prediction owns it
    zero = torch.zeros_like(cw)
    d_width = [ri - le, zero, 0.5 * (ri + le), zero]
    d_height = [zero, bo - t, zero, 0.5 * (bo + t)]
    if true_enclosing:
        d_cw, d_ch, sign = d_width, d_height, 1.0
    else:
        # the authors' records: width and height both get (dx, dy, dw, dh) =
        # (d_width dx, d_height dy, d_width dw, d_height dh), then the -1 overrides
        shared = [d_width[0], d_height[1], d_width[2], d_height[3]]
        d_cw, d_ch = list(shared), list(shared)
        d_cw[2] = torch.where(left & right, -torch.ones_like(cw), shared[2])
        d_ch[3] = torch.where(top & bottom, -torch.ones_like(cw), shared[3])
        sign = -1.0
    d_c2 = [2 * cw * dw_ + 2 * ch * dh_ for dw_, dh_ in zip(d_cw, d_ch)]
    rho2 = (a[..., 0] - b[..., 0]) ** 2 + (a[..., 1] - b[..., 1]) ** 2
    c4 = c2 * c2
    sx = (2 * (b[..., 0] - a[..., 0]) * c2 + sign * d_c2[0] * rho2) / c4
    sy = (2 * (b[..., 1] - a[..., 1]) * c2 + sign * d_c2[1] * rho2) / c4
    sw = d_c2[2] * rho2 / c4
    sh = d_c2[3] * rho2 / c4
    return torch.stack([sx, sy, sw, sh], -1)


# Each direction takes an AuthorsPair (prediction, target). The keyword flags switch on
# corrections (default off: the authors' code). With all of a function's flags on it is
# the true ascent direction (tests/integration/test_simulate_regression.py checks this against
# autograd); ``--mode ablation`` runs them one at a time.
def authors_iou_direction(pair: AuthorsPair, half: bool = False) -> Tensor:
    """dIOU.m then to_xywh.m."""
    return authors_to_xywh(authors_diou_tblr(pair), half)


def authors_giou_direction(pair: AuthorsPair, half: bool = False,
                           clamp: bool = False) -> Tensor:
    """dGIOU.m then to_xywh.m."""
    return authors_to_xywh(authors_dgiou_tblr(pair, clamp), half)


def authors_diou_direction(pair: AuthorsPair, half: bool = False,
                           true_enclosing: bool = False) -> Tensor:
    """dDIOU.m: the distance term plus to_xywh(dIOU)."""
    return (_authors_distance_term(pair, true_enclosing)
            + authors_to_xywh(authors_diou_tblr(pair), half))


def authors_ciou_direction(pair: AuthorsPair, half: bool = False,
                           true_enclosing: bool = False, true_dv: bool = False) -> Tensor:
    r"""dCIOU.m: dDIOU.m plus alpha times the authors' dv, which drops the
    :math:`1/(w^2 + h^2)` factor of :math:`\partial \arctan(w/h)`:
    ``8/pi^2 (atan(w_gt/h_gt) - atan(w/h)) (h, -w)``; alpha = v / (1 - IoU + v + 1e-7)
    with their IoU (0 for disjoint boxes), not gated. ``true_dv=True`` puts the factor
    back."""
    a, b = pair.a, pair.b
    w, h = a[..., 2], a[..., 3]
    diff = torch.atan(b[..., 2] / b[..., 3]) - torch.atan(w / h)
    v = 4 / math.pi ** 2 * diff * diff
    alpha = v / (1 - pair.iou + v + 1e-7)
    k = alpha * 8 / math.pi ** 2 * diff
    if true_dv:
        k = k / (w * w + h * h)
    zero = torch.zeros_like(k)
    aspect = torch.stack([zero, zero, k * h, -k * w], -1)
    return (_authors_distance_term(pair, true_enclosing) + aspect
            + authors_to_xywh(authors_diou_tblr(pair), half))


AUTHORS_DIRECTIONS = {
    'IoU': authors_iou_direction,
    'GIoU': authors_giou_direction,
    'DIoU': authors_diou_direction,
    'CIoU': authors_ciou_direction,
}

# The authors' gradients with one correction at a time, then all (= the true gradient):
# which difference moves which curve (docs/simulation.md).
_P = functools.partial
AUTHORS_ABLATIONS = {
    'IoU': authors_iou_direction,
    'IoU +1/2': _P(authors_iou_direction, half=True),
    'GIoU': authors_giou_direction,
    'GIoU +1/2': _P(authors_giou_direction, half=True),
    'GIoU +clamp': _P(authors_giou_direction, clamp=True),
    'GIoU +1/2 +clamp': _P(authors_giou_direction, half=True, clamp=True),
    'DIoU': authors_diou_direction,
    'DIoU +1/2': _P(authors_diou_direction, half=True),
    'DIoU +enclosing': _P(authors_diou_direction, true_enclosing=True),
    'DIoU +1/2 +enclosing': _P(authors_diou_direction, half=True, true_enclosing=True),
    'CIoU': authors_ciou_direction,
    'CIoU +dv': _P(authors_ciou_direction, true_dv=True),
    'CIoU +1/2 +enclosing': _P(authors_ciou_direction, half=True, true_enclosing=True),
    'CIoU +1/2 +enclosing +dv': _P(authors_ciou_direction, half=True, true_enclosing=True,
                                    true_dv=True),
}


def authors_step_direction(direction_fn: Callable, boxes: Tensor, targets: Tensor):
    """``(s, IoU)``: the authors' update direction and their IoU (iou.m)."""
    pair = AuthorsPair(boxes, targets)
    return direction_fn(pair), pair.iou


# -------------------------------------------------------------------- the simulation
def regress(step_fn: Callable[[Tensor, Tensor], tuple], anchors: Tensor, targets: Tensor,
            steps: int = STEPS, chunk: int = 1 << 16):
    r"""Run :math:`B_t = B_{t-1} + \eta_t (2 - IoU) s(B_{t-1})` for every case.

    ``step_fn(boxes, targets) -> (s, iou)`` gives the update direction ``s`` (minus the
    loss's gradient) and the IoU. Returns ``(errors, final_error_per_case,
    non_finite)``: ``errors`` is ``Tensor[steps + 1]`` float64, :math:`E(0) .. E(steps)`
    summed over the finite cases; ``final_error_per_case`` is ``Tensor[N]``;
    ``non_finite`` counts the cases whose box became NaN/Inf (left out of ``errors``).
    """
    n = anchors.shape[0]
    errors = torch.zeros(steps + 1, dtype=torch.float64)
    final = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, chunk):
        b = anchors[start:start + chunk].clone()
        t = targets[start:start + chunk]
        errs = [(b - t).abs().sum(-1)]
        for step in range(1, steps + 1):
            s, iou = step_fn(b, t)
            with torch.no_grad():
                b = b + (learning_rate(step) * (2 - iou)).unsqueeze(-1) * s
            errs.append((b - t).abs().sum(-1))
        err = torch.stack(errs).double()          # (steps + 1, chunk)
        finite = torch.isfinite(err).all(0)
        errors += torch.where(finite, err, torch.zeros_like(err)).sum(1)
        final[start:start + chunk] = err[-1]
    non_finite = int((~torch.isfinite(final)).sum())
    return errors, final, non_finite


def simulate(mode: str, names: Optional[List[str]] = None, points: int = PAPER_POINTS,
             seed: int = 0, dtype=torch.float64, chunk: int = 1 << 16,
             steps: int = STEPS, log=None) -> Dict:
    """Run every loss of ``mode`` ('autograd', 'authors' or 'ablation'), or those in
    ``names``.

    Returns ``{'mode', 'points', 'cases', 'steps', 'losses': {name: record}}`` where a
    record has ``errors`` (E(0) .. E(steps)), ``total_error`` (sum of E(1..steps)),
    ``final_error`` (E(steps)), their per-case values, ``point_final_error`` (the final
    error summed over each point's 343 cases), ``non_finite`` and ``seconds``.
    """
    registry = {'autograd': autograd_losses(), 'authors': AUTHORS_DIRECTIONS,
                'ablation': AUTHORS_ABLATIONS}[mode]
    names = list(registry) if names is None else [n for n in names if n in registry]
    pts = sample_points(points, seed, dtype)
    anchors, targets = make_cases(pts)
    n = anchors.shape[0]
    out = dict(mode=mode, points=points, seed=seed, cases=n, steps=steps,
               dtype=str(dtype).replace('torch.', ''), point_xy=pts.double().tolist(),
               losses={})
    for name in names:
        if mode == 'autograd':
            step_fn = functools.partial(autograd_direction, registry[name])
        else:
            step_fn = functools.partial(authors_step_direction, registry[name])
        t0 = time.perf_counter()
        errors, final, non_finite = regress(step_fn, anchors, targets, steps, chunk)
        seconds = time.perf_counter() - t0
        total = float(errors[1:].sum())
        fin = float(errors[-1])
        point_final = final.view(points, CASES_PER_POINT).sum(1)
        out['losses'][name] = dict(
            errors=errors.tolist(), total_error=total, final_error=fin,
            total_error_per_case=total / n, final_error_per_case=fin / n,
            point_final_error=point_final.tolist(), non_finite=non_finite,
            seconds=seconds, disjoint_gradient=name not in NO_DISJOINT_GRADIENT)
        if log:
            log(f'[{mode}] {name:<20s} final {fin / n:10.4g}/case  total '
                f'{total / n:10.4g}/case  non-finite {non_finite}  {seconds:6.1f} s')
    return out


# ------------------------------------------------------------------------- outputs
def results_table(runs: List[Dict]) -> str:
    lines = ['| gradients | loss | total error | final error | total / case | '
             'final / case | non-finite cases |',
             '|---|---|---:|---:|---:|---:|---:|']
    for run in runs:
        mode = _MODE_NAMES[run['mode']]
        for name, r in run['losses'].items():
            lines.append(f"| {mode} | {name} | {r['total_error']:.4g} | "
                         f"{r['final_error']:.4g} | {r['total_error_per_case']:.4g} | "
                         f"{r['final_error_per_case']:.4g} | {r['non_finite']} |")
    return '\n'.join(lines) + '\n'


def comparison_table(runs: List[Dict]) -> str:
    """One row per loss, the authors' and autograd's errors per case side by side."""
    by_mode = {run['mode']: run['losses'] for run in runs}
    authors, autograd = by_mode.get('authors', {}), by_mode.get('autograd', {})
    lines = ["| loss | authors' MATLAB: total / case | final / case | "
             "autograd (detloss): total / case | final / case |",
             '|---|---:|---:|---:|---:|']
    for name in list(authors) + [n for n in autograd if n not in authors]:
        cells = []
        for losses in (authors, autograd):
            r = losses.get(name)
            cells += ([f"{r['total_error_per_case']:.4g}", f"{r['final_error_per_case']:.4g}"]
                      if r else ['—', '—'])
        lines.append(f"| {name} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _figure(figsize, dpi=80):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> None:
    """Save as a 256-colour PNG (a third of the size of matplotlib's RGBA PNG for these
    pictures; they go into the repository)."""
    try:
        from PIL import Image
    except ImportError:  # pillow comes with matplotlib; keep the plain PNG otherwise
        fig.savefig(path)
        return
    fig.canvas.draw()
    image = Image.frombuffer('RGBA', fig.canvas.get_width_height(),
                             fig.canvas.buffer_rgba(), 'raw', 'RGBA', 0, 1)
    image.convert('RGB').quantize(colors=256).save(path, optimize=True)


_MODE_NAMES = {'authors': "authors' MATLAB", 'autograd': 'autograd (detloss)',
               'ablation': "authors' + corrections"}
_TITLES = {'authors': "authors' MATLAB gradients", 'autograd': 'autograd through detloss',
           'ablation': "authors' gradients, with corrections"}


def plot_curves(runs: List[Dict], path: str) -> None:
    """E(t) of every loss, one panel per gradient mode, log scale."""
    fig = _figure((6.4 * len(runs), 4.6))
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    from matplotlib import colormaps
    colors = colormaps['tab20'].colors
    for ax, run in zip(axes, runs):
        for k, (name, r) in enumerate(run['losses'].items()):
            err = torch.tensor(r['errors'][1:]).clamp(min=1e-12)
            ax.plot(range(1, len(err) + 1), err.numpy(), label=name,
                    color=colors[(2 * k) % 20 + (2 * k) // 20 % 2],
                    linestyle='-' if r['disjoint_gradient'] else '--')
        ax.set_yscale('log')
        ax.set_xlabel('iteration')
        ax.set_ylabel('E(t): sum of |B - B_gt|_1 over cases')
        ax.set_title(f"{_TITLES[run['mode']]} ({run['cases']:,} cases)")
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_maps(run: Dict, path: str) -> None:
    """The final error summed over each anchor point's 343 cases, as a surface over the
    disk of anchor centres (as the paper's figures), one panel per loss."""
    import matplotlib.tri as mtri
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers '3d')
    names = list(run['losses'])
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure((3.6 * cols, 3.2 * rows), dpi=64)
    xy = torch.tensor(run['point_xy'])
    tri = mtri.Triangulation(xy[:, 0].numpy(), xy[:, 1].numpy())
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1, projection='3d')
        z = torch.tensor(run['losses'][name]['point_final_error'])
        z = torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        ax.plot_trisurf(tri, z.numpy(), cmap='viridis', linewidth=0, antialiased=False)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=6)
        ax.set_zlabel('final error', fontsize=7)
    fig.suptitle(f"Final error per anchor point (sum over 343 cases), {_TITLES[run['mode']]}")
    fig.tight_layout()
    _save(fig, path)


def write_outputs(runs: List[Dict], out_dir: str, plots: bool = True) -> None:
    os.makedirs(out_dir, exist_ok=True)
    table = results_table(runs)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(table)
        if {'authors', 'autograd'} <= {run['mode'] for run in runs}:
            f.write('\n' + comparison_table(runs))
    per_point = {'point_xy': runs[0]['point_xy'],
                 **{run['mode']: {name: r['point_final_error']
                                  for name, r in run['losses'].items()} for run in runs}}
    slim = [dict({k: v for k, v in run.items() if k not in ('point_xy', 'losses')},
                 losses={name: {k: v for k, v in r.items() if k != 'point_final_error'}
                         for name, r in run['losses'].items()}) for run in runs]
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(slim, f)
    with open(osp.join(out_dir, 'point_errors.json'), 'w') as f:
        json.dump(per_point, f)
    if plots:
        plot_curves(runs, osp.join(out_dir, 'curves.png'))
        for run in runs:
            if run['mode'] != 'ablation':
                plot_maps(run, osp.join(out_dir, f"maps_{run['mode']}.png"))


def load_runs(results_dir: str) -> List[Dict]:
    """The runs of a previous ``--out-dir`` (results.json + point_errors.json), as
    :func:`simulate` returns them."""
    with open(osp.join(results_dir, 'results.json')) as f:
        runs = json.load(f)
    with open(osp.join(results_dir, 'point_errors.json')) as f:
        per_point = json.load(f)
    for run in runs:
        run['point_xy'] = per_point['point_xy']
        for name, r in run['losses'].items():
            r['point_final_error'] = per_point[run['mode']][name]
    return runs


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--points', type=int, default=PAPER_POINTS,
                   help='anchor centres (343 cases each); the paper: 5000')
    p.add_argument('--mode', choices=('both', 'autograd', 'authors', 'ablation'),
                   default='both', help="both = authors' then autograd; ablation = the "
                   "authors' gradients with each correction (docs/simulation.md)")
    p.add_argument('--losses', nargs='+', help='names to run (default: all of the mode)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--dtype', choices=('float64', 'float32'), default='float64')
    p.add_argument('--chunk', type=int, default=1 << 16, help='cases per vectorised chunk')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    p.add_argument('--out-dir', default='work_dirs/simulation')
    p.add_argument('--no-plots', action='store_true')
    p.add_argument('--from-results', metavar='DIR',
                   help='redraw the table and pictures of a previous --out-dir DIR into '
                        '--out-dir, without simulating')
    args = p.parse_args(argv)
    if args.points < 3:
        p.error(f'--points must be >= 3 (a surface needs a triangle), got {args.points}')
    if args.chunk < 1:
        p.error(f'--chunk must be >= 1, got {args.chunk}')
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.from_results:
        runs = load_runs(args.from_results)
        write_outputs(runs, args.out_dir, plots=not args.no_plots)
        print(results_table(runs))
        return
    dtype = getattr(torch, args.dtype)
    modes = ('authors', 'autograd') if args.mode == 'both' else (args.mode,)
    if args.losses:
        known = set(autograd_losses()) | set(AUTHORS_ABLATIONS)
        unknown = [n for n in args.losses if n not in known]
        if unknown:
            sys.exit(f'--losses: unknown {unknown}; known: {sorted(known)}')
    t0 = time.perf_counter()
    runs = [simulate(m, args.losses, args.points, args.seed, dtype, args.chunk,
                     log=functools.partial(print, flush=True)) for m in modes]
    runs = [r for r in runs if r['losses']]
    if not runs:
        sys.exit(f'--losses: none of {args.losses} has a gradient in mode {args.mode!r} '
                 f"(the authors' gradients: {list(AUTHORS_ABLATIONS)})")
    write_outputs(runs, args.out_dir, plots=not args.no_plots)
    print(results_table(runs))
    print(f'[detloss simulate] {sum(r["cases"] for r in runs[:1]):,} cases, '
          f'{time.perf_counter() - t0:.0f} s; wrote {osp.abspath(args.out_dir)}')


if __name__ == '__main__':
    main()
