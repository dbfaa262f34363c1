"""Numerics of the IoU-family functions (``functional/iou_losses.py``), every
configuration: finite value and gradient at every kink of the losses, float32 and half
precision against float64, ``gradcheck`` and ``gradgradcheck``, the authors' CIoU
gradient by hand, forward-mode AD and ``torch.func``, batch shapes, non-contiguous
inputs, empty input.
"""
import math

import pytest
import torch

from detloss_plugin.functional import iou_losses as IL
from factories import (IOU_LOSSES, TRUE_GRADIENT, box_pairs, degenerate_pairs, generator,
                       iou_fn, random_boxes)


def value_and_grads(fn, pred, target, weight):
    pred = pred.detach().clone().requires_grad_()
    target = target.detach().clone().requires_grad_()
    loss = fn(pred, target)
    gp, gt = torch.autograd.grad((loss.float() * weight).sum(), (pred, target))
    return loss.detach(), gp, gt


def assert_close_to_reference(got, ref, dtype, rtol, atol):
    """``got`` (computed in ``dtype``) against ``ref`` (float64 on the same rounded
    inputs): right dtype, finite, and close relative to the scale of each row of the
    gradient (gradients of order 1/eps at zero-height boxes are compared relatively)."""
    scale = ref[1].abs().amax(-1, keepdim=True).clamp(min=1)
    for k, (a, r, what) in enumerate(zip(got, ref, ('value', 'grad pred', 'grad target'))):
        assert a.dtype == dtype, what
        assert torch.isfinite(a).all(), f'{what} not finite'
        a, r = a.double(), r.double()
        if k:
            a, r = a / scale, r / scale
        torch.testing.assert_close(a, r, rtol=rtol, atol=atol, msg=lambda m: f'{what}: {m}')


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('name', list(IOU_LOSSES))
def test_degenerate_pairs_finite_and_close_to_float64(name, dtype):
    pred, target = degenerate_pairs(dtype)
    weight = torch.linspace(0.5, 2.0, pred.shape[0])
    got = value_and_grads(iou_fn(name), pred, target, weight)
    ref = value_and_grads(iou_fn(name), pred.double(), target.double(), weight)
    assert_close_to_reference(got, ref, dtype, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize('name', list(IOU_LOSSES))
def test_random_pairs_float32_close_to_float64(name):
    pred, target = box_pairs(300, seed=21)
    weight = torch.rand(300, generator=generator(23))
    ref = value_and_grads(iou_fn(name), pred, target, weight)
    got = value_and_grads(iou_fn(name), pred.float(), target.float(), weight)
    assert_close_to_reference(got, ref, torch.float32, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('name', ['iou_log', 'giou', 'ciou_gate', 'eiou', 'focal_eiou'])
def test_half_precision_is_float32_on_the_rounded_inputs(name, dtype):
    pred = random_boxes(64, seed=4, size=50.0, max_wh=30.0)
    target = pred + torch.randn(64, 4, generator=generator(5), dtype=torch.float64)
    pred, target = pred.to(dtype), target.to(dtype)
    weight = torch.rand(64, generator=generator(6))
    got = value_and_grads(iou_fn(name), pred, target, weight)
    ref = value_and_grads(iou_fn(name), pred.float(), target.float(), weight)
    for a, r in zip(got, ref):
        assert a.dtype == dtype and torch.isfinite(a).all()
    # the value is the float32 value cast; the gradients differ by the rounding of the
    # incoming gradient to half precision (the cast's backward)
    torch.testing.assert_close(got[0], ref[0].to(dtype), rtol=0, atol=0)
    for a, r in zip(got[1:], ref[1:]):
        torch.testing.assert_close(a, r.to(dtype), rtol=2e-3 if dtype == torch.float16
                                   else 2e-2, atol=1e-4)


def test_half_precision_gradient_saturates_instead_of_inf():
    # a prediction of width 6e-8 (float16's smallest subnormal) and height 0: CIoU's
    # d atan(w / (h + eps)) / dh = -w / ((h + eps)^2 + w^2) is about 1e7 there, far
    # beyond float16's 65504; a plain cast of the float32 gradient gives Inf
    pred = torch.tensor([[0.0, 0.0, 6e-8, 0.0]], dtype=torch.float16, requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 3.0, 2.0]], dtype=torch.float16)
    (g,) = torch.autograd.grad(IL.ciou_loss(pred, target).sum(), pred)
    assert g.dtype == torch.float16 and torch.isfinite(g).all()
    assert (g.abs() == torch.finfo(torch.float16).max).all()
    (g32,) = torch.autograd.grad(IL.ciou_loss(pred.float(), target.float()).sum(), pred)
    assert torch.isinf(g32).all()


