"""The compiled CPU kernels run on ``torch.get_num_threads()`` threads (chunks of rows
on a thread pool, ``functional/_kernels.py``) and give bit-identical results for any
number of threads: every element is computed by the same code whichever chunk holds
it, and GHM-C's region counts are summed per chunk (exact integers)."""
import pytest
import torch

from detloss_plugin.functional import _fused_cls, _fused_iou, _kernels
from detloss_plugin.functional import classification as C
from detloss_plugin.functional import ghm as G
from detloss_plugin.functional import iou_losses as IL

pytestmark = pytest.mark.skipif(
    _fused_iou.load_iou_kernel() is None or _fused_cls.load_cls_kernel() is None,
    reason='no C compiler: the kernels do not exist here')


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 64 work units, so that small inputs are split; counts the chunks."""
    monkeypatch.setattr(_kernels, 'MIN_CHUNK_WORK', 64)
    calls = []
    real = _kernels.run_chunks

    def spy(fn, rows, work_per_row=1):
        calls.append(real(fn, rows, work_per_row))
        return calls[-1]
    for module in (_kernels, _fused_iou, _fused_cls):
        monkeypatch.setattr(module, 'run_chunks', spy)
    threads = torch.get_num_threads()
    yield calls
    torch.set_num_threads(threads)


def _with_threads(n, fn):
    torch.set_num_threads(n)
    return fn()


def test_chunk_bounds_cover_the_rows():
    assert _kernels.chunk_bounds(10, 1, threads=4) == [(0, 10)]     # too little work
    bounds = _kernels.chunk_bounds(1000, 1 << 10, threads=3)
    assert bounds == [(0, 333), (333, 666), (666, 1000)]
    assert _kernels.chunk_bounds(5, 1 << 20, threads=8) == [(i, i + 1) for i in range(5)]
    assert _kernels.chunk_bounds(0, 4, threads=4) == [(0, 0)]


@pytest.mark.parametrize('fn,kwargs', [(IL.giou_loss, {}), (IL.ciou_loss, {}),
                                       (IL.focal_eiou_loss, {}), (IL.iou_loss, dict(mode='log'))])
def test_iou_kernel_same_result_for_any_thread_count(fn, kwargs, small_chunks):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(1001, 2, generator=g) * 100
    target = torch.cat([xy, xy + torch.rand(1001, 2, generator=g) * 40 + 1], 1)
    pred = target + torch.randn(1001, 4, generator=g) * 5
    weight = torch.rand(1001, generator=g)

    def run():
        p, t = pred.clone().requires_grad_(), target.clone().requires_grad_()
        loss = fn(p, t, **kwargs)
        (loss * weight).sum().backward()
        mean_grad = torch.autograd.grad(fn(p, t, **kwargs).mean(), p)[0]   # broadcast grad
        return loss.detach(), p.grad, t.grad, mean_grad
    one = _with_threads(1, run)
    assert max(small_chunks) == 1
    for threads in (2, 3):
        small_chunks.clear()
        many = _with_threads(threads, run)
        assert max(small_chunks) == threads   # the kernel calls were split
        for a, b in zip(one, many):
            assert torch.equal(a, b)


@pytest.mark.parametrize('alpha,gamma', [(0.25, 2.0), (None, 0.5), ([0.1, 0.2, 0.3, 0.4, 0.5,
                                                                      0.6, 0.7], 1.5)])
def test_focal_kernel_same_result_for_any_thread_count(alpha, gamma, small_chunks):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(301, 7, generator=g) * 4
    t = (torch.rand(301, 7, generator=g) < 0.2).float()
    w = torch.rand(301, 7, generator=g)

    def run():
        xx = x.clone().requires_grad_()
        loss = C.sigmoid_focal_loss(xx, t, alpha, gamma)
        assert type(loss.grad_fn).__name__ == '_SigmoidFocalBackward'
        (g_el,) = torch.autograd.grad(loss, xx, w, retain_graph=True)
        (g_mean,) = torch.autograd.grad(loss.mean(), xx)
        return loss.detach(), g_el, g_mean
    one = _with_threads(1, run)
    for threads in (2, 3):
        small_chunks.clear()
        many = _with_threads(threads, run)
        assert max(small_chunks) == threads
        for a, b in zip(one, many):
            assert torch.equal(a, b)


@pytest.mark.parametrize('bins,momentum', [(10, 0.0), (30, 0.75)])
def test_ghmc_kernel_same_result_for_any_thread_count(bins, momentum, small_chunks):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(257, 9, generator=g) * 3
    t = (torch.rand(257, 9, generator=g) < 0.1).float()
    valid = torch.rand(257, 1, generator=g) > 0.1
    acc = torch.rand(bins, generator=g) * 100

    def run():
        xx = x.clone().requires_grad_()
        loss, total, new_acc = G.ghmc_loss(xx, t, valid.expand_as(x), bins, momentum,
                                           acc if momentum else None)
        (grad,) = torch.autograd.grad(loss.sum() / total, xx)
        return loss.detach(), total, grad, new_acc
    one = _with_threads(1, run)
    edges = G.ghm_edges(bins, G.GHMC_LAST_EDGE)
    region1, stats1, _ = _with_threads(1, lambda: _fused_cls.ghmc_regions(
        _fused_cls.load_cls_kernel(), x, t, valid.expand_as(x), edges))
    for threads in (2, 3):
        small_chunks.clear()
        many = _with_threads(threads, run)
        assert max(small_chunks) == threads
        for a, b in zip(one, many):
            if a is None:
                assert b is None
            else:
                assert torch.equal(a, b)
        region, stats, _ = _with_threads(threads, lambda: _fused_cls.ghmc_regions(
            _fused_cls.load_cls_kernel(), x, t, valid.expand_as(x), edges))
        assert torch.equal(region, region1) and torch.equal(stats, stats1)
        # the counts: every valid element once, in its region
        assert int(stats[-1]) == int(valid.sum()) * 9 == int(stats[:-1].sum())
