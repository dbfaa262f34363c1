"""Numerics of the sigmoid focal loss and GHM-C on their one (torch) implementation.

- focal: float32 against float64 in value and gradient for every alpha form and the
  gamma values with special cases (0, 0.5, 1, 2) and generic ones, on random, soft-target
  and saturated logits; half precision; ``gradgradcheck``; gradients to targets and to
  a tensor alpha; empty and non-contiguous inputs.
- GHM-C: against a slow loop over the regions written from the paper (mmdet's ``GHMC``
  loop), for several region counts, momentum and masks of valid elements, over calls
  (the moving average), with gradient norms exactly at region edges; half precision;
  ``gradgradcheck``.
- ``labels_to_one_hot`` against a comparison.
"""
import pytest
import torch
import torch.nn.functional as F

from detloss_plugin.functional import classification as C
from detloss_plugin.functional import ghm as G
from factories import generator, random_logits

GAMMAS = [0.0, 0.5, 1.0, 2.0, 1.5, 0.7]
ALPHAS = {
    'scalar': 0.25,
    'none': None,
    'minus_one': -1,
    'per_class': [0.1, 0.25, 0.5, 0.75, 0.9],
    'tensor_per_class': torch.tensor([0.9, 0.75, 0.5, 0.25, 0.1]),
    'tensor_scalar': torch.tensor(0.4),
}


def _value_and_grad(fn, x, t, grad_out=None):
    x = x.detach().clone().requires_grad_()
    loss = fn(x, t)
    if grad_out is None:
        grad_out = torch.ones_like(loss)
    (g,) = torch.autograd.grad(loss, x, grad_out.to(loss.dtype))
    return loss.detach(), g


def _focal(alpha, gamma):
    return lambda x, t: C.sigmoid_focal_loss(x, t, alpha, gamma)


def _as(alpha, dtype):
    return alpha.to(dtype) if isinstance(alpha, torch.Tensor) else alpha


@pytest.mark.parametrize('gamma', GAMMAS)
@pytest.mark.parametrize('alpha', sorted(ALPHAS))
def test_focal_float32_close_to_float64(alpha, gamma):
    x, t = random_logits()
    w = torch.rand(x.shape, generator=generator(5))
    got = _value_and_grad(_focal(ALPHAS[alpha], gamma), x, t, w)
    ref = _value_and_grad(_focal(_as(ALPHAS[alpha], torch.float64), gamma), x.double(),
                          t.double(), w.double())
    for a, r in zip(got, ref):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-6)


def test_focal_by_hand():
    # x = 0: p = 0.5. Positive: -0.25 * 0.5^2 * ln 0.5 = 0.0433217; negative:
    # -0.75 * 0.5^2 * ln 0.5 = 0.1299651.
    loss = C.sigmoid_focal_loss(torch.zeros(1, 2, dtype=torch.float64),
                                torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(loss, torch.tensor([[0.0433216988, 0.1299650963]],
                                                  dtype=torch.float64))


@pytest.mark.parametrize('gamma', [2.0, 0.5])
def test_focal_broadcast_grad_output(gamma):
    """``loss.sum()`` / ``.mean()`` hand the backward an expanded scalar (stride 0)."""
    x, t = random_logits(seed=3)
    xx = x.clone().requires_grad_()
    (g_sum,) = torch.autograd.grad(_focal(0.25, gamma)(xx, t).sum() * 3.0, xx)
    (g_mean,) = torch.autograd.grad(_focal(0.25, gamma)(xx, t).mean() * 3.0, xx)
    (g_full,) = torch.autograd.grad(_focal(0.25, gamma)(xx, t), xx, torch.full_like(x, 3.0))
    torch.testing.assert_close(g_sum, g_full, rtol=0, atol=0)
    torch.testing.assert_close(g_mean * x.numel(), g_full, rtol=1e-5, atol=1e-7)


def test_focal_extreme_logits():
    """Saturated logits (exp underflows below -87.3), zero, tiny: finite, and equal to
    float64 (to float32's rounding of the BCE of a negative at x < 0, which cancels:
    about 2e-7 absolute at x = -15)."""
    vals = [0.0, 1e-30, -1e-30, 1e-3, 15.0, -15.0, 30.0, -30.0, 87.0, -87.0, 87.5, -87.5,
            88.0, -88.0, 90.0, -90.0, 100.0, -100.0, 1e4, -1e4]
    x = torch.tensor(vals).repeat(2, 1).t().contiguous()           # (20, 2)
    t = torch.tensor([[1.0, 0.0]]).expand(len(vals), 2).contiguous()
    for gamma in (2.0, 0.5, 0.7, 0.0):
        got = _value_and_grad(_focal(0.25, gamma), x, t)
        ref = _value_and_grad(_focal(0.25, gamma), x.double(), t.double())
        for a, r in zip(got, ref):
            assert torch.isfinite(a).all()
            torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=5e-7)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_focal_half_precision_is_float32_on_the_rounded_inputs(dtype):
    x, t = random_logits(dtype=dtype, scale=4.0)
    got = _value_and_grad(_focal(0.25, 2.0), x, t)
    ref = _value_and_grad(_focal(0.25, 2.0), x.float(), t.float())
    assert got[0].dtype == dtype and got[1].dtype == dtype
    torch.testing.assert_close(got[0], ref[0].to(dtype), rtol=0, atol=0)
    torch.testing.assert_close(got[1], ref[1].to(dtype))


