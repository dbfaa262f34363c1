"""SIoU, Alpha-IoU and Wise-IoU, functional: hand values, slow loops in Python floats,
float64 gradcheck, mmdet's ``siou_loss`` where the definitions coincide (and where they
do not), degenerate boxes and half precision, errors naming the argument.

Boxes are ``(x1, y1, x2, y2)``; the default ``eps`` (1e-7) changes the hand values by
less than 1e-6.
"""
import math

import pytest
import torch
from torch.autograd import gradcheck

from detloss_plugin.functional import (alpha_iou_loss, ciou_loss, diou_loss, giou_loss,
                                       iou_loss, siou_loss, wiou_loss, wiou_running_mean)
from test_regression_functional import DEGENERATE, random_pairs

F64 = torch.float64
K = 4 / math.pi ** 2


def boxes(*rows, dtype=F64, grad=False):
    return torch.tensor(rows, dtype=dtype, requires_grad=grad)


def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), rtol=tol, atol=tol)


# --------------------------------------------------------------------- slow references
def _geo(p, t):
    """Plain-float geometry of one pair."""
    px1, py1, px2, py2 = p
    tx1, ty1, tx2, ty2 = t
    w, h, wt, ht = px2 - px1, py2 - py1, tx2 - tx1, ty2 - ty1
    iw = max(min(px2, tx2) - max(px1, tx1), 0.0)
    ih = max(min(py2, ty2) - max(py1, ty1), 0.0)
    inter = iw * ih
    union = w * h + wt * ht - inter
    cw = max(px2, tx2) - min(px1, tx1)
    ch = max(py2, ty2) - min(py1, ty1)
    dx = (tx1 + tx2) / 2 - (px1 + px2) / 2
    dy = (ty1 + ty2) / 2 - (py1 + py2) / 2
    return dict(w=w, h=h, wt=wt, ht=ht, iou=inter / union, union=union, cw=cw, ch=ch,
                dx=dx, dy=dy)


def slow_siou(p, t, theta=4.0):
    """The paper's formulas, with its arcsin form of the angle cost."""
    g = _geo(p, t)
    sigma = math.hypot(g['dx'], g['dy'])
    alpha = math.asin(abs(g['dy']) / sigma)  # angle to the x axis
    if alpha > math.pi / 4:
        alpha = math.pi / 2 - alpha  # the paper's switch to beta
    angle = 1 - 2 * math.sin(math.asin(math.sin(alpha)) - math.pi / 4) ** 2
    gamma = 2 - angle
    dist = sum(1 - math.exp(-gamma * r) for r in ((g['dx'] / g['cw']) ** 2,
                                                  (g['dy'] / g['ch']) ** 2))
    om_w = abs(g['w'] - g['wt']) / max(g['w'], g['wt'])
    om_h = abs(g['h'] - g['ht']) / max(g['h'], g['ht'])
    shape = (1 - math.exp(-om_w)) ** theta + (1 - math.exp(-om_h)) ** theta
    return 1 - g['iou'] + (dist + shape) / 2


def slow_alpha(p, t, alpha, base):
    # for alpha < 1 each term is clamped at eps before the power (documented departure)
    def pw(x):
        return max(x, 1e-7) ** alpha if alpha < 1 else x ** alpha
    g = _geo(p, t)
    loss = 1 - pw(g['iou'])
    if base == 'giou':
        c = g['cw'] * g['ch']
        loss += pw((c - g['union']) / c)
    if base in ('diou', 'ciou'):
        loss += pw((g['dx'] ** 2 + g['dy'] ** 2) / (g['cw'] ** 2 + g['ch'] ** 2))
    if base == 'ciou':
        v = K * (math.atan(g['wt'] / g['ht']) - math.atan(g['w'] / g['h'])) ** 2
        loss += pw(v / (1 - g['iou'] + v) * v)
    return loss


def slow_wiou(p, t, version, mean=None, alpha=1.9, delta=3.0, gamma=0.5):
    g = _geo(p, t)
    l_iou = 1 - g['iou']
    loss = math.exp((g['dx'] ** 2 + g['dy'] ** 2) / (g['cw'] ** 2 + g['ch'] ** 2)) * l_iou
    if version == 'v2':
        loss *= (l_iou / mean) ** gamma
    elif version == 'v3':
        beta = l_iou / mean
        loss *= beta / (delta * alpha ** (beta - delta))
    return loss


