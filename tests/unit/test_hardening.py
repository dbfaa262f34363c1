"""What a demanding user hit when trying to break detloss, one test each.

- On NaN, Inf and mixed-dtype inputs the IoU family, the sigmoid focal loss and GHM-C
  equal their float64 computation on the same (rounded) inputs: a NaN is never turned
  into a plausible number.
- Registered modules reduce what float32 computed (half precision does not overflow).
- Errors for unknown options, mistyped registry names, non-tensor labels and
  non-numeric ``avg_factor`` name the class/argument.
"""
import functools
import itertools

import pytest
import torch

from detloss_plugin.functional import classification as C
from detloss_plugin.functional import ghm as G
from detloss_plugin.functional import iou_losses as IL
from factories import IOU_LOSSES as LOSSES

NAN, INF = float('nan'), float('inf')

# every configuration of the IoU-family functions
IOU_LOSSES = LOSSES

# (pred, target) rows: finite pairs, then NaN and Inf coordinates in either box
_FINITE_ROWS = [([0, 0, 10, 10], [1, 1, 9, 9]), ([0, 0, 4, 4], [2, 1, 7, 3]),
                ([1, 2, 3, 4], [10, 10, 12, 13])]
_NAN_ROWS = [([1, 1, 5, NAN], [1, 1, 5, 5]), ([NAN] * 4, [0, 0, 1, 1]),
             ([0, 0, 4, 4], [0, NAN, 4, 4])]
_INF_ROWS = [([0, 0, INF, 3], [0, 0, 4, 4]), ([-INF, 0, 2, 3], [0, 0, 4, 4]),
             ([1, 2, 3, 4], [1, 2, INF, 4])]
_ROWS = _FINITE_ROWS + _NAN_ROWS + _INF_ROWS
FINITE = slice(0, 3)
NAN_ROWS = slice(3, 6)

DTYPE_PAIRS = [(torch.float32, torch.float32), (torch.float64, torch.float64),
               (torch.float32, torch.float64), (torch.float64, torch.float32),
               (torch.float16, torch.float32), (torch.float32, torch.float16),
               (torch.bfloat16, torch.bfloat16)]
_TOL = {torch.float64: dict(rtol=1e-7, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-5),
        torch.float16: dict(rtol=1e-2, atol=1e-3), torch.bfloat16: dict(rtol=2e-2, atol=1e-2)}


def _tol(*dtypes):
    # the least precise of the dtypes involved decides
    order = [torch.bfloat16, torch.float16, torch.float32, torch.float64]
    return _TOL[min(dtypes, key=order.index)]


def _iou_value_and_grads(name, reference, pred_dtype, target_dtype, grad):
    """With ``reference``: the float64 computation on the inputs rounded to their
    dtypes, value and gradients cast back to those dtypes."""
    fn, kwargs = IOU_LOSSES[name]
    pred = torch.tensor([r[0] for r in _ROWS], dtype=torch.float64).to(pred_dtype)
    target = torch.tensor([r[1] for r in _ROWS], dtype=torch.float64).to(target_dtype)
    if reference:
        pred, target = pred.double(), target.double()
    pred.requires_grad_(grad)
    target.requires_grad_(grad)
    loss = fn(pred, target, **kwargs)
    if not grad:
        return loss.to(pred_dtype), None, None
    weight = torch.linspace(0.5, 2.0, len(_ROWS))
    gp, gt = torch.autograd.grad((loss.float() * weight).sum(), (pred, target))
    return loss.detach().to(pred_dtype), gp.to(pred_dtype), gt.to(target_dtype)


def assert_same_with_nan(a, b, what, **tol):
    """Same dtype, NaN and +-Inf at the same places, close elsewhere."""
    assert a.dtype == b.dtype, (what, a.dtype, b.dtype)
    assert torch.equal(a.isnan(), b.isnan()), f'{what}: NaN at {a.isnan()} vs {b.isnan()}'
    for sign in (1, -1):
        assert torch.equal(a == sign * INF, b == sign * INF), f'{what}: Inf differ'
    fin = a.isfinite() & b.isfinite()
    torch.testing.assert_close(a[fin], b[fin], **tol, msg=lambda m: f'{what}: {m}')


