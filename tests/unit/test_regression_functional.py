"""The functional core of the regression losses: hand-derived values, gradients
(``torch.autograd.gradcheck`` in float64), degenerate boxes, half precision and bad input.

Boxes are ``(x1, y1, x2, y2)``. The hand-derived cases give the working in a comment;
the default ``eps`` (1e-7) changes them by less than 1e-7, far inside the tolerances.
"""
import math

import pytest
import torch
from torch.autograd import gradcheck

from detloss_plugin.functional import (ciou_loss, diou_loss, eiou_loss, focal_eiou_loss,
                                       focal_l1_loss, giou_loss, iou_loss, l1_loss, mse_loss,
                                       smooth_l1_loss)

F64 = torch.float64

K = 4 / math.pi ** 2  # the factor of CIoU's aspect-ratio term v


def boxes(*rows, dtype=F64, grad=False):
    return torch.tensor(rows, dtype=dtype, requires_grad=grad)


def random_pairs(n, seed, disjoint=0, dtype=F64):
    """``n`` pairs of well-formed boxes; the last ``disjoint`` pairs do not overlap.

    Overlapping pairs are a jittered copy of the prediction (IoU about 0.2 - 0.9). The
    pairs are checked to stay away from every kink of the losses (ties of min/max, a
    zero intersection side), so that finite differences see a smooth function.
    """
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g, dtype=F64)  # noqa: E731
    ctr = 20 + 60 * u(n, 2)
    size = 5 + 30 * u(n, 2)
    t_ctr = ctr + (u(n, 2) - 0.5) * 0.6 * size
    t_size = size * torch.exp(u(n, 2) - 0.5)
    if disjoint:
        # move the target right of the prediction, with a gap of 0.05 to 1.5
        d = slice(n - disjoint, n)
        gap = 0.05 + 1.45 * u(disjoint)
        t_ctr[d, 0] = ctr[d, 0] + (size[d, 0] + t_size[d, 0]) / 2 + gap
    pred = torch.cat([ctr - size / 2, ctr + size / 2], 1)
    target = torch.cat([t_ctr - t_size / 2, t_ctr + t_size / 2], 1)
    # away from kinks: no two x (y) coordinates of a pair within 1e-3 of each other
    xs = torch.stack([pred[:, 0], pred[:, 2], target[:, 0], target[:, 2]], 1)
    ys = torch.stack([pred[:, 1], pred[:, 3], target[:, 1], target[:, 3]], 1)
    for c in (xs, ys):
        d = (c[:, :, None] - c[:, None, :]).abs() + torch.eye(4, dtype=F64) * 1e9
        assert d.min() > 1e-3
    return pred.to(dtype), target.to(dtype)


# --------------------------------------------------------------------------------------
# Hand-derived values
# --------------------------------------------------------------------------------------

def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), rtol=tol, atol=tol)


def test_iou_loss_hand_values():
    pred = boxes([0, 0, 4, 2], [0, 0, 4, 4], [0, 0, 1, 1], [1, 2, 5, 9])
    target = boxes([2, 0, 6, 2], [1, 1, 3, 3], [2, 0, 3, 1], [1, 2, 5, 9])
    # 1) inter 2*2 = 4, union 8 + 8 - 4 = 12, IoU = 1/3
    # 2) nested: inter 4, union 16, IoU = 1/4
    # 3) disjoint: IoU = 0
    # 4) identical: IoU = 28 / (28 + eps)
    close(iou_loss(pred, target, 'linear'), [2 / 3, 3 / 4, 1.0, 0.0])
    # log mode: -ln IoU; IoU = 0 is clamped at eps: -ln(1e-7) = 16.118...
    close(iou_loss(pred, target, 'log'), [math.log(3), math.log(4), -math.log(1e-7), 0.0])
    close(iou_loss(pred, target), [2 / 3, 3 / 4, 1.0, 0.0])  # default mode is linear


def test_giou_loss_hand_values():
    pred = boxes([0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 4, 4])
    target = boxes([1, 1, 3, 3], [2, 0, 3, 1], [1, 1, 3, 3])
    # 1) inter 1, union 4 + 4 - 1 = 7, enclosing box 3x3 = 9:
    #    1 - 1/7 + (9 - 7)/9 = 68/63
    # 2) disjoint: IoU 0, union 2, enclosing 3x1 = 3: 1 - 0 + (3 - 2)/3 = 4/3
    # 3) nested: enclosing box = union = 16, IoU 1/4: 0.75
    close(giou_loss(pred, target), [68 / 63, 4 / 3, 0.75])


