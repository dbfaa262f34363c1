"""The regression losses against independent references, in value and gradient.

1. torchvision.ops' ``generalized_box_iou_loss``, ``distance_box_iou_loss`` and
   ``complete_box_iou_loss``. torchvision cannot be imported beside this CPU torch wheel
   (``operator torchvision::nms does not exist``), so the functions below are a faithful
   transcription of torchvision 0.29's source: ``torchvision/ops/giou_loss.py``,
   ``torchvision/ops/diou_loss.py`` (``_diou_iou_loss``), ``torchvision/ops/ciou_loss.py``
   and ``torchvision/ops/_utils.py`` (``_loss_inter_union``, ``_upcast_non_float``):
   the same operations, the same ``eps`` placement (``union + eps``, ``area_c + eps``,
   ``diag^2 + eps``, ``1 - iou + v + eps`` in alpha, none inside the arctans), the
   intersection written with a mask as torchvision does. Only the API-usage logging is
   left out.
2. Slow, obvious references: a Python loop over the boxes with plain float math, for
   every IoU-family loss (IoU linear/log, GIoU, DIoU, CIoU with and without the gate,
   Efficient-IoU, Focal-EIoU).
3. mmdet 3.3.0's own classes where the definitions coincide: ``IoULoss`` (linear, log),
   ``GIoULoss``, ``DIoULoss``, ``CIoULoss`` (= detloss's CIoU with ``alpha_gate=True``),
   ``L1Loss``, ``MSELoss``, ``SmoothL1Loss``. mmdet clamps the union / enclosing area at
   eps (``max``) where detloss adds eps, and has no eps in CIoU's alpha: the differences
   are of order eps / area (< 1e-8 here), so the tolerances below (1e-6) still fail on any
   real formula difference, as the tests show by comparing against a variant.
"""
import math

import pytest
import torch

from detloss_plugin.functional import (ciou_loss, diou_loss, eiou_loss, focal_eiou_loss,
                                       giou_loss, iou_loss, l1_loss, mse_loss, smooth_l1_loss)

F64 = torch.float64


def pairs(n, seed, disjoint=0, dtype=F64):
    """Well-formed box pairs; the last ``disjoint`` pairs do not overlap."""
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g, dtype=F64)  # noqa: E731
    ctr = 20 + 60 * u(n, 2)
    size = 4 + 30 * u(n, 2)
    t_ctr = ctr + (u(n, 2) - 0.5) * 0.8 * size
    t_size = size * torch.exp(1.2 * (u(n, 2) - 0.5))
    if disjoint:
        # the target above the prediction, with a gap of 0.05 to 3
        d = slice(n - disjoint, n)
        gap = 0.05 + 2.95 * u(disjoint)
        t_ctr[d, 1] = ctr[d, 1] - (size[d, 1] + t_size[d, 1]) / 2 - gap
    pred = torch.cat([ctr - size / 2, ctr + size / 2], 1)
    target = torch.cat([t_ctr - t_size / 2, t_ctr + t_size / 2], 1)
    return pred.to(dtype), target.to(dtype)


# --------------------------------------------------------------------------------------
# torchvision 0.29, transcribed (see the module docstring)
# --------------------------------------------------------------------------------------

def _tv_upcast_non_float(t):
    # torchvision/ops/_utils.py: anything but float32/float64 is computed in float32
    if t.dtype not in (torch.float32, torch.float64):
        return t.float()
    return t


def _tv_loss_inter_union(boxes1, boxes2):
    # torchvision/ops/_utils.py
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1, ykis1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xkis2, ykis2 = torch.min(x2, x2g), torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def _tv_reduce(loss, reduction):
    if reduction == 'none':
        return loss
    if reduction == 'mean':
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == 'sum':
        return loss.sum()
    raise ValueError(f"Invalid Value for arg 'reduction': '{reduction}'")