def _loop(fn, pred, target):
    return torch.tensor([fn(p, t) for p, t in zip(pred.tolist(), target.tolist())], dtype=F64)


# ------------------------------------------------------------------------- hand values
def test_siou_hand_values():
    # A = [0,0,4,4], B = [2,0,6,4]: IoU = 8/24 = 1/3; centres (2,2), (4,2): dx = 2, dy = 0,
    # angle cost sin(0) = 0, gamma = 2; enclosing 6 x 4: rho_x = 4/36 = 1/9, rho_y = 0;
    # distance = 1 - e^(-2/9); same shape: 0. L = 2/3 + (1 - e^(-2/9)) / 2 = 0.766298...
    close(siou_loss(boxes([0, 0, 4, 4]), boxes([2, 0, 6, 4])),
          [2 / 3 + (1 - math.exp(-2 / 9)) / 2])
    # [0,0,2,2] vs [1,1,3,3]: dx = dy = 1, alpha = 45 deg: angle cost 1, gamma = 1;
    # enclosing 3 x 3: rho = 1/9 each; IoU = 1/7. L = 6/7 + (2 (1 - e^(-1/9))) / 2
    close(siou_loss(boxes([0, 0, 2, 2]), boxes([1, 1, 3, 3])), [6 / 7 + 1 - math.exp(-1 / 9)])
    # shape: [0,0,2,4] vs [0,0,4,4]: IoU 1/2; dx = 1, dy = 0, gamma 2, enclosing 4 x 4:
    # rho_x = 1/16, distance 1 - e^(-1/8); omega_w = 2/4, omega_h = 0: shape (1-e^-.5)^4;
    # with theta = 2 the shape cost is (1 - e^-0.5)^2.
    for theta in (4.0, 2.0):
        close(siou_loss(boxes([0, 0, 2, 4]), boxes([0, 0, 4, 4]), theta=theta),
              [0.5 + (1 - math.exp(-1 / 8) + (1 - math.exp(-0.5)) ** theta) / 2])
    # concentric: no distance cost even though the angle is undefined (0/0)
    close(siou_loss(boxes([1, 1, 3, 3]), boxes([0, 0, 4, 4])),
          [1 - 4 / 16 + 2 * (1 - math.exp(-0.5)) ** 4 / 2])


def test_siou_distance_cost_grows_with_distance():
    """The paper's sign: moving a box away from its target raises the loss. Far away
    along x: IoU 0, angle 0 (gamma 2), rho_x -> 1, so L -> 1 + (1 - e^-2) / 2."""
    target = boxes([0, 0, 10, 10])
    shifts = torch.tensor([0.0, 2, 5, 9, 20, 100, 1e5], dtype=F64)
    pred = target.repeat(len(shifts), 1)
    pred[:, 0] += shifts
    pred[:, 2] += shifts
    loss = siou_loss(pred, target.expand_as(pred))
    assert (loss[1:] > loss[:-1]).all()
    close(loss[-1:], [1 + (1 - math.exp(-2)) / 2], tol=1e-3)


def test_alpha_iou_hand_values():
    a, b = boxes([0, 0, 4, 4]), boxes([2, 0, 6, 4])
    # IoU 1/3: 1 - (1/3)^3 = 26/27; the enclosing box is the union: GIoU penalty 0
    close(alpha_iou_loss(a, b, base='iou'), [26 / 27])
    close(alpha_iou_loss(a, b, base='giou'), [26 / 27])
    # rho^2/c^2 = 4/52 = 1/13: alpha-DIoU adds (1/13)^3; same aspect ratio: v = 0
    close(alpha_iou_loss(a, b, base='diou'), [26 / 27 + 13 ** -3])
    close(alpha_iou_loss(a, b), [26 / 27 + 13 ** -3])
    # [0,0,2,2] vs [1,1,3,3], alpha 2: IoU 1/7, C = 9, U = 7: 1 - 1/49 + (2/9)^2
    close(alpha_iou_loss(boxes([0, 0, 2, 2]), boxes([1, 1, 3, 3]), 2.0, 'giou'),
          [1 - 1 / 49 + 4 / 81])
    # alpha-CIoU, [0,0,2,4] vs [0,0,4,4] (alpha 2): IoU 1/2, rho^2/c^2 = 1/32,
    # v = K (atan 1 - atan 0.5)^2, beta = v / (1/2 + v): 1 - 1/4 + 1/32^2 + (beta v)^2
    v = K * (math.atan(1) - math.atan(0.5)) ** 2
    close(alpha_iou_loss(boxes([0, 0, 2, 4]), boxes([0, 0, 4, 4]), 2.0, 'ciou'),
          [0.75 + 32 ** -2 + (v / (0.5 + v) * v) ** 2])