def test_diou_loss_hand_values():
    pred = boxes([0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 4, 4], [0, 0, 4, 2])
    target = boxes([0, 0, 2, 1], [2, 0, 3, 1], [1, 1, 3, 3], [0, 0, 4, 3])
    # 1) IoU = 2/4 = 0.5, centres (1, 1), (1, 0.5): rho^2 = 0.25, enclosing 2x2: c^2 = 8
    #    1 - 0.5 + 0.25/8 = 0.53125
    # 2) disjoint: centres (0.5, .5), (2.5, .5): rho^2 = 4; enclosing 3x1: c^2 = 10
    #    1 - 0 + 4/10 = 1.4
    # 3) nested, same centre: 1 - 1/4 = 0.75
    # 4) IoU = 8/12 = 2/3, centres (2, 1), (2, 1.5): rho^2 = .25, enclosing 4x3: c^2 = 25
    #    1/3 + 0.01
    close(diou_loss(pred, target), [0.53125, 1.4, 0.75, 1 / 3 + 0.01])


def test_ciou_loss_hand_values_default_and_alpha_gate():
    pred = boxes([0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 4, 2], [1, 1, 3, 5])
    target = boxes([0, 0, 2, 1], [1, 1, 3, 2], [0, 0, 4, 3], [1, 1, 3, 5])
    # 1) DIoU = 0.53125 (above), IoU = 2/(4 + eps), just below 0.5.
    #    w/h = 1, wgt/hgt = 2: atan 2 - atan 1 = atan(1/3), v = K atan(1/3)^2;
    #    alpha = v / (0.5 + v), so alpha * v = v^2 / (0.5 + v)
    v1 = K * math.atan(1 / 3) ** 2
    # 2) nested, IoU = 2/16 = 1/8 < 0.5; centres (2, 2), (2, 1.5): rho^2 = .25,
    #    enclosing 4x4: c^2 = 32. DIoU = 7/8 + 1/128. w/h = 1, wgt/hgt = 2: v = v1.
    #    alpha v = v1^2 / (7/8 + v1)
    # 3) IoU = 2/3 > 0.5; DIoU = 1/3 + 0.01 (above); w/h = 2, wgt/hgt = 4/3:
    #    atan(4/3) - atan(2) = atan(-2/11): v = K atan(2/11)^2, alpha v = v^2/(1/3 + v)
    v3 = K * math.atan(2 / 11) ** 2
    # 4) identical: 0 (v = 0 and alpha = 0/(0 + eps) = 0, not NaN)
    diou = [0.53125, 7 / 8 + 1 / 128, 1 / 3 + 0.01, 0.0]
    default = [diou[0] + v1 ** 2 / (0.5 + v1), diou[1] + v1 ** 2 / (7 / 8 + v1),
               diou[2] + v3 ** 2 / (1 / 3 + v3), 0.0]
    # the gate zeroes alpha for IoU <= 0.5 (cases 1 and 2) and keeps it above (case 3)
    gated = [diou[0], diou[1], default[2], 0.0]
    close(ciou_loss(pred, target), default)
    close(ciou_loss(pred, target, alpha_gate=True), gated)
    # the numbers are not all the same: the aspect term matters in cases 1-3
    assert default[0] - diou[0] > 3e-3 and default[1] - diou[1] > 1e-3
    # the authors' gradient variant changes only the gradient
    for gate in (False, True):
        torch.testing.assert_close(
            ciou_loss(pred, target, alpha_gate=gate, authors_gradient=True),
            ciou_loss(pred, target, alpha_gate=gate), rtol=0, atol=1e-15)


