"""The CPU kernel of the sigmoid focal loss and of GHM-C (``functional/_fused_cls.py``,
``csrc/sigmoid_cls.c``) computes the same functions as the plain torch code.

- focal: ``fast=True`` against ``fast=False`` in value and in the gradient, in
  float32 and half precision, for every alpha form and the gamma forms the kernel
  special-cases (0, 0.5, 1, 2) and a generic one, on random, soft-target and extreme
  inputs; its error against a float64 computation is no larger than the plain float32
  code's own; double backward; empty and non-contiguous inputs; the fallbacks.
- GHM-C: same regions, counts, moving average, loss and gradient as the plain code
  (inputs kept away from region edges, where a float32 ulp of ``sigmoid`` may decide),
  and the region rule at exact edges.
- ``labels_to_one_hot`` against the comparison it replaced.
Each test checks that the kernel did run (else it would compare the plain path with
itself).
"""
import pytest
import torch

from detloss_plugin.functional import _fused_cls
from detloss_plugin.functional import classification as C
from detloss_plugin.functional import ghm as G

pytestmark = pytest.mark.skipif(_fused_cls.load_cls_kernel() is None,
                                reason='no C compiler: the kernel path does not exist here')

GAMMAS = [0.0, 0.5, 1.0, 2.0, 1.5, 0.7]
ALPHAS = {
    'scalar': 0.25,
    'none': None,
    'minus_one': -1,
    'per_class': [0.1, 0.25, 0.5, 0.75, 0.9],
    'tensor_per_class': torch.tensor([0.9, 0.75, 0.5, 0.25, 0.1]),
    'tensor_scalar': torch.tensor(0.4),
}