@pytest.mark.parametrize('pred_dtype,target_dtype', DTYPE_PAIRS)
@pytest.mark.parametrize('name', list(IOU_LOSSES))
def test_iou_nan_inf_mixed_dtypes_equal_float64(name, pred_dtype, target_dtype):
    """Values: equal to float64, NaN where float64 has NaN (a box with a NaN coordinate
    has a NaN loss, never -ln(eps) or any other number), Inf where it has Inf.
    Gradients: equal on the finite pairs; NaN wherever the float64 gradient is NaN for
    the pairs with a NaN coordinate. (Gradients at Inf coordinates are not compared:
    autograd's own 0 * Inf pattern there is no definition.) With and without autograd."""
    tol = _tol(pred_dtype, target_dtype)
    for grad in (False, True):
        fast = _iou_value_and_grads(name, False, pred_dtype, target_dtype, grad)
        plain = _iou_value_and_grads(name, True, pred_dtype, target_dtype, grad)
        assert fast[0].dtype == pred_dtype   # the functions return pred's dtype
        assert_same_with_nan(fast[0], plain[0], f'value (grad={grad})', **tol)
        assert fast[0][NAN_ROWS].isnan().all()
        if not grad:
            continue
        for k, what in ((1, 'grad pred'), (2, 'grad target')):
            f, p = fast[k], plain[k]
            assert f.dtype == p.dtype
            assert_same_with_nan(f[FINITE], p[FINITE], what, **tol)
            assert torch.equal(f[NAN_ROWS].isnan(), p[NAN_ROWS].isnan()), (
                what, f[NAN_ROWS], p[NAN_ROWS])


def test_iou_loss_log_mode_keeps_nan():
    # the reported case: -ln(max(IoU, eps)) of a NaN box was 16.118 = -ln(1e-7)
    pred = torch.tensor([[1.0, 1.0, 5.0, NAN]])
    target = torch.tensor([[1.0, 1.0, 5.0, 5.0]])
    for requires_grad in (False, True):
        loss = IL.iou_loss(pred.clone().requires_grad_(requires_grad), target, mode='log')
        assert loss.isnan().all()


def test_iou_mixed_dtypes_module():
    # float32 pred requiring grad, float64 target: the module accepts it (as the plain
    # path and mmdet do) and computes in float64, returning float32
    from detloss_plugin.models.losses import GIoULoss, IoULoss
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0]], requires_grad=True)
    target = torch.tensor([[1.0, 1.0, 9.0, 9.0]], dtype=torch.float64)
    for cls in (lambda: IoULoss(mode='linear'), GIoULoss):
        loss = cls()(pred, target)
        # IoU = 64 / 100 (target inside pred; GIoU's enclosing box is pred: no extra term)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, torch.tensor(0.36), rtol=1e-6, atol=0)
        loss.backward()
        assert pred.grad.dtype == torch.float32 and pred.grad.isfinite().all()
        pred.grad = None


# ---- classification: NaN, Inf and mixed dtypes against float64 ---------------------
def _cls_inputs(x_dtype, t_dtype):
    # finite logits, then NaN logits, then +-Inf logits; a NaN target in the last row
    x = torch.tensor([[0.5, -1.0, 2.0], [3.0, -4.0, 0.25], [-0.5, 1.5, -2.0],
                      [NAN, 1.0, 0.0], [INF, -INF, 3.0], [100.0, -100.0, 0.0]],
                     dtype=torch.float64)
    t = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, NAN]],
                     dtype=torch.float64)
    return x.to(x_dtype), t.to(t_dtype)


_FINITE_X = (slice(0, 3), slice(None))


def _check_cls(fn, x_dtype, t_dtype):
    """``fn`` on the inputs in their dtypes against ``fn`` in float64 on the same
    rounded inputs (value and gradient cast back to ``x_dtype``)."""
    x, t = _cls_inputs(x_dtype, t_dtype)
    out = {}
    for reference in (False, True):
        xr, tr = (x.double(), t.double()) if reference else (x, t)
        xx = xr.clone().requires_grad_()
        loss = fn(xx, tr)
        w = torch.linspace(0.5, 2.0, loss.numel()).view(loss.shape).to(loss.dtype)
        (g,) = torch.autograd.grad(loss, xx, w)
        with torch.no_grad():
            loss_ng = fn(xr, tr)
        out[reference] = (loss.detach().to(x_dtype), g.to(x_dtype), loss_ng.to(x_dtype))
    tol = _tol(x_dtype, t_dtype)
    f, p = out[False], out[True]
    assert f[0].dtype == x_dtype
    assert_same_with_nan(f[0], p[0], 'value', **tol)
    assert_same_with_nan(f[2], p[2], 'value without autograd', **tol)
    # a NaN logit or target: NaN loss and NaN gradient in both paths
    nan_in = x.isnan() | t.isnan()
    assert f[0][nan_in].isnan().all() and f[1][nan_in].isnan().all()
    assert p[1][nan_in].isnan().all()
    # finite inputs: same gradient
    assert_same_with_nan(f[1][_FINITE_X], p[1][_FINITE_X], 'grad', **tol)
    return f, p