def test_eiou_and_focal_eiou_hand_values():
    pred = boxes([0, 0, 2, 2], [0, 0, 4, 2], [0, 0, 1, 1])
    target = boxes([0, 0, 2, 1], [0, 0, 4, 3], [2, 0, 3, 1])
    # 1) DIoU part 0.53125; w = wgt = 2; h - hgt = 1, enclosing height Ch = 2:
    #    0.53125 + 0/4 + 1/4 = 0.78125, IoU = 0.5
    # 2) DIoU part 1/3 + 0.01; w = wgt; h - hgt = -1, Ch = 3: + 1/9, IoU = 2/3
    # 3) disjoint, equal sizes: DIoU part 1.4, IoU = 0
    eiou = [0.78125, 1 / 3 + 0.01 + 1 / 9, 1.4]
    iou = [0.5, 2 / 3, 0.0]
    close(eiou_loss(pred, target), eiou)
    for gamma in (0.0, 0.5, 1.0, 2.0):
        # IoU^gamma * L_EIoU; the IoU is clamped at eps: disjoint boxes get eps^gamma
        want = [max(i, 1e-7) ** gamma * e for i, e in zip(iou, eiou)]
        close(focal_eiou_loss(pred, target, gamma=gamma), want)
        close(focal_eiou_loss(pred, target, gamma=gamma, detach_weight=True), want)
    # default gamma = 0.5: sqrt(0.5) * 0.78125 = 0.55243
    close(focal_eiou_loss(pred, target)[0], math.sqrt(0.5) * 0.78125)
    close(focal_eiou_loss(pred, target)[0], 0.5524272, tol=1e-6)


def test_coordinate_losses_hand_values():
    pred = torch.tensor([[1.5, -2.0, 0.0, 3.0]], dtype=F64)
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64)
    # x = pred - target = [0.5, -2, 0, 3]
    close(l1_loss(pred, target), [[0.5, 2.0, 0.0, 3.0]])
    close(mse_loss(pred, target), [[0.25, 4.0, 0.0, 9.0]])
    # beta 1: 0.5 x^2 for |x| < 1, |x| - 0.5 otherwise
    close(smooth_l1_loss(pred, target), [[0.125, 1.5, 0.0, 2.5]])
    # beta 0.5: x^2 for |x| < 0.5; |x| = 0.5 is on the linear branch: 0.5 - 0.25
    close(smooth_l1_loss(pred, target, beta=0.5), [[0.25, 1.75, 0.0, 2.75]])
    # beta 4: everything quadratic: x^2 / 8
    close(smooth_l1_loss(pred, target, beta=4.0), [[0.03125, 0.5, 0.0, 1.125]])


def test_smooth_l1_beta_zero_is_l1_in_value_and_gradient():
    pred, target = random_pairs(6, 0)
    pred = pred.requires_grad_()
    smooth = smooth_l1_loss(pred, target, beta=0.0)
    (g_smooth,) = torch.autograd.grad(smooth.sum(), pred)
    l1 = l1_loss(pred, target)
    (g_l1,) = torch.autograd.grad(l1.sum(), pred)
    torch.testing.assert_close(smooth, l1, rtol=0, atol=0)
    torch.testing.assert_close(g_smooth, g_l1, rtol=0, atol=0)
    # a tiny beta is not a NaN either, and tends to L1
    tiny = smooth_l1_loss(pred, target, beta=1e-12)
    (g_tiny,) = torch.autograd.grad(tiny.sum(), pred)
    assert torch.isfinite(g_tiny).all()
    torch.testing.assert_close(tiny, l1, rtol=0, atol=1e-12)


def test_focal_l1_hand_values_both_branches():
    pred = torch.tensor([0.0, 0.5, 1.0, 2.0, -2.0], dtype=F64)
    target = torch.zeros(5, dtype=F64)
    # beta = 1/e, alpha = -1/ln(beta) = 1 (defaults):
    #   x <= 1: -x^2 (2 ln(x/e) - 1)/4 = x^2 (3 - 2 ln x)/4
    #     x = 0.5: 0.25 (3 + 2 ln 2)/4 = 0.27414;  x = 1: 3/4
    #   x > 1: -ln(beta) x + C = x + C, C = (2 alpha ln beta + alpha)/4 = -1/4
    #     x = 2: 1.75
    want = [0.0, 0.25 * (3 + 2 * math.log(2)) / 4, 0.75, 1.75, 1.75]
    close(focal_l1_loss(pred, target), want)
    # beta = 0.5 and the default alpha = 1/ln 2:
    #   x = 1: -alpha (2 ln 0.5 - 1)/4 = (2 + 1/ln 2)/4;  x = 2: 2 + C,
    #   C = (2 alpha ln 0.5 + alpha)/4 = (-2 + 1/ln 2)/4
    a = 1 / math.log(2)
    close(focal_l1_loss(pred[2:4], target[2:4], beta=0.5),
          [(2 + a) / 4, 2 + (-2 + a) / 4])
    # an explicit alpha scales both branches: alpha = 2, beta = 1/e
    #   x = 0.5: 2 * 0.27414; x = 2: -2 ln(1/e) 2 + (2*2*(-1) + 2)/4 = 4 - 0.5
    close(focal_l1_loss(pred[1:4:2], target[1:4:2], alpha=2.0),
          [2 * 0.25 * (3 + 2 * math.log(2)) / 4, 3.5])