def tv_generalized_box_iou_loss(boxes1, boxes2, reduction='none', eps=1e-7):
    # torchvision/ops/giou_loss.py
    boxes1, boxes2 = _tv_upcast_non_float(boxes1), _tv_upcast_non_float(boxes2)
    intsctk, unionk = _tv_loss_inter_union(boxes1, boxes2)
    iouk = intsctk / (unionk + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return _tv_reduce(1 - miouk, reduction)


def _tv_diou_iou_loss(boxes1, boxes2, eps=1e-7):
    # torchvision/ops/diou_loss.py
    intsct, union = _tv_loss_inter_union(boxes1, boxes2)
    iou = intsct / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x_p, y_p = (x2 + x1) / 2, (y2 + y1) / 2
    x_g, y_g = (x1g + x2g) / 2, (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    loss = 1 - iou + (centers_distance_squared / diagonal_distance_squared)
    return loss, iou


def tv_distance_box_iou_loss(boxes1, boxes2, reduction='none', eps=1e-7):
    # torchvision/ops/diou_loss.py
    boxes1, boxes2 = _tv_upcast_non_float(boxes1), _tv_upcast_non_float(boxes2)
    loss, _ = _tv_diou_iou_loss(boxes1, boxes2, eps)
    return _tv_reduce(loss, reduction)


def tv_complete_box_iou_loss(boxes1, boxes2, reduction='none', eps=1e-7):
    # torchvision/ops/ciou_loss.py (note: _diou_iou_loss is called with its default eps)
    boxes1, boxes2 = _tv_upcast_non_float(boxes1), _tv_upcast_non_float(boxes2)
    diou, iou = _tv_diou_iou_loss(boxes1, boxes2)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    w_pred, h_pred = x2 - x1, y2 - y1
    w_gt, h_gt = x2g - x1g, y2g - y1g
    v = (4 / (torch.pi ** 2)) * torch.pow(
        (torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _tv_reduce(diou + alpha * v, reduction)


def _value_and_grad(fn, pred, target):
    pred = pred.clone().requires_grad_()
    target = target.clone().requires_grad_()
    loss = fn(pred, target)
    gp, gt = torch.autograd.grad(loss.sum(), (pred, target))
    return loss.detach(), gp, gt


TORCHVISION = {
    'giou': (tv_generalized_box_iou_loss, giou_loss),
    'diou': (tv_distance_box_iou_loss, diou_loss),
    'ciou': (tv_complete_box_iou_loss, ciou_loss),
}


@pytest.mark.parametrize('name', sorted(TORCHVISION))
def test_equals_torchvision_formula(name):
    tv, ours = TORCHVISION[name]
    pred, target = pairs(40, 0, disjoint=10)
    v_tv, gp_tv, gt_tv = _value_and_grad(tv, pred, target)
    v_us, gp_us, gt_us = _value_and_grad(ours, pred, target)
    torch.testing.assert_close(v_us, v_tv, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(gp_us, gp_tv, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(gt_us, gt_tv, rtol=1e-6, atol=1e-10)
    # reductions (torchvision's mean/sum over the same element losses)
    for reduction in ('mean', 'sum'):
        torch.testing.assert_close(getattr(ours(pred, target), reduction)(),
                                   tv(pred, target, reduction), rtol=1e-7, atol=1e-9)


def test_torchvision_comparison_can_fail():
    """The tolerances above separate real formula differences: the gated CIoU (mmdet's,
    the journal's) is not torchvision's, nor is DIoU its CIoU."""
    pred, target = pairs(40, 0, disjoint=10)
    tv = tv_complete_box_iou_loss(pred, target)
    for other in (ciou_loss(pred, target, alpha_gate=True), diou_loss(pred, target)):
        assert not torch.allclose(other, tv, rtol=1e-7, atol=1e-9)
        assert (other - tv).abs().max() > 1e-3
    _, g_tv, _ = _value_and_grad(tv_complete_box_iou_loss, pred, target)
    _, g_auth, _ = _value_and_grad(lambda p, t: ciou_loss(p, t, authors_gradient=True),
                                   pred, target)
    assert (g_auth - g_tv).abs().max() > 1e-3


def test_torchvision_formula_half_precision():
    """torchvision computes half inputs in float32 (and returns float32); detloss too,
    casting back: same numbers up to the output rounding."""
    pred, target = pairs(20, 1, disjoint=5)
    pred, target = pred.round(), target.round()
    for dtype in (torch.float16, torch.bfloat16):
        for name, (tv, ours) in TORCHVISION.items():
            want = tv(pred.to(dtype), target.to(dtype))
            assert want.dtype == torch.float32
            got = ours(pred.to(dtype), target.to(dtype))
            assert got.dtype == dtype
            torch.testing.assert_close(got.float(), want.to(dtype).float(), rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Slow, obvious references: one box pair at a time, plain floats
# --------------------------------------------------------------------------------------

def slow_terms(p, t):
    """IoU, rho^2 / c^2, enclosing box, sizes of one pair of boxes, from the definitions."""
    px1, py1, px2, py2 = p
    tx1, ty1, tx2, ty2 = t
    pw, ph, tw, th = px2 - px1, py2 - py1, tx2 - tx1, ty2 - ty1
    iw = max(0.0, min(px2, tx2) - max(px1, tx1))
    ih = max(0.0, min(py2, ty2) - max(py1, ty1))
    inter = iw * ih
    union = pw * ph + tw * th - inter
    iou = inter / union
    cw = max(px2, tx2) - min(px1, tx1)
    ch = max(py2, ty2) - min(py1, ty1)
    pcx, pcy = (px1 + px2) / 2, (py1 + py2) / 2
    tcx, tcy = (tx1 + tx2) / 2, (ty1 + ty2) / 2
    rho2 = (pcx - tcx) ** 2 + (pcy - tcy) ** 2
    return dict(iou=iou, union=union, cw=cw, ch=ch, rho2=rho2, c2=cw * cw + ch * ch,
                pw=pw, ph=ph, tw=tw, th=th)


def slow_loss(name, p, t, **opt):
    s = slow_terms(p, t)
    iou = s['iou']
    if name == 'iou_linear':
        return 1 - iou
    if name == 'iou_log':
        return -math.log(max(iou, 1e-7))
    if name == 'giou':
        area_c = s['cw'] * s['ch']
        return 1 - iou + (area_c - s['union']) / area_c
    diou = 1 - iou + s['rho2'] / s['c2']
    if name == 'diou':
        return diou
    if name == 'ciou':
        v = 4 / math.pi ** 2 * (math.atan(s['tw'] / s['th']) - math.atan(s['pw'] / s['ph'])) ** 2
        # identical boxes: v = 0 and IoU = 1, alpha v = 0 (alpha itself is 0/0)
        alpha = v / ((1 - iou) + v) if v > 0 else 0.0
        if opt.get('alpha_gate') and iou <= 0.5:
            alpha = 0.0
        return diou + alpha * v
    eiou = diou + (s['pw'] - s['tw']) ** 2 / s['cw'] ** 2 + (s['ph'] - s['th']) ** 2 / s['ch'] ** 2
    if name == 'eiou':
        return eiou
    if name == 'focal_eiou':
        return max(iou, 1e-7) ** opt.get('gamma', 0.5) * eiou
    raise KeyError(name)


SLOW = {
    # name: (options of the slow reference, detloss function, its options)
    'iou_linear': ({}, iou_loss, dict(mode='linear')),
    'iou_log': ({}, iou_loss, dict(mode='log')),
    'giou': ({}, giou_loss, {}),
    'diou': ({}, diou_loss, {}),
    'ciou': ({}, ciou_loss, {}),
    'ciou_gate': ({'alpha_gate': True}, ciou_loss, dict(alpha_gate=True)),
    'ciou_authors': ({}, ciou_loss, dict(authors_gradient=True)),
    'eiou': ({}, eiou_loss, {}),
    'focal_eiou': ({}, focal_eiou_loss, {}),
    'focal_eiou_gamma0': ({'gamma': 0.0}, focal_eiou_loss, dict(gamma=0.0)),
    'focal_eiou_gamma1.5': ({'gamma': 1.5}, focal_eiou_loss, dict(gamma=1.5)),
    'focal_eiou_detach': ({}, focal_eiou_loss, dict(detach_weight=True)),
}


@pytest.mark.parametrize('name', sorted(SLOW))
def test_equals_slow_reference(name):
    opt, fn, kwargs = SLOW[name]
    ours = lambda p, t: fn(p, t, **kwargs)  # noqa: E731
    base = name.split('_gate')[0].split('_authors')[0].split('_gamma')[0].split('_detach')[0]
    pred, target = pairs(60, 2, disjoint=15)
    # plus hand-picked pairs: nested, identical, touching edges, crossing
    extra_p = torch.tensor([[0, 0, 10, 10], [3, 4, 9, 7], [0, 0, 4, 4], [4, 0, 6, 10]], dtype=F64)
    extra_t = torch.tensor([[2, 3, 5, 9], [3, 4, 9, 7], [4, 0, 8, 4], [0, 4, 10, 6]], dtype=F64)
    pred, target = torch.cat([pred, extra_p]), torch.cat([target, extra_t])
    want = torch.tensor([slow_loss(base, p, t, **opt)
                         for p, t in zip(pred.tolist(), target.tolist())], dtype=F64)
    got = ours(pred, target)
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-7)
    # the slow reference and the loss are not trivially equal: the loss varies
    assert want.std() > 0.05


def test_slow_reference_comparison_can_fail():
    pred, target = pairs(60, 2, disjoint=15)
    want = torch.tensor([slow_loss('ciou', p, t, alpha_gate=True)
                         for p, t in zip(pred.tolist(), target.tolist())], dtype=F64)
    assert not torch.allclose(ciou_loss(pred, target), want, rtol=1e-7, atol=1e-7)
    want = torch.tensor([slow_loss('focal_eiou', p, t, gamma=0.5)
                         for p, t in zip(pred.tolist(), target.tolist())], dtype=F64)
    assert not torch.allclose(focal_eiou_loss(pred, target, gamma=1.0), want,
                              rtol=1e-7, atol=1e-7)


# --------------------------------------------------------------------------------------
# mmdet 3.3.0's own classes (imported here: mmdet must be installed, no skip)
# --------------------------------------------------------------------------------------

def _mmdet_losses():
    import mmdet.models.losses as mmdet_losses
    return mmdet_losses


def _mmdet_pairs():
    pred, target = pairs(30, 3, disjoint=6)
    # and 10 pairs with IoU > 0.5 but different aspect ratios, so that mmdet's CIoU gate
    # is open and alpha * v is far above the tolerance there
    hi_p, _ = pairs(10, 4)
    ctr, size = (hi_p[:, :2] + hi_p[:, 2:]) / 2, hi_p[:, 2:] - hi_p[:, :2]
    scale = torch.tensor([1.3, 0.8], dtype=F64).repeat(10, 1)
    scale[::2] = scale[::2].flip(1)
    t_size = size * scale
    t_ctr = ctr + 0.03 * size
    hi_t = torch.cat([t_ctr - t_size / 2, t_ctr + t_size / 2], 1)
    return torch.cat([pred, hi_p]), torch.cat([target, hi_t])


def _compare_modules(ours, theirs, pred, target, weight, per_box, rtol, atol, grad_atol):
    w4 = weight
    w1 = weight.mean(-1)
    calls = [dict(reduction_override='none'),
             dict(reduction_override='mean'),
             dict(reduction_override='sum'),
             dict(weight=w4, reduction_override='none'),
             dict(weight=w4, avg_factor=7.0),
             dict(weight=w4, reduction_override='sum'),
             dict(weight=torch.zeros_like(w4), reduction_override='mean')]
    if per_box:
        calls += [dict(weight=w1, avg_factor=7.0), dict(weight=w1, reduction_override='sum')]
    for kwargs in calls:
        p1 = pred.clone().requires_grad_()
        p2 = pred.clone().requires_grad_()
        a = ours(p1, target, **kwargs)
        b = theirs(p2, target, **kwargs)
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f'{kwargs}: {m}')
        (ga,) = torch.autograd.grad(a.sum(), p1)
        (gb,) = torch.autograd.grad(b.sum(), p2)
        torch.testing.assert_close(ga, gb, rtol=rtol, atol=grad_atol,
                                   msg=lambda m: f'grad {kwargs}: {m}')


IOU_PAIRS = {
    # name: (detloss class and kwargs, mmdet class name and kwargs)
    'IoULoss_linear': (('IoULoss', dict(mode='linear')), ('IoULoss', dict(mode='linear'))),
    'IoULoss_log': (('IoULoss', dict(mode='log')), ('IoULoss', dict(mode='log'))),
    'GIoULoss': (('GIoULoss', {}), ('GIoULoss', {})),
    'DIoULoss': (('DIoULoss', {}), ('DIoULoss', {})),
    'CIoULoss_gate': (('CIoULoss', dict(alpha_gate=True)), ('CIoULoss', {})),
    'IoULoss_square': (('IoULoss', dict(mode='square')), ('IoULoss', dict(mode='square'))),
    'IoULoss_linear_legacy': (('IoULoss', dict(linear=True)), ('IoULoss', dict(linear=True))),
    'SIoULoss': (('SIoULoss', {}), ('SIoULoss', {})),
    'SIoULoss_neg_gamma': (('SIoULoss', dict(neg_gamma=True)),
                           ('SIoULoss', dict(neg_gamma=True))),
}


@pytest.mark.parametrize('name', sorted(IOU_PAIRS))
def test_equals_mmdet_iou_losses(name):
    import detloss_plugin.models.losses as ours_mod
    mmdet_losses = _mmdet_losses()
    (ours_name, ours_kw), (their_name, their_kw) = IOU_PAIRS[name]
    eps = 1e-6  # mmdet's modules' default eps, given to both
    for loss_weight in (1.0, 2.0):
        ours = getattr(ours_mod, ours_name)(eps=eps, loss_weight=loss_weight, **ours_kw)
        theirs = getattr(mmdet_losses, their_name)(eps=eps, loss_weight=loss_weight, **their_kw)
        assert type(theirs).__module__.startswith('mmdet.')
        pred, target = _mmdet_pairs()
        weight = torch.rand(pred.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
        _compare_modules(ours, theirs, pred, target, weight, True,
                         rtol=1e-6, atol=1e-6, grad_atol=1e-8)


def test_mmdet_ciou_is_the_gated_one():
    """mmdet's CIoU equals detloss's default, gated CIoU and not the AAAI (ungated) one:
    the tolerance separates the two."""
    import detloss_plugin.models.losses as ours_mod
    mmdet_losses = _mmdet_losses()
    pred, target = _mmdet_pairs()
    theirs = mmdet_losses.CIoULoss(eps=1e-6, reduction='none')(pred, target)
    gated = ours_mod.CIoULoss(reduction='none')(pred, target)  # the default
    ungated = ours_mod.CIoULoss(alpha_gate=False, reduction='none')(pred, target)
    torch.testing.assert_close(gated, theirs, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(ungated, theirs, rtol=1e-6, atol=1e-6)
    # where the gate is open (the last 10 pairs, IoU > 0.5) the aspect term is large
    # compared with the tolerance, so the comparison above tests it
    iou = 1 - ours_mod.IoULoss(mode='linear', reduction='none')(pred, target)
    assert (iou[-10:] > 0.55).all() and (iou[:-10] <= 0.5).sum() > 10
    diou = ours_mod.DIoULoss(eps=1e-6, reduction='none')(pred, target)
    assert ((gated - diou)[-10:] > 5e-5).all()
    assert torch.equal(gated[:-10] == diou[:-10], iou[:-10] <= 0.5)
    # both IoULoss classes default to 'log'
    assert mmdet_losses.IoULoss().mode == 'log' and ours_mod.IoULoss().mode == 'log'


COORD_PAIRS = {
    'L1Loss': (('L1Loss', {}), ('L1Loss', {})),
    'MSELoss': (('MSELoss', {}), ('MSELoss', {})),
    'SmoothL1Loss': (('SmoothL1Loss', {}), ('SmoothL1Loss', {})),
    'SmoothL1Loss_beta0.11': (('SmoothL1Loss', dict(beta=0.11)),
                              ('SmoothL1Loss', dict(beta=0.11))),
    'SmoothL1Loss_beta3': (('SmoothL1Loss', dict(beta=3.0)), ('SmoothL1Loss', dict(beta=3.0))),
}


@pytest.mark.parametrize('name', sorted(COORD_PAIRS))
def test_equals_mmdet_coordinate_losses(name):
    import detloss_plugin.models.losses as ours_mod
    mmdet_losses = _mmdet_losses()
    (ours_name, ours_kw), (their_name, their_kw) = COORD_PAIRS[name]
    g = torch.Generator().manual_seed(6)
    # box deltas: |x| from 0.01 to ~4, both branches of Smooth L1 for every beta
    target = torch.randn(25, 4, generator=g, dtype=F64)
    pred = target + torch.randn(25, 4, generator=g, dtype=F64) * 1.5
    weight = torch.rand(25, 4, generator=g, dtype=F64)
    for loss_weight in (1.0, 0.5):
        ours = getattr(ours_mod, ours_name)(loss_weight=loss_weight, **ours_kw)
        theirs = getattr(mmdet_losses, their_name)(loss_weight=loss_weight, **their_kw)
        _compare_modules(ours, theirs, pred, target, weight, False,
                         rtol=1e-12, atol=1e-12, grad_atol=1e-12)
    # the functional forms equal mmdet's element-wise functions too
    from mmdet.models.losses.mse_loss import mse_loss as mm_mse
    from mmdet.models.losses.smooth_l1_loss import l1_loss as mm_l1
    from mmdet.models.losses.smooth_l1_loss import smooth_l1_loss as mm_smooth
    torch.testing.assert_close(l1_loss(pred, target), mm_l1(pred, target, reduction='none'))
    torch.testing.assert_close(mse_loss(pred, target), mm_mse(pred, target, reduction='none'))
    for beta in (0.05, 1.0, 2.5):
        torch.testing.assert_close(smooth_l1_loss(pred, target, beta),
                                   mm_smooth(pred, target, beta=beta, reduction='none'))
