"""AP-loss and DR loss on the inputs a demanding user tries: integer label dtypes, NaN
and infinite scores, saturated ramps, empty batches, extreme temperatures, tensor
``avg_factor``, bad ``label_weights`` and options, double backward; and the custom
operator (``torch.library.opcheck``, the torch path without a C compiler)."""
import math

import pytest
import torch

from detloss_plugin.functional import ranking as R
from detloss_plugin.functional import ranking_core
from detloss_plugin.models.losses import APLoss, DRLoss
from test_ranking_functional import _case, slow_ap_loss

D = torch.float64
PATHS = pytest.mark.parametrize('cpu_kernel', [False, True], ids=['torch', 'C'])


def _reproducer():
    torch.manual_seed(0)
    s = torch.randn(12, 3)
    lab = torch.full((12,), 3)
    lab[:3] = torch.arange(3)
    return s, lab


def _ap(x, labels, weights=None, **kw):
    x = x.clone().requires_grad_(True)
    loss = R.ap_loss(x, labels, weights, **kw)
    loss.backward()
    return loss, x.grad


# ------------------------------------------------------------------ labels and kernel
@PATHS
@pytest.mark.parametrize('dtype', [torch.uint8, torch.int8, torch.int16, torch.int32,
                                   torch.int64])
def test_every_integer_label_dtype_gives_the_int64_value(dtype, cpu_kernel):
    s, lab = _reproducer()
    ref = slow_ap_loss(s.double(), lab, None)[0]
    for fn in (R.ap_loss, R.dr_loss):
        kw = dict(cpu_kernel=cpu_kernel) if fn is R.ap_loss else {}
        assert fn(s, lab.to(dtype), **kw).item() == pytest.approx(fn(s, lab, **kw).item(),
                                                                  abs=1e-7)
    assert R.ap_loss(s.double(), lab.to(dtype), cpu_kernel=cpu_kernel).item() == \
        pytest.approx(ref, abs=1e-12)


@PATHS
@pytest.mark.parametrize('where', ['negative', 'positive', 'ignored'])
def test_nan_score_gives_nan_on_every_path(where, cpu_kernel):
    s, lab = _reproducer()
    w = torch.ones(12)
    w[11] = 0
    row, col = {'negative': (5, 1), 'positive': (1, 1), 'ignored': (11, 0)}[where]
    s[row, col] = math.nan
    loss, grad = _ap(s, lab, w, cpu_kernel=cpu_kernel)
    assert math.isnan(loss.item()) and torch.isnan(grad).all()
    assert math.isnan(R.dr_loss(s, lab, w).item())


def test_torch_path_runs_without_a_c_compiler(monkeypatch):
    # no compiler: the library reports it cannot be built, and the torch path runs
    s, lab = _reproducer()
    expected = _ap(s, lab, cpu_kernel=False)
    monkeypatch.setattr(ranking_core.KERNEL, '_bound', None)
    monkeypatch.setattr(ranking_core.KERNEL, '_failed', True)
    got = _ap(s, lab)
    assert got[0].item() == expected[0].item()
    torch.testing.assert_close(got[1], expected[1], atol=0, rtol=0)
    with pytest.raises(RuntimeError, match='could not be built'):
        R.ap_loss(s, lab, cpu_kernel=True)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_custom_op_passes_opcheck(dtype):
    logits, labels, weights = _case(30, 4, 3, dtype=dtype)
    used = weights > 0
    for mode in (0, 1):
        for avg, number in ((None, 0.0), (torch.tensor(3.0, dtype=dtype), 0.0), (None, 2.5)):
            torch.library.opcheck(torch.ops.detloss.ap_loss.default,
                                  (logits.clone().requires_grad_(True), labels, used, 1.0,
                                   avg, number, mode))


def test_double_backward_says_ap_loss_is_not_twice_differentiable():
    logits, labels, weights = _case(8, 3, 1)
    x = logits.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match='AP-loss is not twice differentiable'):
        torch.autograd.grad(R.ap_loss(x, labels, weights), x, create_graph=True)


# --------------------------------------------------------------- saturated and infinite
@PATHS
@pytest.mark.parametrize('scale, delta', [(1e16, 1.0), (1.0, 1e-16), (1e14, 1.0)])
def test_saturated_ramps_give_the_exact_step_value(scale, delta, cpu_kernel):
    # the scores 1e16 apart at least: H is the exact step; no two scores tie, so the
    # value is that of scores * 1e6 with delta 1 (0.8532 here: the slow loop agrees)
    s, lab = _reproducer()
    x = s.double() * scale
    loss, grad = _ap(x, lab, delta=delta, cpu_kernel=cpu_kernel)
    ref_loss, ref_update = slow_ap_loss(x, lab, None, delta=delta)
    step_loss = _ap(s.double() * 1e6, lab)[0]
    assert loss.item() == pytest.approx(ref_loss, abs=1e-12)
    assert loss.item() == pytest.approx(step_loss.item(), abs=1e-12)
    assert loss.item() == pytest.approx(0.8531746, abs=1e-6)
    torch.testing.assert_close(grad, torch.tensor(ref_update, dtype=D), atol=1e-7, rtol=0)
    assert grad.abs().sum() > 0.5