def test_focal_l1_gradient_hand_values():
    # dL/dx = -alpha x ln(beta x) for x <= 1 and -alpha ln(beta) above
    # beta = 1/e, alpha = 1: x = 0.5: 0.5 (1 + ln 2) = 0.84657; x = 2: 1; x = 0: 0
    pred = torch.tensor([0.0, 0.5, 2.0, -0.5], dtype=F64, requires_grad=True)
    loss = focal_l1_loss(pred, torch.zeros(4, dtype=F64))
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    close(grad, [0.0, 0.5 * (1 + math.log(2)), 1.0, -0.5 * (1 + math.log(2))])


@pytest.mark.parametrize('beta,alpha', [(math.exp(-1), None), (0.5, None), (0.8, 3.0)])
def test_focal_l1_continuous_at_one(beta, alpha):
    x = torch.tensor([1 - 1e-9, 1.0, 1 + 1e-9], dtype=F64, requires_grad=True)
    loss = focal_l1_loss(x, torch.zeros(3, dtype=F64), beta=beta, alpha=alpha)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    torch.testing.assert_close(loss[0], loss[1], rtol=0, atol=1e-8)
    torch.testing.assert_close(loss[2], loss[1], rtol=0, atol=1e-8)
    # the gradient is continuous too: -alpha ln(beta) on both sides
    a = -1 / math.log(beta) if alpha is None else alpha
    close(grad, [-a * math.log(beta)] * 3, tol=1e-7)


def test_iou_log_mode_gradient_is_zero_for_disjoint_boxes():
    pred = boxes([0, 0, 1, 1], grad=True)
    loss = iou_loss(pred, boxes([2, 0, 3, 1]), 'log')
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    assert torch.equal(grad, torch.zeros_like(grad))


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------

# Losses whose analytic gradient is the true gradient of their value.
PLAIN = {
    'iou_linear': lambda p, t: iou_loss(p, t, 'linear'),
    'iou_log': lambda p, t: iou_loss(p, t, 'log'),
    'giou': giou_loss,
    'diou': diou_loss,
    'eiou': eiou_loss,
    'focal_eiou_gamma0.5': lambda p, t: focal_eiou_loss(p, t, gamma=0.5),
    'focal_eiou_gamma0': lambda p, t: focal_eiou_loss(p, t, gamma=0.0),
    'focal_eiou_gamma2': lambda p, t: focal_eiou_loss(p, t, gamma=2.0),
}


@pytest.mark.parametrize('name', sorted(PLAIN))
def test_gradcheck_iou_family(name):
    fn = PLAIN[name]
    disjoint = 0 if name == 'iou_log' else 2  # log mode: constant (clamped) when disjoint
    pred, target = random_pairs(6, 1, disjoint=disjoint)
    assert gradcheck(fn, (pred.requires_grad_(), target.requires_grad_()))


def _aspect_v(p, t):
    """CIoU's v from plain formulas (no eps)."""
    w, h = p[..., 2] - p[..., 0], p[..., 3] - p[..., 1]
    wt, ht = t[..., 2] - t[..., 0], t[..., 3] - t[..., 1]
    return K * (torch.atan(wt / ht) - torch.atan(w / h)) ** 2


def _iou(p, t):
    return 1 - iou_loss(p, t, 'linear', eps=1e-300)


@pytest.mark.parametrize('alpha_gate', [False, True])
def test_gradcheck_ciou_with_alpha_held_constant(alpha_gate):
    """alpha is not differentiated (paper, Sec. 4.2): the gradient is that of
    ``1 - IoU + rho^2/c^2 + alpha0 * v`` with alpha0 the value at the evaluation point.

    The wrapper swaps ``alpha(p) v(p)`` for ``alpha0 v(p)`` in the *value* with detached
    terms, so finite differences see the function whose gradient the loss claims to
    return; its analytic gradient is the loss's own.
    """
    pred, target = random_pairs(6, 2, disjoint=2)
    with torch.no_grad():
        iou0 = _iou(pred, target)
        assert ((iou0 - 0.5).abs() > 1e-3).all()
        v0 = _aspect_v(pred, target)
        alpha0 = v0 / (1 - iou0 + v0)
        if alpha_gate:
            alpha0 = alpha0 * (iou0 > 0.5)
    assert (alpha0 > 0).any() and (not alpha_gate or (alpha0 == 0).any())

    def fn(p, t):
        loss = ciou_loss(p, t, alpha_gate=alpha_gate)
        with torch.no_grad():
            v, iou = _aspect_v(p, t), _iou(p, t)
            alpha = v / (1 - iou + v)
            if alpha_gate:
                alpha = alpha * (iou > 0.5)
        return loss - alpha * v + alpha0 * v

    assert gradcheck(fn, (pred.requires_grad_(), target.requires_grad_()))