def test_wiou_hand_values():
    a, b = boxes([0, 0, 4, 4]), boxes([2, 0, 6, 4])
    # L_IoU = 2/3, rho^2 / c^2 = 4/52: v1 = e^(1/13) * 2/3
    v1 = math.exp(1 / 13) * 2 / 3
    close(wiou_loss(a, b, 'v1'), [v1])
    # v2 with mean 2/3: beta = 1 -> v1; mean 1/6: beta = 4, factor 4^0.5 = 2
    close(wiou_loss(a, b, 'v2', iou_mean=2 / 3), [v1])
    close(wiou_loss(a, b, 'v2', iou_mean=1 / 6), [2 * v1])
    # v3: r = beta / (delta alpha^(beta - delta)) = 1 at beta = delta (mean 2/9)
    close(wiou_loss(a, b, 'v3', iou_mean=torch.tensor(2 / 9)), [v1])
    # mean 2/3: beta = 1, r = 1 / (3 * 1.9^-2) = 1.9^2 / 3
    close(wiou_loss(a, b, iou_mean=2 / 3), [v1 * 1.9 ** 2 / 3])
    close(wiou_loss(a, b, iou_mean=2 / 3, alpha=1.7, delta=2.7), [v1 * 1.7 ** 1.7 / 2.7])


def test_wiou_v3_focus_is_non_monotonic():
    """r(beta) rises to its maximum at beta = 1 / ln(alpha) and falls after."""
    target = boxes([0, 0, 10, 10])
    shifts = torch.linspace(0.5, 9.5, 60, dtype=F64)
    pred = target.repeat(60, 1)
    pred[:, [0, 2]] += shifts[:, None]
    v1 = wiou_loss(pred, target.expand_as(pred), 'v1')
    r = wiou_loss(pred, target.expand_as(pred), iou_mean=0.3) / v1
    beta = iou_loss(pred, target.expand_as(pred)) / 0.3
    peak = 1 / math.log(1.9)
    assert (torch.diff(r)[beta[1:] < peak - 0.05] > 0).all()
    assert (torch.diff(r)[beta[:-1] > peak + 0.05] < 0).all()