def _inputs(n=400, c=5, seed=0, scale=6.0, soft=True, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g) * scale
    t = (torch.rand(n, c, generator=g) < 0.2).float()
    t[n // 2:, :] = 0      # background rows
    if soft:
        k = min(20, n // 4)
        t[:k] = torch.rand(k, c, generator=g)
    return x.to(dtype), t.to(dtype)


def _value_and_grad(fn, x, t, grad_out=None):
    x = x.detach().clone().requires_grad_()
    loss = fn(x, t)
    if grad_out is None:
        grad_out = torch.ones_like(loss)
    (g,) = torch.autograd.grad(loss, x, grad_out.to(loss.dtype))
    return loss.detach(), g, loss.grad_fn


def _in_graph(grad_fn, name: str) -> bool:
    """Whether the autograd graph below ``grad_fn`` has a node called ``name``."""
    todo, seen = [grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == name:
            return True
        todo.extend(n for n, _ in node.next_functions)
    return False


def _focal(fast, alpha, gamma):
    return lambda x, t: C.sigmoid_focal_loss(x, t, alpha, gamma, fast=fast)


@pytest.mark.parametrize('gamma', GAMMAS)
@pytest.mark.parametrize('alpha', sorted(ALPHAS))
def test_focal_fast_equals_plain_float32(alpha, gamma):
    x, t = _inputs()
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(5))
    fast = _value_and_grad(_focal(True, ALPHAS[alpha], gamma), x, t, w)
    plain = _value_and_grad(_focal(False, ALPHAS[alpha], gamma), x, t, w)
    assert _in_graph(fast[2], '_SigmoidFocalBackward')   # the kernel ran
    assert not _in_graph(plain[2], '_SigmoidFocalBackward')
    # float32 rounding (the BCE of a negative with x < 0 cancels: (1 - t) x + softplus(-x)
    # loses a few digits in both codes, differently)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast[1], plain[1], rtol=1e-4, atol=1e-6)
    # and it is as accurate as the plain float32 code against float64
    ref = _value_and_grad(_focal(False, ALPHAS[alpha], gamma), x.double(), t.double(),
                          w.double())
    for k in (0, 1):
        err_fast = (fast[k].double() - ref[k]).abs().max().item()
        err_plain = (plain[k].double() - ref[k]).abs().max().item()
        assert err_fast <= 4 * err_plain + 1e-6, (k, err_fast, err_plain)


@pytest.mark.parametrize('gamma', [2.0, 0.5])
def test_focal_fast_broadcast_grad_output(gamma):
    """``loss.sum()`` / ``.mean()`` hand the backward an expanded scalar (stride 0)."""
    x, t = _inputs(seed=3)
    for reduce in (torch.sum, torch.mean):
        grads = []
        for fast in (True, False):
            xx = x.clone().requires_grad_()
            (g,) = torch.autograd.grad(reduce(_focal(fast, 0.25, gamma)(xx, t)) * 3.0, xx)
            grads.append(g)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_focal_fast_extreme_logits():
    """Saturated logits (exp underflows below -87.3), zero, tiny: finite, and equal to
    the plain code."""
    vals = [0.0, 1e-30, -1e-30, 1e-3, 15.0, -15.0, 30.0, -30.0, 87.0, -87.0, 87.5, -87.5,
            88.0, -88.0, 90.0, -90.0, 100.0, -100.0, 1e4, -1e4]
    x = torch.tensor(vals).repeat(2, 1).t().contiguous()           # (20, 2)
    t = torch.tensor([[1.0, 0.0]]).expand(len(vals), 2).contiguous()
    for gamma in (2.0, 0.5, 0.7, 0.0):
        fast = _value_and_grad(_focal(True, 0.25, gamma), x, t)
        plain = _value_and_grad(_focal(False, 0.25, gamma), x, t)
        assert torch.isfinite(fast[0]).all() and torch.isfinite(fast[1]).all()
        torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(fast[1], plain[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_focal_fast_half_precision(dtype):
    x, t = _inputs(dtype=dtype, scale=4.0)
    fast = _value_and_grad(_focal(True, 0.25, 2.0), x, t)
    plain = _value_and_grad(_focal(False, 0.25, 2.0), x, t)
    assert fast[0].dtype == dtype and fast[1].dtype == dtype
    assert _in_graph(fast[2], '_SigmoidFocalBackward')
    torch.testing.assert_close(fast[0], plain[0])
    torch.testing.assert_close(fast[1], plain[1])


def test_focal_fast_double_backward():
    x, t = _inputs(n=30, seed=4, scale=2.0)
    second = []
    for fast in (True, False):
        xx = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(_focal(fast, 0.25, 2.0)(xx, t).sum(), xx,
                                   create_graph=True)
        (gg,) = torch.autograd.grad((g * g).sum(), xx)
        second.append(gg)
    torch.testing.assert_close(second[0], second[1], rtol=1e-4, atol=1e-6)


def test_focal_fast_empty_and_non_contiguous():
    for shape in ((0, 5), (7, 0)):
        x = torch.zeros(shape, requires_grad=True)
        loss = C.sigmoid_focal_loss(x, torch.zeros(shape))
        assert loss.shape == shape
        loss.sum().backward()
        assert x.grad.shape == shape
    x, t = _inputs(n=6, c=40)
    xt, tt = x.t(), t.t()                 # (40, 6) views
    assert not xt.is_contiguous()
    fast = _value_and_grad(_focal(True, 0.25, 2.0), xt, tt)
    plain = _value_and_grad(_focal(False, 0.25, 2.0), xt, tt)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast[1], plain[1], rtol=1e-4, atol=1e-6)


def test_focal_falls_back_to_plain_code():
    """float64, targets requiring grad, an alpha requiring grad, ``CPU_KERNEL = False``:
    the plain code (autograd through it, gradients w.r.t. every input)."""
    x, t = _inputs(n=10)
    out = C.sigmoid_focal_loss(x.double().requires_grad_(), t.double())
    assert not _in_graph(out.grad_fn, '_SigmoidFocalBackward')
    tt = t.clone().requires_grad_()
    out = C.sigmoid_focal_loss(x.clone().requires_grad_(), tt)
    (gt,) = torch.autograd.grad(out.sum(), tt)
    assert gt.abs().sum() > 0
    alpha = torch.full((5,), 0.25, requires_grad=True)
    out = C.sigmoid_focal_loss(x.clone().requires_grad_(), t, alpha)
    (ga,) = torch.autograd.grad(out.sum(), alpha)
    assert ga.abs().sum() > 0
    old = _fused_cls.CPU_KERNEL
    try:
        _fused_cls.CPU_KERNEL = False
        out = C.sigmoid_focal_loss(x.clone().requires_grad_(), t)
        assert not _in_graph(out.grad_fn, '_SigmoidFocalBackward')
    finally:
        _fused_cls.CPU_KERNEL = old


# ------------------------------------------------------------------------------ GHM-C
def _away_from_edges(x, t, bins, margin=1e-4, step=0.01):
    """Move logits whose gradient norm lies within ``margin`` of an inner region edge
    (0 <= g < 1 + 1e-6 always: the outer edges decide nothing)."""
    edges = G.ghm_edges(bins, G.GHMC_LAST_EDGE).double()[1:-1]
    for _ in range(20):
        g = (torch.sigmoid(x.double()) - t.double()).abs()
        near = ((g.unsqueeze(-1) - edges).abs() < margin).any(-1)
        if not near.any():
            return x
        x = torch.where(near, x + step, x)
    raise AssertionError('could not move the inputs away from the edges')


def _ghmc(fast, x, t, valid, bins, momentum, acc):
    xx = x.clone().requires_grad_()
    loss, total, new_acc = G.ghmc_loss(xx, t, valid, bins, momentum, acc, fast=fast)
    w = torch.rand(loss.shape, generator=torch.Generator().manual_seed(9))
    (g_el,) = torch.autograd.grad(loss, xx, w, retain_graph=True)
    (g_mean,) = torch.autograd.grad(loss.sum() / total, xx)   # broadcast grad_output
    return loss.detach(), total, new_acc, g_el, g_mean, loss.grad_fn


@pytest.mark.parametrize('valid_kind', ['rows', 'elements', 'none_valid', 'all'])
@pytest.mark.parametrize('bins,momentum', [(10, 0.0), (10, 0.75), (30, 0.75), (1, 0.0)])
def test_ghmc_fast_equals_plain(bins, momentum, valid_kind):
    acc = {True: torch.zeros(bins), False: torch.zeros(bins)}
    for seed in range(3):   # the moving average evolves over calls
        x, t = _inputs(n=300, c=7, seed=seed, scale=3.0)
        x = _away_from_edges(x, t, bins)
        g = torch.Generator().manual_seed(seed + 100)
        valid = {'rows': (torch.rand(300, 1, generator=g) > 0.3).expand(300, 7),
                 'elements': torch.rand(300, 7, generator=g) > 0.3,
                 'none_valid': torch.zeros(300, 7, dtype=torch.bool),
                 'all': torch.ones(300, 7, dtype=torch.bool)}[valid_kind]
        out = {}
        for fast in (True, False):
            out[fast] = _ghmc(fast, x, t, valid, bins, momentum,
                              acc[fast] if momentum else None)
            if momentum:
                acc[fast] = out[fast][2]
        assert _in_graph(out[True][5], '_GHMCWeightedBCEBackward')
        assert not _in_graph(out[False][5], '_GHMCWeightedBCEBackward')
        f, p = out[True], out[False]
        torch.testing.assert_close(f[0], p[0], rtol=1e-5, atol=1e-6)      # loss
        torch.testing.assert_close(f[1], p[1], rtol=0, atol=0)            # total N
        if momentum:
            torch.testing.assert_close(f[2], p[2], rtol=0, atol=0)        # counts exact
        else:
            assert f[2] is None and p[2] is None
        torch.testing.assert_close(f[3], p[3], rtol=1e-5, atol=1e-7)      # gradients
        torch.testing.assert_close(f[4], p[4], rtol=1e-5, atol=1e-7)
        if valid_kind == 'none_valid':
            assert f[0].abs().sum() == 0 and f[4].abs().sum() == 0


def test_ghmc_fast_regions_at_exact_edges():
    """Elements whose gradient norm is exactly an edge (x = 0: sigmoid is exactly 0.5,
    and soft targets 0.5 -/+ edge) or exactly 0 or 1 (saturated logits): the kernel's
    regions and counts equal bucketize's."""
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
    kernel = _fused_cls.load_cls_kernel()
    region, stats, _ = _fused_cls.ghmc_regions(kernel, x, t, valid, edges)
    g = (torch.sigmoid(x) - t).abs()
    expected = (torch.bucketize(g, edges, right=True) - 1).clamp(0, bins - 1)
    assert torch.equal(region.long(), expected)
    assert torch.equal(stats[:bins], torch.bincount(expected.flatten(), minlength=bins))
    assert stats[bins] == x.numel()
    f = G.ghmc_loss(x, t, valid, bins, fast=True)
    p = G.ghmc_loss(x, t, valid, bins, fast=False)
    torch.testing.assert_close(f[0], p[0])


def test_ghmc_fast_half_precision_and_fallbacks():
    x, t = _inputs(n=200, c=6, scale=3.0, soft=False)
    # logits exact in float16 (|x| < 16, steps of 1/16), so both paths see the same input
    x = _away_from_edges(x.half().float(), t, 10, step=0.0625)
    valid = torch.ones_like(x, dtype=torch.bool)
    xh = x.half().requires_grad_()
    loss, total, _ = G.ghmc_loss(xh, t.half(), valid, 10)
    assert loss.dtype == torch.float16 and _in_graph(loss.grad_fn, '_GHMCWeightedBCEBackward')
    plain, total_p, _ = G.ghmc_loss(xh, t.half(), valid, 10, fast=False)
    torch.testing.assert_close(loss, plain)
    torch.testing.assert_close(total, total_p)
    # more than 254 regions, float64: the plain code
    loss = G.ghmc_loss(x.clone().requires_grad_(), t, valid, 300)[0]
    assert not _in_graph(loss.grad_fn, '_GHMCWeightedBCEBackward')
    loss = G.ghmc_loss(x.double().requires_grad_(), t.double(), valid)[0]
    assert not _in_graph(loss.grad_fn, '_GHMCWeightedBCEBackward')


def test_ghmc_fast_double_backward():
    x, t = _inputs(n=40, c=3, scale=2.0)
    valid = torch.ones_like(x, dtype=torch.bool)
    second = []
    for fast in (True, False):
        xx = x.clone().requires_grad_()
        loss, total, _ = G.ghmc_loss(xx, t, valid, 10, fast=fast)
        (g,) = torch.autograd.grad(loss.sum() / total, xx, create_graph=True)
        (gg,) = torch.autograd.grad((g * g).sum(), xx)
        second.append(gg)
    torch.testing.assert_close(second[0], second[1], rtol=1e-4, atol=1e-8)


def test_labels_to_one_hot_equals_comparison():
    labels = torch.tensor([[0, 3, 4, -100], [255, 2, -1, 1]])
    expected = (labels.unsqueeze(-1) == torch.arange(4)).float()
    assert torch.equal(C.labels_to_one_hot(labels, 4), expected)
    assert C.labels_to_one_hot(labels, 4, torch.float16).dtype == torch.float16
    assert C.labels_to_one_hot(labels[0], 0).shape == (4, 0)
    assert C.labels_to_one_hot(torch.zeros(0, dtype=torch.long), 3).shape == (0, 3)