def test_gradcheck_focal_eiou_detach_weight():
    """With ``detach_weight`` the gradient is ``IoU0^gamma * dL_EIoU`` (weight held at
    its value); the same wrapper trick as for CIoU's alpha."""
    pred, target = random_pairs(6, 3, disjoint=1)
    with torch.no_grad():
        w0 = _iou(pred, target).clamp(min=1e-7) ** 0.5

    def fn(p, t):
        loss = focal_eiou_loss(p, t, gamma=0.5, detach_weight=True)
        with torch.no_grad():
            w = _iou(p, t).clamp(min=1e-7) ** 0.5
        return loss - w * eiou_loss(p, t).detach() + w0 * eiou_loss(p, t).detach()

    assert gradcheck(fn, (pred.requires_grad_(), target.requires_grad_()))


def test_focal_eiou_gradient_decomposition():
    """d(IoU^g L) = IoU^g dL + g IoU^(g-1) L dIoU; detached: only the first term."""
    gamma = 0.5
    pred, target = random_pairs(5, 4)
    pred.requires_grad_()
    (g_full,) = torch.autograd.grad(focal_eiou_loss(pred, target, gamma).sum(), pred)
    (g_det,) = torch.autograd.grad(
        focal_eiou_loss(pred, target, gamma, detach_weight=True).sum(), pred)
    eiou = eiou_loss(pred, target)
    (g_eiou,) = torch.autograd.grad(eiou.sum(), pred)
    iou = _iou(pred, target)
    (g_iou_each,) = torch.autograd.grad(iou.sum(), pred)  # rows are independent
    iou, eiou = iou.detach()[:, None], eiou.detach()[:, None]
    torch.testing.assert_close(g_det, iou ** gamma * g_eiou)
    torch.testing.assert_close(
        g_full, iou ** gamma * g_eiou + gamma * iou ** (gamma - 1) * eiou * g_iou_each)
    assert (g_full - g_det).abs().max() > 1e-3


@pytest.mark.parametrize('fn', [
    l1_loss, mse_loss, smooth_l1_loss,
    lambda p, t: smooth_l1_loss(p, t, beta=0.0),
    lambda p, t: smooth_l1_loss(p, t, beta=3.0),
    focal_l1_loss,
    lambda p, t: focal_l1_loss(p, t, beta=0.6),
    lambda p, t: focal_l1_loss(p, t, beta=0.9, alpha=2.0),
], ids=['l1', 'mse', 'smooth_l1', 'smooth_l1_beta0', 'smooth_l1_beta3', 'focal_l1',
        'focal_l1_beta0.6', 'focal_l1_beta0.9_alpha2'])
def test_gradcheck_coordinate_losses(fn):
    g = torch.Generator().manual_seed(5)
    # |x| spread over both branches of every loss, away from 0 (the kink of |x|)
    mag = torch.tensor([0.05, 0.3, 0.7, 0.95, 1.2, 2.5, 4.0, 6.0], dtype=F64)
    sign = torch.where(torch.rand(8, generator=g) < 0.5, -1.0, 1.0).to(F64)
    target = torch.randn(2, 8, generator=g, dtype=F64)
    pred = target + mag * sign
    assert gradcheck(fn, (pred.requires_grad_(), target.requires_grad_()))


def _v_grad_wh(p, t, eps, authors):
    """dv/dw and dv/dh of the prediction, written out by hand.

    v = K (atan(wt/ht) - atan(w/h))^2 with h -> h + eps as in the loss;
    d atan(w/h)/dw = h/(w^2 + h^2), d/dh = -w/(w^2 + h^2); the authors drop 1/(w^2+h^2).
    """
    w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1] + eps
    wt, ht = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1] + eps
    diff = torch.atan(wt / ht) - torch.atan(w / h)
    scale = torch.ones_like(w) if authors else 1 / (w * w + h * h)
    return -2 * K * diff * h * scale, 2 * K * diff * w * scale