# ------------------------------------------------------------------------- slow loops
def test_against_slow_loops():
    pred, target = random_pairs(40, 3, disjoint=10)
    torch.testing.assert_close(siou_loss(pred, target), _loop(slow_siou, pred, target),
                               rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(siou_loss(pred, target, theta=6.0),
                               _loop(lambda p, t: slow_siou(p, t, 6.0), pred, target),
                               rtol=1e-6, atol=1e-6)
    for base in ('iou', 'giou', 'diou', 'ciou'):
        for alpha in (0.5, 1.0, 3.0):
            torch.testing.assert_close(
                alpha_iou_loss(pred, target, alpha, base),
                _loop(lambda p, t: slow_alpha(p, t, alpha, base), pred, target),
                rtol=1e-6, atol=1e-6, msg=f'{base} {alpha}')
    for version in ('v1', 'v2', 'v3'):
        torch.testing.assert_close(
            wiou_loss(pred, target, version, iou_mean=0.4),
            _loop(lambda p, t: slow_wiou(p, t, version, 0.4), pred, target),
            rtol=1e-6, atol=1e-6, msg=version)


@pytest.mark.parametrize('base,reference', [
    ('iou', lambda p, t: iou_loss(p, t)),
    ('giou', lambda p, t: giou_loss(p, t)),
    ('diou', lambda p, t: diou_loss(p, t)),
    ('ciou', lambda p, t: ciou_loss(p, t))])
def test_alpha_one_is_the_base_loss(base, reference):
    pred, target = random_pairs(12, 4, disjoint=3)
    pred.requires_grad_()
    ours = alpha_iou_loss(pred, target, 1.0, base)
    ref = reference(pred, target)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g1, = torch.autograd.grad(ours.sum(), pred)
    g2, = torch.autograd.grad(ref.sum(), pred)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------------- gradients
@pytest.mark.parametrize('theta', [4.0, 1.0])
def test_gradcheck_siou(theta):
    pred, target = random_pairs(8, 5, disjoint=3)
    assert gradcheck(lambda p, t: siou_loss(p, t, theta),
                     (pred.requires_grad_(), target.requires_grad_()))


@pytest.mark.parametrize('base', ['iou', 'giou', 'diou'])
@pytest.mark.parametrize('alpha', [0.5, 3.0])
def test_gradcheck_alpha_iou(base, alpha):
    pred, target = random_pairs(8, 6, disjoint=0 if base == 'iou' else 3)
    assert gradcheck(lambda p, t: alpha_iou_loss(p, t, alpha, base),
                     (pred.requires_grad_(), target.requires_grad_()))


def _plain_iou(p, t):
    return 1 - iou_loss(p, t, eps=1e-300)


def _aspect_v(p, t):
    w, h = p[..., 2] - p[..., 0], p[..., 3] - p[..., 1]
    wt, ht = t[..., 2] - t[..., 0], t[..., 3] - t[..., 1]
    return K * (torch.atan(wt / ht) - torch.atan(w / h)) ** 2


def test_gradcheck_alpha_ciou_with_beta_held_constant():
    """CIoU's trade-off beta has no gradient: the loss's gradient is that of
    ``... + (beta0 v)^alpha`` with beta0 its value at the point (swapped in the value
    with detached terms, so finite differences see that function)."""
    pred, target = random_pairs(6, 2, disjoint=2)
    alpha = 3.0
    with torch.no_grad():
        v0 = _aspect_v(pred, target)
        beta0 = v0 / (1 - _plain_iou(pred, target) + v0)

    def fn(p, t):
        loss = alpha_iou_loss(p, t, alpha, 'ciou')
        with torch.no_grad():
            v = _aspect_v(p, t)
            beta = v / (1 - _plain_iou(p, t) + v)
        return loss - (beta * v) ** alpha + (beta0 * v) ** alpha

    assert gradcheck(fn, (pred.requires_grad_(), target.requires_grad_()))


@pytest.mark.parametrize('version', ['v1', 'v2', 'v3'])
def test_gradcheck_wiou_with_starred_terms_held_constant(version):
    """The paper's starred terms (the enclosing box's diagonal, the focusing
    coefficient) carry no gradient: the loss's gradient is that of
    ``focus0 * exp(rho^2 / c0^2) * (1 - IoU)`` with focus0, c0 frozen at the point."""
    pred, target = random_pairs(8, 9, disjoint=3)
    mean = 0.35

    def parts(p, t):
        l_iou = 1 - _plain_iou(p, t)
        rho2 = (((p[:, :2] + p[:, 2:]) - (t[:, :2] + t[:, 2:])) ** 2).sum(1) / 4
        cw = torch.maximum(p[:, 2], t[:, 2]) - torch.minimum(p[:, 0], t[:, 0])
        ch = torch.maximum(p[:, 3], t[:, 3]) - torch.minimum(p[:, 1], t[:, 1])
        beta = l_iou / mean
        focus = {'v1': torch.ones_like(beta), 'v2': beta.sqrt(),
                 'v3': beta / (3.0 * 1.9 ** (beta - 3.0))}[version]
        return l_iou, rho2, cw ** 2 + ch ** 2, focus

    with torch.no_grad():
        _, _, c0, focus0 = parts(pred, target)

    def frozen(p, t):  # independent formula, gradcheck-able
        l_iou, rho2, _, _ = parts(p, t)
        return focus0 * torch.exp(rho2 / c0) * l_iou

    assert gradcheck(frozen, (pred.clone().requires_grad_(), target.clone().requires_grad_()))
    p, t = pred.clone().requires_grad_(), target.clone().requires_grad_()
    ours = wiou_loss(p, t, version, iou_mean=mean)
    g_ours = torch.autograd.grad(ours.sum(), (p, t))
    ref = frozen(p, t)
    torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-9)  # eps in union and c^2
    g_ref = torch.autograd.grad(ref.sum(), (p, t))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_wiou_running_mean_update():
    pred, target = random_pairs(10, 11, disjoint=2)
    l_iou = iou_loss(pred, target)
    mean = torch.tensor(1.0)
    valid = torch.arange(10) % 3 != 0
    new = wiou_running_mean(pred, target, mean, 0.1, valid)
    close(new, 0.9 * 1.0 + 0.1 * l_iou[valid].mean().float(), tol=1e-6)
    assert new.dtype == torch.float32 and mean.item() == 1.0  # input not modified
    # no valid box: unchanged; all valid by default
    close(wiou_running_mean(pred, target, mean, 0.1, torch.zeros(10, dtype=torch.bool)), 1.0)
    close(wiou_running_mean(pred, target, mean, 0.5), 0.5 + 0.5 * l_iou.mean().float())