@PATHS
def test_infinite_scores_are_extreme_scores(cpu_kernel):
    s, lab = _reproducer()
    s = s.double()
    for value in (math.inf, -math.inf):
        x = s.clone()
        x[7, 1] = value  # a negative entry
        loss, grad = _ap(x, lab, cpu_kernel=cpu_kernel)
        # the same as a negative far above / below every positive
        far = s.clone()
        far[7, 1] = 1e3 if value > 0 else -1e3
        ref_loss, ref_grad = _ap(far, lab, cpu_kernel=cpu_kernel)
        assert torch.isfinite(grad).all()
        assert loss.item() == pytest.approx(ref_loss.item(), abs=1e-12)
        torch.testing.assert_close(grad, ref_grad, atol=1e-12, rtol=0)
    # infinite positives: finite value and update
    x = s.clone()
    x[1, 1], x[2, 2] = math.inf, -math.inf
    loss, grad = _ap(x, lab, cpu_kernel=cpu_kernel)
    assert math.isfinite(loss.item()) and torch.isfinite(grad).all()
    x = s.clone().requires_grad_(True)
    y = x.detach().clone()
    y[7, 1] = math.inf
    y.requires_grad_(True)
    R.dr_loss(y, lab).backward()
    assert torch.isfinite(y.grad).all()


# ----------------------------------------------------------------------------- DR loss
def test_dr_loss_with_no_anchor_is_zero_with_graph():
    x = torch.zeros(0, 3, requires_grad=True)
    loss = R.dr_loss(x, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize('name', ['neg_lambda', 'pos_lambda'])
def test_dr_loss_small_temperatures_give_finite_gradients(name):
    # well separated: positives at +8, negatives at -8; in float32 exp((p - p_max) /
    # 0.01) of the masked entries (about exp(100)) overflowed before
    logits = torch.full((20, 3), -8.0)
    labels = torch.full((20,), 3)
    labels[:5] = torch.arange(5) % 3
    logits[torch.arange(5), labels[:5]] = 8.0
    x = logits.clone().requires_grad_(True)
    loss = R.dr_loss(x, labels, **{name: 0.01})
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    direct = R.dr_loss(logits, labels, **{name: 0.01})
    assert loss.item() == direct.item()


# ------------------------------------------------------------------------ avg_factor
@pytest.mark.parametrize('fn', [R.ap_loss, R.dr_loss])
def test_tensor_avg_factor_is_validated_like_numbers(fn):
    logits, labels, weights = _case(10, 3, 2)
    with pytest.raises(ValueError, match=r'avg_factor must be a number or a tensor of one'):
        fn(logits, labels, weights, avg_factor=torch.tensor([2.0, 3.0]))
    for bad in (0.0, -2.0, math.nan, math.inf):
        with pytest.raises(ValueError, match='avg_factor'):
            fn(logits, labels, weights, avg_factor=torch.tensor(bad))
        with pytest.raises(ValueError, match='avg_factor'):
            fn(logits, labels, weights, avg_factor=bad)
    one = fn(logits, labels, weights, avg_factor=torch.tensor([4.0]))
    assert one.shape == ()
    assert one.item() == pytest.approx(fn(logits, labels, weights, avg_factor=4.0).item(),
                                       abs=1e-14)


# --------------------------------------------------------------------- label_weights
@pytest.mark.parametrize('fn', [R.ap_loss, R.dr_loss])
def test_label_weights_negative_or_nan_are_refused(fn):
    logits, labels, _ = _case(6, 3, 0)
    for bad in (-1.0, math.nan):
        w = torch.ones(6, dtype=D)
        w[2] = bad
        with pytest.raises(ValueError, match='label_weights must be >= 0'):
            fn(logits, labels, w)
    # any positive weight marks the anchor used, whatever its size
    w = torch.ones(6, dtype=D)
    w[2] = 0.25
    assert fn(logits, labels, w).item() == pytest.approx(fn(logits, labels).item(),
                                                         abs=1e-14)


# -------------------------------------------------------------------------- options
@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_non_finite_options_are_refused(bad):
    x, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 3])
    for call, name in ((lambda: R.ap_loss(x, labels, delta=bad), 'delta'),
                       (lambda: R.dr_loss(x, labels, tau=bad), 'tau'),
                       (lambda: R.dr_loss(x, labels, margin=bad), 'margin'),
                       (lambda: APLoss(delta=bad), 'delta'),
                       (lambda: APLoss(loss_weight=bad), 'loss_weight'),
                       (lambda: DRLoss(loss_weight=bad), 'loss_weight'),
                       (lambda: DRLoss(margin=bad), 'margin'),
                       (lambda: DRLoss(neg_lambda=bad), 'neg_lambda')):
        with pytest.raises(ValueError, match=f'{name} must be a finite number'):
            call()


def test_unattached_module_names_the_heads():
    x, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match='RankingRetinaHead'):
        APLoss()(x, labels)
    assert APLoss().attach('test')(x, labels).item() == R.ap_loss(x, labels).item()


def test_operator_boundary_converts_and_refuses():
    # labels of any integer dtype and a non-contiguous float32 logits tensor are
    # converted at the operator's boundary; half precision is refused there (the
    # functions upcast it first)
    logits, labels, weights = _case(12, 3, 5, dtype=torch.float32)
    used = weights > 0
    ref = torch.ops.detloss.ap_loss(logits, labels, used, 1.0, None, 0.0, 1)
    strided = torch.stack([logits, logits], dim=2)[:, :, 0]  # the same values, strided
    assert not strided.is_contiguous()
    for lab in (labels.int(), labels.to(torch.int16)):
        got = torch.ops.detloss.ap_loss(strided, lab, used, 1.0, None, 0.0, 1)
        assert got[0].item() == ref[0].item()
        torch.testing.assert_close(got[1], ref[1], atol=0, rtol=0)
    with pytest.raises(TypeError, match='float32 or float64'):
        torch.ops.detloss.ap_loss(logits.half(), labels, used, 1.0, None, 0.0, 1)
    with pytest.raises(ValueError, match='labels and used'):
        torch.ops.detloss.ap_loss(logits, labels[:5], used, 1.0, None, 0.0, 1)