@pytest.mark.parametrize('gamma', [2.0, 1.5, 0.7])
def test_focal_gradgradcheck(gamma):
    x, t = random_logits(n=12, seed=4, scale=2.0, dtype=torch.float64)
    x = x.requires_grad_()
    assert torch.autograd.gradgradcheck(lambda z: C.sigmoid_focal_loss(z, t, 0.25, gamma),
                                        (x,))


def test_focal_empty_and_non_contiguous():
    for shape in ((0, 5), (7, 0)):
        x = torch.zeros(shape, requires_grad=True)
        loss = C.sigmoid_focal_loss(x, torch.zeros(shape))
        assert loss.shape == shape
        loss.sum().backward()
        assert x.grad.shape == shape
    x, t = random_logits(n=6, c=40)
    xt, tt = x.t(), t.t()                 # (40, 6) views
    assert not xt.is_contiguous()
    got = _value_and_grad(_focal(0.25, 2.0), xt, tt)
    ref = _value_and_grad(_focal(0.25, 2.0), xt.contiguous(), tt.contiguous())
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=0)
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=0)


def test_focal_gradients_to_targets_and_alpha():
    x, t = random_logits(n=10, dtype=torch.float64)
    tt = t.clone().requires_grad_()
    alpha = torch.full((5,), 0.25, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: C.sigmoid_focal_loss(x, b, a), (alpha, tt))


# ------------------------------------------------------------------------------ GHM-C
def slow_ghmc(x, t, valid, bins, momentum=0.0, acc=None):
    """GHM-C as the paper and mmdet's ``GHMC`` loop write it, one region at a time in
    Python numbers: ``(loss per element, N, new moving average)``."""
    edges = G.ghm_edges(bins, G.GHMC_LAST_EDGE)
    g = (torch.sigmoid(x.detach().float()) - t.float()).abs()
    total = max(int(valid.sum()), 1)
    weights = torch.zeros(x.shape, dtype=torch.float64)
    acc = None if acc is None else [float(a) for a in acc]
    nonempty = 0
    for b in range(bins):
        inds = (g >= edges[b]) & (g < edges[b + 1]) & valid
        num = int(inds.sum())
        if num > 0:
            if momentum > 0:
                acc[b] = momentum * acc[b] + (1 - momentum) * num
                weights[inds] = total / acc[b]
            else:
                weights[inds] = total / num
            nonempty += 1
    if nonempty > 0:
        weights /= nonempty
    # the BCE in the inputs' precision (float32 rounds the BCE of a negative at x < 0
    # by its cancellation; that is torch's, not GHM's)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction='none').double()
    return bce * weights, total, acc


def _away_from_edges(x, t, bins, margin=1e-4, step=0.01):
    """Move logits whose gradient norm lies within ``margin`` of an inner region edge
    (so that the region cannot depend on a float32 ulp of ``sigmoid``)."""
    edges = G.ghm_edges(bins, G.GHMC_LAST_EDGE).double()[1:-1]
    for _ in range(20):
        g = (torch.sigmoid(x.double()) - t.double()).abs()
        near = ((g.unsqueeze(-1) - edges).abs() < margin).any(-1)
        if not near.any():
            return x
        x = torch.where(near, x + step, x)
    raise AssertionError('could not move the inputs away from the edges')