CLS_DTYPES = [(torch.float32, torch.float32), (torch.float32, torch.float64),
              (torch.float16, torch.float32), (torch.float64, torch.float32),
              (torch.float16, torch.float16), (torch.bfloat16, torch.float32)]


@pytest.mark.parametrize('x_dtype,t_dtype', CLS_DTYPES)
@pytest.mark.parametrize('alpha,gamma', list(itertools.product(
    [0.25, None, [0.1, 0.5, 0.9]], [2.0, 0.5, 0.0, 1.0, 1.5])))
def test_focal_nan_inf_mixed_dtypes_equal_float64(alpha, gamma, x_dtype, t_dtype):
    _check_cls(functools.partial(C.sigmoid_focal_loss, alpha=alpha, gamma=gamma), x_dtype,
               t_dtype)


@pytest.mark.parametrize('x_dtype,t_dtype', CLS_DTYPES)
@pytest.mark.parametrize('bins,momentum', [(10, 0.0), (30, 0.75), (1, 0.0)])
def test_ghmc_nan_inf_mixed_dtypes_equal_float64(bins, momentum, x_dtype, t_dtype):
    """A NaN element falls in the last region (where torch.bucketize puts NaN), so the
    other elements get the weights of float64; its loss and gradient are NaN."""
    valid = torch.ones(6, 3, dtype=torch.bool)
    valid[2, 1] = False
    acc = torch.linspace(1.0, 3.0, bins)
    totals = {}

    def run(x, t):
        loss, total, new_acc = G.ghmc_loss(x, t, valid, bins, momentum,
                                           acc if momentum else None)
        totals[x.dtype == torch.float64] = (total, new_acc)
        return loss
    _check_cls(run, x_dtype, t_dtype)
    ft, pt = totals[x_dtype == torch.float64], totals[True]
    assert float(ft[0]) == float(pt[0])
    if momentum:
        torch.testing.assert_close(ft[1], pt[1], rtol=0, atol=0)


# ---- DIoU-NMS with beta != 1: same decisions, as fast as beta = 1 ---------------------
def _nms_reference():
    from test_diou_nms import slow_diou_nms
    return slow_diou_nms