@pytest.mark.parametrize('alpha_gate', [False, True])
def test_ciou_authors_gradient(alpha_gate):
    """Same value; the gradient is the true one with dv/dw, dv/dh multiplied by
    (w^2 + h^2); computed independently from DIoU's gradient and dv written out."""
    eps = 1e-7
    pred, target = random_pairs(8, 6, disjoint=2)
    # and two pairs with IoU > 0.5 and different aspect ratios (the gate keeps alpha)
    pred = torch.cat([pred, boxes([0, 0, 40, 20], [10, 10, 40, 52])])
    target = torch.cat([target, boxes([0, 0, 40, 30], [12, 8, 36, 50])])
    pred.requires_grad_()
    true_loss = ciou_loss(pred, target, eps, alpha_gate=alpha_gate)
    authors_loss = ciou_loss(pred, target, eps, alpha_gate=alpha_gate, authors_gradient=True)
    torch.testing.assert_close(authors_loss, true_loss, rtol=0, atol=1e-15)
    (g_true,) = torch.autograd.grad(true_loss.sum(), pred)
    (g_authors,) = torch.autograd.grad(authors_loss.sum(), pred)
    (g_diou,) = torch.autograd.grad(diou_loss(pred, target, eps).sum(), pred)

    with torch.no_grad():
        iou = _iou(pred, target)
        v = _aspect_v(pred, target)
        alpha = v / (1 - iou + v)
        if alpha_gate:
            alpha = alpha * (iou > 0.5)

    def expected(authors):
        dv_dw, dv_dh = _v_grad_wh(pred.detach(), target, eps, authors)
        # w = x2 - x1, h = y2 - y1
        dv = torch.stack([-dv_dw, -dv_dh, dv_dw, dv_dh], 1)
        return g_diou + alpha[:, None] * dv

    # (rtol: the loss has eps in alpha's denominator, this check does not)
    torch.testing.assert_close(g_true, expected(False), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(g_authors, expected(True), rtol=1e-5, atol=1e-9)
    # and they really differ: boxes of size 5-35, the dropped factor is 1/(w^2 + h^2)
    v_true, v_authors = (g_true - g_diou).norm(), (g_authors - g_diou).norm()
    assert v_true > 1e-6 and v_authors / v_true > 50
    # the target's gradient is untouched by the option
    target.requires_grad_()
    (t_true,) = torch.autograd.grad(ciou_loss(pred, target, eps, alpha_gate).sum(), target)
    (t_auth,) = torch.autograd.grad(
        ciou_loss(pred, target, eps, alpha_gate, authors_gradient=True).sum(), target)
    torch.testing.assert_close(t_auth, t_true, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------
# Degenerate boxes and half precision
# --------------------------------------------------------------------------------------

BOX_LOSSES = {
    'iou_linear': lambda p, t: iou_loss(p, t, 'linear'),
    'iou_log': lambda p, t: iou_loss(p, t, 'log'),
    'giou': giou_loss,
    'diou': diou_loss,
    'ciou': ciou_loss,
    'ciou_gate': lambda p, t: ciou_loss(p, t, alpha_gate=True),
    'ciou_authors': lambda p, t: ciou_loss(p, t, authors_gradient=True),
    'eiou': eiou_loss,
    'focal_eiou': focal_eiou_loss,
    'focal_eiou_detach': lambda p, t: focal_eiou_loss(p, t, detach_weight=True),
}

COORD_LOSSES = {
    'l1': l1_loss, 'mse': mse_loss, 'smooth_l1': smooth_l1_loss,
    'smooth_l1_beta0': lambda p, t: smooth_l1_loss(p, t, beta=0.0),
    'focal_l1': focal_l1_loss,
}

# (pred, target, expected IoU-linear loss); all coordinates exact in fp16 and bf16
DEGENERATE = {
    'identical': ([8, 16, 40, 48], [8, 16, 40, 48], 0.0),
    'nested': ([0, 0, 64, 64], [16, 16, 32, 48], 1 - 512 / 4096),
    'pred_inside_target': ([16, 16, 32, 48], [0, 0, 64, 64], 1 - 512 / 4096),
    'point_pred': ([5, 5, 5, 5], [0, 0, 10, 10], 1.0),
    'point_target': ([0, 0, 10, 10], [5, 5, 5, 5], 1.0),
    'points_same': ([5, 5, 5, 5], [5, 5, 5, 5], 1.0),
    'points_apart': ([5, 5, 5, 5], [9, 7, 9, 7], 1.0),
    'line_pred_vertical': ([5, 0, 5, 10], [0, 0, 10, 10], 1.0),
    'line_pred_horizontal': ([0, 5, 10, 5], [0, 0, 10, 10], 1.0),
    'lines_overlapping': ([5, 0, 5, 10], [5, 2, 5, 8], 1.0),
    'lines_crossing': ([5, 0, 5, 10], [0, 5, 10, 5], 1.0),
    'far_apart': ([0, 0, 64, 64], [10048, 10048, 10112, 10112], 1.0),
    'negative_zero_target': ([3, 4, 20, 30], [0, 0, 0, 0], 1.0),
    'zero_pred_zero_target': ([0, 0, 0, 0], [0, 0, 0, 0], 1.0),
}


def _finite_value_and_grads(fn, pred, target):
    pred = pred.clone().requires_grad_()
    target = target.clone().requires_grad_()
    loss = fn(pred, target)
    gp, gt = torch.autograd.grad(loss.sum(), (pred, target))
    return loss, gp, gt


@pytest.mark.parametrize('dtype', [torch.float32, F64])
@pytest.mark.parametrize('case', sorted(DEGENERATE))
def test_degenerate_boxes_are_finite(case, dtype):
    p, t, want_iou_loss = DEGENERATE[case]
    pred, target = boxes(p, dtype=dtype), boxes(t, dtype=dtype)
    for name, fn in {**BOX_LOSSES, **COORD_LOSSES}.items():
        loss, gp, gt = _finite_value_and_grads(fn, pred, target)
        assert torch.isfinite(loss).all(), (name, loss)
        assert torch.isfinite(gp).all() and torch.isfinite(gt).all(), (name, gp, gt)
        assert (loss >= 0).all(), (name, loss)
    close(iou_loss(pred, target), [want_iou_loss], tol=1e-5)


def test_degenerate_values():
    # identical boxes: every IoU-family loss is 0
    p = boxes([8, 16, 40, 48])
    for name, fn in BOX_LOSSES.items():
        close(fn(p, p), [0.0], tol=1e-6)
    # far apart (1e4): IoU 0, rho^2/c^2 -> 1: DIoU and CIoU close to 2, GIoU close to 2
    pred, target = boxes([0, 0, 64, 64]), boxes([10048, 10048, 10112, 10112])
    # GIoU: 1 + (C - U)/C, C = 10112^2, U = 2 * 64^2
    close(giou_loss(pred, target), [1 + (10112 ** 2 - 2 * 64 ** 2) / 10112 ** 2])
    # DIoU: 1 + rho^2/c^2, rho^2 = 2 * 10048^2, c^2 = 2 * 10112^2
    close(diou_loss(pred, target), [1 + 10048 ** 2 / 10112 ** 2])
    close(ciou_loss(pred, target), [1 + 10048 ** 2 / 10112 ** 2])  # same aspect: v = 0
    # negatives with zero targets: IoU 0 and target centre at the origin
    pred, target = boxes([3, 4, 20, 30]), boxes([0, 0, 0, 0])
    # rho^2 = 11.5^2 + 17^2, enclosing 20 x 30: c^2 = 1300
    close(diou_loss(pred, target), [1 + (11.5 ** 2 + 17 ** 2) / 1300])
    # EIoU adds (17 - 0)^2/20^2 + (26 - 0)^2/30^2
    close(eiou_loss(pred, target), [1 + (11.5 ** 2 + 17 ** 2) / 1300 + 289 / 400 + 676 / 900])


# Two fp16 gradients overflow, both finite in float32 (checked above) and both real
# derivatives of the order of 1/eps = 1e7, above fp16's largest value (65504):
# - a zero-width prediction lying on a zero-width target: the intersection grows from 0
#   at a rate ~ the common length while the union is 0 (d IoU ~ length / eps); every
#   loss built on the IoU except the log mode (clamped) and Focal-EIoU (IoU^gamma ~ 0);
# - CIoU (alpha on) for a point prediction: d atan(w / (h + eps)) / dw = 1/eps at
#   w = h = 0 (alpha = 0 under the gate, since IoU = 0).
# Gradients come back to half precision saturated (detloss_plugin.functional._checks.
# saturating_cast): these two are +-65504 instead of +-Inf, every other one is exact.
FP16_HUGE_GRAD = {('lines_overlapping', n) for n in (
    'iou_linear', 'giou', 'diou', 'ciou', 'ciou_gate', 'ciou_authors', 'eiou')}
FP16_HUGE_GRAD.add(('point_pred', 'ciou'))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('case', sorted(DEGENERATE))
def test_half_precision_degenerate(case, dtype):
    p, t, _ = DEGENERATE[case]
    pred = boxes(p, dtype=dtype, grad=True)
    target = boxes(t, dtype=dtype)  # heads never differentiate the target
    ref_pred, ref_target = boxes(p), boxes(t)
    for name, fn in {**BOX_LOSSES, **COORD_LOSSES}.items():
        loss = fn(pred, target)
        assert loss.dtype == dtype, name
        if case == 'far_apart' and name == 'mse':
            # (1e4)^2 does not fit in fp16: inf is the correctly rounded value
            assert dtype == torch.float16 or torch.isfinite(loss).all()
            continue
        assert torch.isfinite(loss).all(), (name, loss)
        # computed in float32: agrees with float64 up to the output rounding
        torch.testing.assert_close(loss.double(), fn(ref_pred, ref_target),
                                   rtol=1e-2, atol=1e-3)
        (gp,) = torch.autograd.grad(loss.sum(), pred)
        assert gp.dtype == dtype
        assert torch.isfinite(gp).all(), (name, gp)
        if dtype == torch.float16 and (case, name) in FP16_HUGE_GRAD:
            assert gp.abs().max() == torch.finfo(torch.float16).max, (name, gp)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_random_boxes(dtype):
    pred64, target64 = random_pairs(16, 7, disjoint=4)
    pred64, target64 = pred64.round(), target64.round()  # exact in both half formats
    pred = pred64.to(dtype).requires_grad_()
    target = target64.to(dtype).requires_grad_()
    for name, fn in {**BOX_LOSSES, **COORD_LOSSES}.items():
        loss = fn(pred, target)
        assert loss.dtype == dtype, name
        gp, gt = torch.autograd.grad(loss.sum(), (pred, target))
        assert gp.dtype == gt.dtype == dtype
        assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and \
            torch.isfinite(gt).all(), name
        ref = fn(pred64, target64)
        torch.testing.assert_close(loss.double(), ref, rtol=1e-2, atol=2e-3)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

ALL_FUNCTIONS = {**BOX_LOSSES, **COORD_LOSSES}


@pytest.mark.parametrize('name', sorted(ALL_FUNCTIONS))
def test_bad_tensors(name):
    fn = ALL_FUNCTIONS[name]
    good = boxes([0, 0, 1, 1])
    with pytest.raises(TypeError, match='pred'):
        fn([[0, 0, 1, 1]], good)
    with pytest.raises(TypeError, match='target'):
        fn(good, [[0, 0, 1, 1]])
    with pytest.raises(TypeError, match='pred'):
        fn(good.long(), good)
    with pytest.raises(TypeError, match='target'):
        fn(good, good.int())
    with pytest.raises(ValueError, match='target'):
        fn(boxes([0, 0, 1, 1], [0, 0, 2, 2]), good)


@pytest.mark.parametrize('name', sorted(BOX_LOSSES))
def test_box_losses_need_four_coordinates(name):
    fn = BOX_LOSSES[name]
    with pytest.raises(ValueError, match='pred'):
        fn(torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match='pred'):
        fn(torch.zeros(()), torch.zeros(()))
    with pytest.raises(ValueError, match='target'):
        fn(torch.zeros(3, 4), torch.zeros(3, 5))
    # any leading shape works: (..., 4) -> (...)
    assert fn(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)).shape == (2, 3)


def test_bad_options():
    good = boxes([0, 0, 1, 1])
    with pytest.raises(ValueError, match='mode'):
        iou_loss(good, good, mode='square')
    with pytest.raises(ValueError, match='beta'):
        smooth_l1_loss(good, good, beta=-1.0)
    with pytest.raises(TypeError, match='beta'):
        smooth_l1_loss(good, good, beta='1')
    with pytest.raises(ValueError, match='gamma'):
        focal_eiou_loss(good, good, gamma=-0.5)
    with pytest.raises(ValueError, match='beta'):
        focal_l1_loss(good, good, beta=1.0)
    with pytest.raises(ValueError, match='beta'):
        focal_l1_loss(good, good, beta=0.1)
    with pytest.raises(ValueError, match='beta'):
        focal_l1_loss(good, good, beta=-0.5)
    with pytest.raises(ValueError, match='alpha'):
        focal_l1_loss(good, good, alpha=-1.0)