# ------------------------------------------------------------------- mmdet's siou_loss
def _mmdet_siou(pred, target, neg_gamma):
    from mmdet.models.losses.iou_loss import siou_loss as mm_siou
    return mm_siou(pred, target, eps=1e-7, neg_gamma=neg_gamma, reduction='none')


def test_mmdet_siou_with_neg_gamma_matches_value_and_gradient():
    pred, target = random_pairs(30, 12, disjoint=8)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    ours = siou_loss(p1, target)
    theirs = _mmdet_siou(p2, target, neg_gamma=True)
    assert (ours < 2).all()  # mmdet's clamp is not reached on these pairs
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    g1, = torch.autograd.grad(ours.sum(), p1)
    g2, = torch.autograd.grad(theirs.sum(), p2)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)


def test_mmdet_siou_documented_differences():
    target = boxes([0, 0, 10, 10])
    shifts = torch.tensor([12.0, 15, 20, 30], dtype=F64)  # disjoint from the target
    pred = target.repeat(4, 1)
    pred[:, [0, 2]] += shifts[:, None]
    pred[:, [1, 3]] += shifts[:, None] / 3
    tgt = target.expand_as(pred)
    # 1. neg_gamma=False (mmdet's default): the distance cost has the opposite sign, so
    #    once the boxes are disjoint (IoU term constant) mmdet's loss falls as the box
    #    moves away; ours rises.
    theirs = _mmdet_siou(pred, tgt, neg_gamma=False)
    ours = siou_loss(pred, tgt)
    assert (torch.diff(ours) > 0).all()
    assert (torch.diff(theirs) < 0).all()
    assert (theirs < ours).all()
    # 2. the clamp at 2. The loss is below 1 + (2 + 2 (1 - 1/e)^4) / 2 = 2.16; it passes 2
    #    only for disjoint boxes far apart along both axes (distance cost near
    #    2 (1 - e^-2)) and of very different shapes. There mmdet gives 2, no gradient.
    far = boxes([1e5, 1e3, 1e5 + 0.1, 1e3 + 0.1], grad=True)
    ours_far = siou_loss(far, target)
    theirs_far = _mmdet_siou(far, target, neg_gamma=True)
    assert 2.0 < ours_far.item() < 1 + (2 + 2 * (1 - math.exp(-1)) ** 4) / 2
    assert theirs_far.item() == 2.0
    g, = torch.autograd.grad(theirs_far.sum(), far)
    assert (g == 0).all()
    g, = torch.autograd.grad(ours_far.sum(), far)
    assert g.abs().sum() > 0


# ------------------------------------------------------------- degenerate / half / errors
FUNCS = {
    'siou': siou_loss,
    'alpha_iou': lambda p, t: alpha_iou_loss(p, t, 3.0, 'iou'),
    'alpha_giou': lambda p, t: alpha_iou_loss(p, t, 3.0, 'giou'),
    'alpha_diou': lambda p, t: alpha_iou_loss(p, t, 3.0, 'diou'),
    'alpha_ciou': alpha_iou_loss,
    'alpha_ciou_half_power': lambda p, t: alpha_iou_loss(p, t, 0.5, 'ciou'),
    'wiou_v1': lambda p, t: wiou_loss(p, t, 'v1'),
    'wiou_v2': lambda p, t: wiou_loss(p, t, 'v2', iou_mean=0.5),
    'wiou_v3': lambda p, t: wiou_loss(p, t, iou_mean=0.5),
    # a tensor mean that underflowed to 0 is clamped at eps (a float 0 is refused)
    'wiou_v3_zero_mean': lambda p, t: wiou_loss(p, t, iou_mean=torch.tensor(0.0)),
}