def ciou_alpha_and_v(pred, target, gate, eps=1e-7):
    """CIoU's trade-off weight alpha (no gradient) and aspect term v, transcribed."""
    pw, ph = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    tw, th = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    v = 4 / math.pi ** 2 * (torch.atan(tw / (th + eps)) - torch.atan(pw / (ph + eps))) ** 2
    with torch.no_grad():
        iw = (torch.minimum(pred[:, 2], target[:, 2])
              - torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
        ih = (torch.minimum(pred[:, 3], target[:, 3])
              - torch.maximum(pred[:, 1], target[:, 1])).clamp(min=0)
        iou = iw * ih / (pw * ph + tw * th - iw * ih + eps)
        alpha = v / (1 - iou + v + eps) * ((iou > 0.5) if gate else 1)
    return alpha, v


def _smooth_pairs():
    # random boxes keep away from the kinks, where finite differences are meaningless
    pred = random_boxes(6, seed=7)
    target = random_boxes(6, seed=7) + 0.7 * torch.rand(6, 4, generator=generator(8),
                                                        dtype=torch.float64)
    return pred.requires_grad_(), target.requires_grad_()


@pytest.mark.parametrize('name', TRUE_GRADIENT)
def test_gradcheck(name):
    pred, target = _smooth_pairs()
    fn = iou_fn(name)
    if name.startswith('ciou'):
        # CIoU's gradient treats alpha as a constant: it is the derivative of
        # L(p) - (alpha(p) - alpha(p0)) v(p) at p0, whose correction term has zero
        # analytic gradient at p0 (alpha has none, and alpha(p0) - alpha(p0) = 0).
        gate = 'gate' in name
        alpha0 = ciou_alpha_and_v(pred, target, gate)[0]

        def fn(p, t, base=fn):
            alpha, v = ciou_alpha_and_v(p, t, gate)
            return base(p, t) - (alpha - alpha0) * v
    assert torch.autograd.gradcheck(fn, (pred, target), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize('name', ['iou_linear', 'iou_log', 'giou', 'diou', 'eiou',
                                  'focal_eiou', 'focal_eiou_gamma07'])
def test_gradgradcheck(name):
    assert torch.autograd.gradgradcheck(iou_fn(name), _smooth_pairs(), eps=1e-6, atol=1e-6)


def test_authors_ciou_gradient_by_hand():
    # With alpha constant, d(alpha v)/dw = -alpha (8/pi^2) (atan(w_gt/h_gt) - atan(w/h))
    # * d atan(w/h)/dw. The authors replace d atan(w/h)/dw = h/(w^2 + h^2) by h and
    # d/dh = -w/(w^2 + h^2) by -w. Pred [0,0,2,1] (w 2, h 1) and target [0,0,1,2]:
    # the only difference between the two gradients is that factor 1/(w^2+h^2) = 1/5
    # on the aspect part, which is isolated by subtracting the DIoU gradient.
    pred = torch.tensor([[0., 0., 2., 1.]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0., 0., 1., 2.]], dtype=torch.float64)
    diou_grad = torch.autograd.grad(IL.diou_loss(pred, target).sum(), pred)[0]
    true = torch.autograd.grad(IL.ciou_loss(pred, target).sum(), pred)[0] - diou_grad
    authors = torch.autograd.grad(
        IL.ciou_loss(pred, target, authors_gradient=True).sum(), pred)[0] - diou_grad
    torch.testing.assert_close(authors, true * 5, rtol=1e-5, atol=1e-9)
    # the value is the same
    torch.testing.assert_close(IL.ciou_loss(pred, target, authors_gradient=True),
                               IL.ciou_loss(pred, target))


@pytest.mark.parametrize('name', ['giou', 'ciou', 'eiou', 'focal_eiou'])
def test_forward_mode_and_torch_func_equal_reverse_mode(name):
    pred, target = box_pairs(5, seed=15)
    fn = iou_fn(name)
    rev = torch.func.jacrev(fn)(pred, target)
    fwd = torch.func.jacfwd(fn)(pred, target)
    torch.testing.assert_close(fwd, rev, rtol=1e-10, atol=1e-12)
    assert rev.abs().sum() > 0
    per_sample = torch.func.vmap(torch.func.grad(lambda p, t: fn(p, t).sum()))(pred, target)
    torch.testing.assert_close(per_sample, rev.diagonal(dim1=0, dim2=1).permute(1, 0))


def test_batch_shapes_and_gradient_to_target_only():
    pred = random_boxes(24, seed=9).view(2, 3, 4, 4)
    target = random_boxes(24, seed=10).view(2, 3, 4, 4).requires_grad_()
    for name in ('giou', 'ciou', 'focal_eiou'):
        loss = iou_fn(name)(pred, target)
        assert loss.shape == (2, 3, 4)
        torch.testing.assert_close(loss.reshape(-1),
                                   iou_fn(name)(pred.reshape(-1, 4), target.reshape(-1, 4)))
        (g,) = torch.autograd.grad(loss.sum(), target)
        assert g.shape == target.shape and g.abs().sum() > 0
    # a non-contiguous grad_output gives the gradient of the contiguous one
    pred32 = pred.float().requires_grad_()
    grad_out = torch.rand(4, 3, 2, generator=generator(1)).permute(2, 1, 0)
    for name in ('diou', 'ciou_gate', 'focal_eiou'):
        a = torch.autograd.grad(iou_fn(name)(pred32, target.float()), pred32, grad_out)[0]
        b = torch.autograd.grad(iou_fn(name)(pred32, target.float()), pred32,
                                grad_out.contiguous())[0]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_non_contiguous_inputs_equal_contiguous():
    big = random_boxes(40, seed=11)
    pred = big[::2]                                                 # row stride 8
    target = random_boxes(40, seed=12).t().contiguous().t()[::2]    # column-major rows
    assert not pred.is_contiguous() and not target.is_contiguous()
    for name in ('diou', 'eiou', 'ciou'):
        torch.testing.assert_close(iou_fn(name)(pred, target),
                                   iou_fn(name)(pred.contiguous(), target.contiguous()),
                                   rtol=0, atol=0)


@pytest.mark.parametrize('name', list(IOU_LOSSES))
def test_empty_input_keeps_graph(name):
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = iou_fn(name)(pred, torch.zeros(0, 4))
    assert loss.shape == (0,)
    total = loss.sum()
    total.backward()
    assert total.item() == 0.0 and pred.grad.shape == (0, 4)