def _clustered_nms_input(n, seed):
    """Boxes around n / 10 objects: long suppression chains and many pairs whose IoU is
    above the threshold but whose distance penalty spares them (beta decides)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(1, n // 10), 2, generator=g) * 300
    pick = torch.randint(0, centres.shape[0], (n,), generator=g)
    xy = centres[pick] + torch.randn(n, 2, generator=g) * 6
    wh = 20 + 20 * torch.rand(n, 2, generator=g)
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


@pytest.mark.parametrize('backend', ['c', 'torch'])
@pytest.mark.parametrize('beta', [0.3, 0.6, 0.8, 1.5, 3.0])
def test_diou_nms_any_beta_matches_slow_reference(beta, backend):
    from detloss_plugin.functional import diou_nms
    slow = _nms_reference()
    for seed, n, thr in ((0, 400, 0.5), (1, 250, 0.3), (2, 37, 0.6)):
        boxes, scores = _clustered_nms_input(n, seed)
        keep = diou_nms(boxes, scores, thr, beta=beta, backend=backend)
        assert keep.tolist() == slow(boxes, scores, thr, beta), (seed, n, thr)
    # beta matters on this input (else the test could not tell betas apart)
    boxes, scores = _clustered_nms_input(400, 0)
    assert (diou_nms(boxes, scores, 0.5, beta=beta, backend=backend).numel()
            != diou_nms(boxes, scores, 0.5, beta=1.0, backend=backend).numel())


def test_diou_nms_any_beta_small_sets_match_reference():
    """Every count from 1 to 40 (the C kernel skips 8 candidate flags at a time: the
    tail and candidates in the last positions must be found)."""
    from detloss_plugin.functional import diou_nms
    slow = _nms_reference()
    for n in range(1, 41):
        boxes, scores = _clustered_nms_input(n, 100 + n)
        boxes = boxes * 0.2   # crowd them: most pairs overlap
        for beta in (0.6, 2.0):
            keep = diou_nms(boxes, scores, 0.4, beta=beta, backend='c')
            assert keep.tolist() == slow(boxes, scores, 0.4, beta), (n, beta)


# ---- modules: half precision reduced in float32 -----------------------------------
def _module_cases():
    from detloss_plugin.models import losses as L
    big = torch.full((1, 4), 5e4)
    return {
        # (module, pred, target, float32 value of the mean loss, worked by hand)
        # MSE: an error of 1e4 on each of 4 coordinates: (1e4)^2 = 1e8 > float16's 65504
        'mse': (L.MSELoss(), torch.zeros(1, 4), torch.full((1, 4), 1e4), 1e8),
        # L1: -5e4 against 5e4 (both float16 numbers): |x| = 1e5 > 65504
        'l1': (L.L1Loss(), -big, big, 1e5),
        # smooth L1 (beta 1): |x| - 0.5 = 99999.5
        'smooth_l1': (L.SmoothL1Loss(), -big, big, 1e5 - 0.5),
    }


@pytest.mark.parametrize('case', ['mse', 'l1', 'smooth_l1'])
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_module_reduces_what_float32_computed(case, dtype):
    """In float16 the element-wise loss itself overflowed before the reduction (it was
    cast back to the input dtype first): MSE of a 1e4 error returned Inf."""
    module, pred, target, expected = _module_cases()[case]
    pred = pred.to(dtype).requires_grad_()
    loss = module(pred, target.to(dtype))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # the float32 computation on the same (rounded) inputs
    ref = module(pred.detach().float(), target.to(dtype).float())
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
    assert abs(loss.item() - expected) <= 1e-2 * abs(expected)
    (g,) = torch.autograd.grad(loss, pred)
    assert g.dtype == dtype and torch.isfinite(g).all()   # saturated, never Inf


def test_module_half_precision_none_reduction_is_float32():
    from detloss_plugin.models.losses import MSELoss
    loss = MSELoss(reduction='none')(torch.zeros(1, 4, dtype=torch.float16),
                                     torch.full((1, 4), 1e4, dtype=torch.float16))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, torch.full((1, 4), 1e8))


# ---- errors that name what is wrong -------------------------------------------------
def test_unknown_option_names_the_public_class_and_the_option():
    from detloss_plugin.models.losses import (AlphaIoULoss, CIoULoss, FocalLoss, GHMC,
                                              MSELoss)
    # explicit signatures: Python's own message, naming the class
    with pytest.raises(TypeError, match=r"CIoULoss\.__init__\(\) got an unexpected keyword "
                                        r"argument 'alpha_gat'"):
        CIoULoss(alpha_gat=True)
    with pytest.raises(TypeError, match=r"FocalLoss\.__init__\(\).*'gama'"):
        FocalLoss(gama=2.0)
    with pytest.raises(TypeError, match=r"GHMC\.__init__\(\).*'bin'"):
        GHMC(bin=10)
    # options passed on to the base: the same message, naming the public class
    with pytest.raises(TypeError, match=r"MSELoss\.__init__\(\) got an unexpected keyword "
                                        r"argument 'zzz'"):
        MSELoss(zzz=1)
    with pytest.raises(TypeError, match=r"AlphaIoULoss\.__init__\(\).*'bse'"):
        AlphaIoULoss(bse='giou')
    # valid options, positional or keyword, still work; copies and pickles too
    import copy
    import pickle
    m = CIoULoss(1e-5, 'sum', loss_weight=2.0, alpha_gate=True)  # mmdet's positional order
    assert m.alpha_gate and m.eps == 1e-5 and m.reduction == 'sum' and m.loss_weight == 2.0
    assert copy.deepcopy(m).alpha_gate and pickle.loads(pickle.dumps(m)).loss_weight == 2.0


def test_mistyped_registry_name_suggests_the_closest():
    from mmengine.registry import MODELS as ROOT

    from detloss_plugin.registry import MODELS
    with pytest.raises(KeyError, match=r"'GIoULos' is not registered.*did you mean "
                                       r"detloss_plugin\.GIoULoss\?"):
        ROOT.build(dict(type='detloss_plugin.GIoULos'))
    # an unprefixed name is looked up in the default scope's registry: pin it, since an
    # earlier test's Runner may have left 'mmdet' as the current default scope
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('detloss_plugin'):
        with pytest.raises(KeyError, match=r'did you mean detloss_plugin\.FocalLoss\?'):
            MODELS.build(dict(type='FocalLos'))
    # found names and names with no close match behave as in mmengine
    assert type(ROOT.build(dict(type='detloss_plugin.GIoULoss'))).__name__ == 'GIoULoss'
    assert MODELS.get('Completely_Unrelated_Name') is None
    assert 'GIoULos' not in MODELS and 'GIoULoss' in MODELS


@pytest.mark.parametrize('use_sigmoid', [True, False])
@pytest.mark.parametrize('name', ['FocalLoss', 'CrossEntropyLoss', 'AnchorLoss',
                                  'SymmetricCELoss', 'GHMC'])
def test_non_tensor_label_names_the_argument(name, use_sigmoid):
    from detloss_plugin.models import losses as L
    if name == 'GHMC' and not use_sigmoid:
        pytest.skip('GHM-C has no softmax form')
    module = getattr(L, name)(use_sigmoid=use_sigmoid)
    score = torch.zeros(2, 3 if use_sigmoid else 4)
    for bad in ((0, 1), [0, 1], None, 'cat'):
        with pytest.raises((TypeError, ValueError), match=r'^label must be'):
            module(score, bad)


@pytest.mark.parametrize('bad', ['4', [4.0], True, torch.tensor([1.0, 2.0])])
def test_avg_factor_must_be_a_number(bad):
    from detloss_plugin.models.losses import FocalLoss, GIoULoss
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    with pytest.raises((TypeError, ValueError), match=r'^avg_factor must be a number'):
        FocalLoss()(torch.zeros(2, 3), torch.tensor([0, 3]), avg_factor=bad)
    with pytest.raises((TypeError, ValueError), match=r'^avg_factor must be a number'):
        GIoULoss()(boxes, boxes, avg_factor=bad)
    # numbers and one-element tensors are fine: sum / avg_factor
    loss = FocalLoss(reduction='sum')(torch.zeros(2, 3), torch.tensor([0, 3]))
    for good in (4, 4.0, torch.tensor(4.0), torch.tensor([4.0])):
        torch.testing.assert_close(
            FocalLoss()(torch.zeros(2, 3), torch.tensor([0, 3]), avg_factor=good).reshape(()),
            loss / 4, rtol=1e-6, atol=0)


# ---- the reference repositories as they are now ------------------------------------
def hedgefair_default_focal(preds, labels, num_classes, alpha=0.25, gamma=2):
    """hedgefair/Focal-Loss-Pytorch's ``focal_loss`` (Focal_Loss.py, HEAD of 2019-09-18)
    with its defaults, transcribed operation by operation: a number alpha becomes the
    per-class weights [alpha, 1 - alpha, ..., 1 - alpha] (class 0 as the background);
    softmax, log of it, gather at the label, -(1 - p)^gamma log p, times alpha[label];
    mean over the samples (size_average=True). Returns (per-sample, mean)."""
    class_alpha = torch.zeros(num_classes, dtype=preds.dtype)
    class_alpha[0] += alpha
    class_alpha[1:] += (1 - alpha)
    preds = preds.view(-1, preds.size(-1))
    p = torch.softmax(preds, dim=1)
    logp = torch.log(p)
    p = p.gather(1, labels.view(-1, 1))
    logp = logp.gather(1, labels.view(-1, 1))
    a = class_alpha.gather(0, labels.view(-1))
    loss = -torch.mul(torch.pow((1 - p), gamma), logp)
    loss = torch.mul(a, loss.t())
    return loss.view(-1), loss.mean()


def test_softmax_focal_equals_hedgefair_default():
    """hedgefair's default is alpha = 0.25 as per-class weights [0.25, 0.75, 0.75, ...]
    (not 'no alpha'): detloss reproduces it with that per-class alpha, background
    first; in an mmdet RoI head the background is the last column."""
    from detloss_plugin.models.losses import FocalLoss
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(9, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 0, 0, 2, 1, 3])
    ref, ref_mean = hedgefair_default_focal(x, y, num_classes=4)
    ours = C.softmax_focal_loss(x, y, alpha=[0.25, 0.75, 0.75, 0.75], gamma=2.0)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0],
                               torch.autograd.grad(ref.sum(), x)[0])
    # detloss's softmax default (no weighting) is not hedgefair's default
    assert not torch.allclose(C.softmax_focal_loss(x, y), ref)
    # the module, background as the last column: move class 0 to the end
    perm = torch.tensor([1, 2, 3, 0])
    y_last = torch.tensor([3, 0, 1, 2, 3, 3, 1, 0, 2])   # label 0 -> 3, k -> k - 1
    module = FocalLoss(use_sigmoid=False, alpha=[0.75] * 3 + [0.25], gamma=2.0)
    torch.testing.assert_close(module(x[:, perm], y_last), ref_mean)


def hanxunh_current_sce(pred, labels, alpha, beta, num_classes):
    """HanxunH/SCELoss-Reproduce's current ``SCELoss.forward`` (loss.py, last changed
    2020-02-14), transcribed: CE = torch.nn.CrossEntropyLoss (exact, mean); RCE with p
    clamped to [1e-7, 1] and the one-hot label clamped to [1e-4, 1]; alpha * CE +
    beta * mean(RCE). Returns (per-sample, the repository's scalar)."""
    ce = torch.nn.functional.cross_entropy(pred, labels, reduction='none')
    p = torch.softmax(pred, dim=1).clamp(min=1e-7, max=1.0)
    q = torch.nn.functional.one_hot(labels, num_classes).to(pred.dtype).clamp(min=1e-4, max=1.0)
    rce = -torch.sum(p * torch.log(q), dim=1)
    return alpha * ce + beta * rce, alpha * ce.mean() + beta * rce.mean()


@pytest.mark.parametrize('alpha,beta', [(0.1, 1.0), (6.0, 0.1)])
def test_softmax_sce_equals_current_hanxunh(alpha, beta):
    """The current reference's CE is exact: with A = ln 1e-4 detloss equals it, value
    and gradient, wherever no probability is below 1e-7; below, the reference's p
    clamp adds -A (1e-7 - p_k) per such class."""
    import math

    from detloss_plugin.models.losses import SymmetricCELoss
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(8, 5, generator=g, dtype=torch.float64) * 2).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    assert (torch.softmax(x, 1) > 1e-7).all()
    ref, ref_scalar = hanxunh_current_sce(x, y, alpha, beta, 5)
    ours = C.softmax_symmetric_ce(x, y, alpha, beta, log_zero=math.log(1e-4))
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0],
                               torch.autograd.grad(ref.sum(), x)[0])
    module = SymmetricCELoss(use_sigmoid=False, alpha=alpha, beta=beta,
                             log_zero=math.log(1e-4))
    torch.testing.assert_close(module(x, y), ref_scalar)
    # a probability below the clamp: the difference is exactly the clamp's term
    x2 = x.detach().clone()
    x2[0, 3] = -40.0
    p = torch.softmax(x2, 1)
    assert p[0, 3] < 1e-7
    ref2, _ = hanxunh_current_sce(x2, y, alpha, beta, 5)
    ours2 = C.softmax_symmetric_ce(x2, y, alpha, beta, log_zero=math.log(1e-4))
    extra = beta * -math.log(1e-4) * (1e-7 - p[0, 3])
    torch.testing.assert_close(ref2[0] - ours2[0], extra, rtol=1e-6, atol=1e-15)
    torch.testing.assert_close(ref2[1:], ours2[1:])


def test_nms_benchmark_suite_contract():
    """tools/benchmarks/nms.py: run(args) gives torch.utils.benchmark Measurements
    for DIoU-NMS at beta 1.0 and 0.6 (and mmcv's nms when importable), extras(args)
    the kept counts, which are the functions' own."""
    import importlib.util
    import os.path as osp
    from types import SimpleNamespace

    from torch.utils.benchmark.utils.common import Measurement

    spec = importlib.util.spec_from_file_location(
        'detloss_bench_nms_contract',
        osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
                 'benchmarks', 'nms.py'))
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    args = SimpleNamespace(device='cpu', threads=[1], quick=True)
    results = suite.run(args)
    assert results and all(isinstance(m, Measurement) for m in results)
    names = {m.task_spec.sub_label for m in results}
    assert {'detloss diou_nms beta=1.0', 'detloss diou_nms beta=0.6'} <= names
    assert {m.task_spec.description for m in results} == {'n=1000'}
    assert all(m.median > 0 for m in results)
    extras = suite.extras(args)
    boxes, scores = suite.clustered(1000)
    for beta in (1.0, 0.6):
        assert extras[f'kept detloss diou_nms beta={beta} n=1000'] == len(
            _nms_reference()(boxes, scores, 0.5, beta))