@pytest.mark.parametrize('valid_kind', ['rows', 'elements', 'none_valid', 'all'])
@pytest.mark.parametrize('bins,momentum', [(10, 0.0), (10, 0.75), (30, 0.75), (1, 0.0)])
def test_ghmc_equals_slow_loop(bins, momentum, valid_kind):
    acc = torch.zeros(bins)
    slow_acc = [0.0] * bins
    for seed in range(3):   # the moving average evolves over calls
        x, t = random_logits(n=300, c=7, seed=seed, scale=3.0)
        x = _away_from_edges(x, t, bins)
        g = generator(seed + 100)
        valid = {'rows': (torch.rand(300, 1, generator=g) > 0.3).expand(300, 7),
                 'elements': torch.rand(300, 7, generator=g) > 0.3,
                 'none_valid': torch.zeros(300, 7, dtype=torch.bool),
                 'all': torch.ones(300, 7, dtype=torch.bool)}[valid_kind]
        xx = x.clone().requires_grad_()
        loss, total, new_acc = G.ghmc_loss(xx, t, valid, bins, momentum,
                                           acc if momentum else None)
        ref, ref_total, slow_acc = slow_ghmc(x, t, valid, bins, momentum,
                                             slow_acc if momentum else None)
        torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-7)
        assert float(total) == ref_total
        if momentum:
            torch.testing.assert_close(new_acc.double(), torch.tensor(slow_acc,
                                                                      dtype=torch.float64))
            acc = new_acc
        else:
            assert new_acc is None
        # the weights are constants of the backward pass: d loss / dx = beta * (p - t)
        (grad,) = torch.autograd.grad(loss.sum() / total, xx)
        beta = ref / F.binary_cross_entropy_with_logits(x, t, reduction='none').double()
        expected = beta * (torch.sigmoid(x.double()) - t.double()) / ref_total
        torch.testing.assert_close(grad.double(), expected, rtol=1e-5, atol=1e-8)
        if valid_kind == 'none_valid':
            assert loss.abs().sum() == 0 and grad.abs().sum() == 0


def test_ghmc_regions_at_exact_edges():
    """Elements whose gradient norm is exactly an edge (x = 0: sigmoid is exactly 0.5,
    and soft targets 0.5 -/+ edge) or exactly 0 or 1 (saturated logits) fall where the
    paper's rule ``edges[b] <= g < edges[b + 1]`` puts them."""
    bins = 10
    edges = G.ghm_edges(bins, G.GHMC_LAST_EDGE)
    t_vals = []
    for e in edges[:bins]:
        for tv in (0.5 - e, 0.5 + e):
            tv = tv.reshape(1)
            if (torch.tensor([0.5]) - tv).abs() == e:   # exact in float32
                t_vals.append(tv)
    t = torch.cat(t_vals + [torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])])
    x = torch.zeros_like(t)
    x[-6:] = torch.tensor([-200.0, 200.0, 200.0, -200.0, 0.0, 0.0])
    assert len(t_vals) >= 10
    x, t = x.reshape(-1, 1), t.reshape(-1, 1)
    valid = torch.ones_like(x, dtype=torch.bool)
    loss, total, _ = G.ghmc_loss(x, t, valid, bins)
    ref, ref_total, _ = slow_ghmc(x, t, valid, bins)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-6, atol=0)
    assert float(total) == ref_total == x.numel()


def test_ghmc_half_precision_is_float32_on_the_rounded_inputs():
    x, t = random_logits(n=200, c=6, scale=3.0, soft=False)
    # logits exact in float16 (|x| < 16, steps of 1/16)
    x = _away_from_edges(x.half().float(), t, 10, step=0.0625)
    valid = torch.ones_like(x, dtype=torch.bool)
    loss, total, _ = G.ghmc_loss(x.half().requires_grad_(), t.half(), valid, 10)
    ref, ref_total, _ = G.ghmc_loss(x.half().float(), t, valid, 10)
    assert loss.dtype == torch.float16
    torch.testing.assert_close(loss, ref.half(), rtol=0, atol=0)
    torch.testing.assert_close(total, ref_total)


def test_ghmc_gradgradcheck():
    x, t = random_logits(n=40, c=3, scale=2.0, dtype=torch.float64)
    x = _away_from_edges(x, t, 10).requires_grad_()
    valid = torch.ones_like(x, dtype=torch.bool)
    assert torch.autograd.gradgradcheck(lambda z: G.ghmc_loss(z, t, valid, 10)[0], (x,))


def test_labels_to_one_hot_equals_comparison():
    labels = torch.tensor([[0, 3, 4, -100], [255, 2, -1, 1]])
    expected = (labels.unsqueeze(-1) == torch.arange(4)).float()
    assert torch.equal(C.labels_to_one_hot(labels, 4), expected)
    assert C.labels_to_one_hot(labels, 4, torch.float16).dtype == torch.float16
    assert C.labels_to_one_hot(labels[0], 0).shape == (4, 0)
    assert C.labels_to_one_hot(torch.zeros(0, dtype=torch.long), 3).shape == (0, 3)
