"""The ranking losses under ``torch.compile(fullgraph=True)`` (backend ``aot_eager``):
forward and backward equal eager. Each is one custom operator with a fake kernel
(``torch.ops.detloss.*``), so the graph has no break; on the CPU the operator runs the
C passes or the torch code, as in eager."""
import pytest
import torch

from detloss_plugin.models.losses import ALRPLoss, APLoss, DRLoss, RankSortLoss
from test_rank_sort_alrp import _alrp_case, _rs_case
from test_ranking_functional import _case


def _eager_and_compiled(fn, *inputs):
    """``((eager outputs, eager grads), (compiled outputs, compiled grads))`` of
    ``sum(fn(*inputs))``, the gradients w.r.t. every input."""
    results = []
    for f in (fn, torch.compile(fn, fullgraph=True, backend='aot_eager')):
        xs = [x.clone().requires_grad_(True) for x in inputs]
        out = f(*xs)
        out = out if isinstance(out, tuple) else (out,)
        sum(out).backward()
        results.append(([o.detach() for o in out], [x.grad for x in xs]))
    torch._dynamo.reset()
    return results


@pytest.mark.parametrize('name', ['APLoss', 'DRLoss'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_ap_and_dr_compile_and_equal_eager(name, dtype):
    logits, labels, weights = _case(40, 4, 3, dtype=dtype, decimals=1)
    module = (APLoss(delta=0.5) if name == 'APLoss' else DRLoss()).attach('test')
    (out_e, g_e), (out_c, g_c) = _eager_and_compiled(
        lambda x: module(x, labels, weights, avg_factor=3.0), logits)
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=0)
    for a, b in zip(out_e + g_e, out_c + g_c):
        torch.testing.assert_close(a, b, **tol)
    assert g_e[0].abs().sum() > 0


def test_rank_sort_compiles_and_equals_eager():
    logits, targets = _rs_case(30, 4, 2, decimals=1, target_decimals=1)
    module = RankSortLoss().attach('test')
    (out_e, g_e), (out_c, g_c) = _eager_and_compiled(lambda x: module(x, targets), logits)
    for a, b in zip(out_e + g_e, out_c + g_c):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert g_e[0].abs().sum() > 0


def test_alrp_compiles_and_equals_eager():
    logits, labels, weights, loc = _alrp_case(30, 4, 2, decimals=1)
    module = ALRPLoss().attach('test')
    (out_e, g_e), (out_c, g_c) = _eager_and_compiled(
        lambda x, lx: module(x, labels, lx, weights), logits, loc)
    for a, b in zip(out_e + g_e, out_c + g_c):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert len(g_e) == 2 and all(g.abs().sum() > 0 for g in g_e)