@pytest.mark.parametrize('dtype', [torch.float32, F64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('case', sorted(DEGENERATE))
def test_degenerate_boxes_finite(case, dtype):
    p, t, _ = DEGENERATE[case]
    for name, fn in FUNCS.items():
        pred = boxes(p, dtype=dtype, grad=True)
        target = boxes(t, dtype=dtype, grad=True)
        loss = fn(pred, target)
        assert loss.dtype == dtype, name
        gp, gt = torch.autograd.grad(loss.sum(), (pred, target))
        assert torch.isfinite(loss).all() and (loss >= 0).all(), (name, loss)
        assert torch.isfinite(gp).all() and torch.isfinite(gt).all(), (name, gp, gt)
        if dtype in (torch.float16, torch.bfloat16):
            ref = fn(boxes(p), boxes(t))
            torch.testing.assert_close(loss.double(), ref, rtol=1e-2, atol=2e-3)


def test_identical_boxes_give_zero():
    p = boxes([8, 16, 40, 48], [0, 0, 3, 7])
    for name, fn in FUNCS.items():
        if name != 'alpha_ciou_half_power':  # eps^0.5: 3e-4
            close(fn(p, p), [0.0, 0.0], tol=1e-6)


def test_half_precision_random_boxes():
    pred64, target64 = random_pairs(16, 7, disjoint=4)
    pred64, target64 = pred64.round(), target64.round()
    for dtype in (torch.float16, torch.bfloat16):
        for name, fn in FUNCS.items():
            pred = pred64.to(dtype).requires_grad_()
            loss = fn(pred, target64.to(dtype))
            (gp,) = torch.autograd.grad(loss.sum(), pred)
            assert gp.dtype == dtype and torch.isfinite(gp).all(), name
            torch.testing.assert_close(loss.double(), fn(pred64, target64), rtol=1e-2,
                                       atol=2e-3)


def test_shapes_and_empty():
    for name, fn in FUNCS.items():
        assert fn(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)).shape == (2, 3), name
        empty = torch.zeros(0, 4, requires_grad=True)
        out = fn(empty, torch.zeros(0, 4))
        assert out.shape == (0,)
        out.sum().backward()


def test_errors_name_the_argument():
    good = boxes([0, 0, 1, 1])
    for name, fn in FUNCS.items():
        with pytest.raises(ValueError, match='pred'):
            fn(torch.zeros(3, 5), torch.zeros(3, 5))
        with pytest.raises(ValueError, match='target'):
            fn(good, boxes([0, 0, 1, 1], [0, 0, 2, 2]))
        with pytest.raises(TypeError, match='target'):
            fn(good, good.long())
    with pytest.raises(ValueError, match='theta'):
        siou_loss(good, good, theta=0.5)
    with pytest.raises(TypeError, match='theta'):
        siou_loss(good, good, theta='4')
    with pytest.raises(ValueError, match='alpha'):
        alpha_iou_loss(good, good, alpha=0.0)
    with pytest.raises(ValueError, match='base'):
        alpha_iou_loss(good, good, base='eiou')
    with pytest.raises(ValueError, match='version'):
        wiou_loss(good, good, version='v4')
    with pytest.raises(ValueError, match='iou_mean'):
        wiou_loss(good, good, 'v3')
    with pytest.raises(ValueError, match='iou_mean'):
        wiou_loss(good, good, 'v2', iou_mean=torch.ones(2))
    with pytest.raises(ValueError, match='delta'):
        wiou_loss(good, good, iou_mean=1.0, delta=-1.0)
    with pytest.raises(ValueError, match='momentum'):
        wiou_running_mean(good, good, torch.tensor(1.0), momentum=1.5)
    with pytest.raises(ValueError, match='valid'):
        wiou_running_mean(good, good, torch.tensor(1.0), valid=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match='iou_mean'):
        wiou_running_mean(good, good, 1.0)
