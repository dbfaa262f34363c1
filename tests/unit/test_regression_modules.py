"""The registered regression-loss modules: mmdet's call contract (reduction, weight,
avg_factor, loss_weight, reduction_override), zero weights, empty input, bad input,
and the registry (reachable as ``detloss_plugin.<Name>`` from mmdet's default scope,
mmdet's own same-named classes untouched).
"""
import math

import pytest
import torch

import detloss_plugin  # noqa: F401  (registers everything)
from detloss_plugin.functional import (ciou_loss, diou_loss, eiou_loss, focal_eiou_loss,
                                       focal_l1_loss, giou_loss, iou_loss, l1_loss, mse_loss,
                                       smooth_l1_loss)
from detloss_plugin.models.losses import (CIoULoss, DIoULoss, EfficientIoULoss, FocalEIoULoss,
                                          FocalL1Loss, GIoULoss, IoULoss, L1Loss, MSELoss,
                                          SmoothL1Loss)

F64 = torch.float64
AVG_EPS = torch.finfo(torch.float32).eps  # mmdet's weight_reduce_loss adds it to avg_factor

# name -> (module factory, the functional form it must equal, per_box)
CASES = {
    # the classes sharing a name with mmdet's default to mmdet's eps 1e-6
    'IoULoss': (IoULoss, lambda p, t: iou_loss(p, t, 'log', eps=1e-6), True),
    'IoULoss_linear': (lambda **k: IoULoss(mode='linear', **k),
                       lambda p, t: iou_loss(p, t, 'linear', eps=1e-6), True),
    'IoULoss_square': (lambda **k: IoULoss(mode='square', **k),
                       # 1 - IoU^2 computed as l (2 - l), l = 1 - IoU
                       lambda p, t: (lambda l: l * (2 - l))(iou_loss(p, t, 'linear', eps=1e-6)),
                       True),
    'GIoULoss': (GIoULoss, lambda p, t: giou_loss(p, t, eps=1e-6), True),
    'DIoULoss': (DIoULoss, lambda p, t: diou_loss(p, t, eps=1e-6), True),
    'CIoULoss': (CIoULoss, lambda p, t: ciou_loss(p, t, eps=1e-6, alpha_gate=True), True),
    'CIoULoss_ungated': (lambda **k: CIoULoss(alpha_gate=False, **k),
                         lambda p, t: ciou_loss(p, t, eps=1e-6), True),
    'CIoULoss_authors': (lambda **k: CIoULoss(authors_gradient=True, **k),
                         lambda p, t: ciou_loss(p, t, eps=1e-6, alpha_gate=True,
                                                authors_gradient=True), True),
    'CIoULoss_eps': (lambda **k: CIoULoss(eps=1e-3, **k),
                     lambda p, t: ciou_loss(p, t, eps=1e-3, alpha_gate=True), True),
    'EfficientIoULoss': (EfficientIoULoss, eiou_loss, True),
    'FocalEIoULoss': (FocalEIoULoss, lambda p, t: focal_eiou_loss(p, t, detach_weight=True),
                      True),
    'FocalEIoULoss_paper': (lambda **k: FocalEIoULoss(detach_weight=False, **k),
                            focal_eiou_loss, True),
    'FocalEIoULoss_gamma2_detach': (
        lambda **k: FocalEIoULoss(gamma=2.0, detach_weight=True, **k),
        lambda p, t: focal_eiou_loss(p, t, gamma=2.0, detach_weight=True), True),
    'L1Loss': (L1Loss, l1_loss, False),
    'MSELoss': (MSELoss, mse_loss, False),
    'SmoothL1Loss': (SmoothL1Loss, smooth_l1_loss, False),
    'SmoothL1Loss_beta0.3': (lambda **k: SmoothL1Loss(beta=0.3, **k),
                             lambda p, t: smooth_l1_loss(p, t, beta=0.3), False),
    'FocalL1Loss': (FocalL1Loss, focal_l1_loss, False),
    'FocalL1Loss_beta0.5_alpha2': (lambda **k: FocalL1Loss(beta=0.5, alpha=2.0, **k),
                                   lambda p, t: focal_l1_loss(p, t, beta=0.5, alpha=2.0),
                                   False),
}
NAMES = sorted(CASES)
CLASSES = [IoULoss, GIoULoss, DIoULoss, CIoULoss, EfficientIoULoss, FocalEIoULoss,
           L1Loss, MSELoss, SmoothL1Loss, FocalL1Loss]


def pairs(n=7, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    ctr = 20 + 60 * torch.rand(n, 2, generator=g, dtype=F64)
    size = 4 + 30 * torch.rand(n, 2, generator=g, dtype=F64)
    t_ctr = ctr + (torch.rand(n, 2, generator=g, dtype=F64) - 0.5) * size
    t_size = size * torch.exp(torch.rand(n, 2, generator=g, dtype=F64) - 0.5)
    pred = torch.cat([ctr - size / 2, ctr + size / 2], 1)
    target = torch.cat([t_ctr - t_size / 2, t_ctr + t_size / 2], 1)
    # box deltas for the coordinate losses live on a smaller scale: mix both branches
    return pred.to(dtype), target.to(dtype)


def weights(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, 4, generator=g, dtype=F64)
    w[0] = 0  # one negative
    return w


def expected(name, pred, target, weight=None, reduction='mean', avg_factor=None,
             loss_weight=1.0):
    """mmdet's semantics written out: element loss * weight, then reduce."""
    _, fn, per_box = CASES[name]
    loss = fn(pred, target)
    if weight is not None:
        if per_box:
            weight = weight.mean(-1) if weight.dim() == 2 else weight
        elif weight.dim() == 1:
            weight = weight[:, None]
        loss = loss * weight
    if reduction == 'none':
        out = loss
    elif avg_factor is not None:
        out = loss.sum() / (avg_factor + AVG_EPS)
    elif reduction == 'sum':
        out = loss.sum()
    else:
        out = loss.mean()
    return loss_weight * out


@pytest.mark.parametrize('name', NAMES)
def test_module_equals_functional(name):
    factory, fn, per_box = CASES[name]
    pred, target = pairs()
    out = factory(reduction='none')(pred, target)
    torch.testing.assert_close(out, fn(pred, target), rtol=0, atol=0)
    assert out.shape == ((7,) if per_box else (7, 4))
    # reduction_override wins over the configured reduction, both ways
    torch.testing.assert_close(factory(reduction='sum')(pred, target, reduction_override='none'),
                               out, rtol=0, atol=0)
    torch.testing.assert_close(factory(reduction='none')(pred, target, reduction_override='sum'),
                               out.sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize('name', NAMES)
def test_reductions_weights_avg_factor_loss_weight(name):
    factory, _, per_box = CASES[name]
    pred, target = pairs()
    w4 = weights(7)
    w1 = w4[:, 1]
    module = factory(loss_weight=2.5)
    assert module.reduction == 'mean' and module.loss_weight == 2.5
    for weight in (None, w1, w4):
        for reduction in ('none', 'mean', 'sum'):
            got = module(pred, target, weight, reduction_override=reduction)
            want = expected(name, pred, target, weight, reduction, loss_weight=2.5)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        # mean with avg_factor: sum / avg_factor (float and tensor)
        for avg in (3.0, torch.tensor(3.0, dtype=F64)):
            got = module(pred, target, weight, avg_factor=avg)
            want = expected(name, pred, target, weight, 'mean', avg_factor=3.0, loss_weight=2.5)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        # 'none' ignores avg_factor (mmdet's behaviour)
        torch.testing.assert_close(
            module(pred, target, weight, avg_factor=3.0, reduction_override='none'),
            expected(name, pred, target, weight, 'none', loss_weight=2.5))
        with pytest.raises(ValueError, match='avg_factor'):
            module(pred, target, weight, avg_factor=3.0, reduction_override='sum')
    # the (n, 4) weight of a per-box loss is the mean over the coordinates
    if per_box:
        torch.testing.assert_close(module(pred, target, w4, reduction_override='none'),
                                   module(pred, target, w4.mean(-1), reduction_override='none'))
    # a hand check of mean with avg_factor: sum of the weighted element losses / 3
    plain = factory(reduction='none')(pred, target)
    wb = w4.mean(-1) if per_box else w4
    torch.testing.assert_close(factory()(pred, target, w4, avg_factor=3.0),
                               (plain * wb).sum() / (3.0 + AVG_EPS))


@pytest.mark.parametrize('name', NAMES)
def test_zero_weight_gives_exact_zero_with_graph(name):
    """Heads pass every anchor: negatives with zero weight and zero targets."""
    factory, _, per_box = CASES[name]
    pred, _ = pairs()
    target = torch.zeros_like(pred)
    module = factory()
    for shape in ((7,), (7, 4)):
        zero = torch.zeros(shape, dtype=F64)
        for reduction, avg in (('mean', None), ('sum', None), ('mean', 5.0), ('mean', 0.0)):
            p = pred.clone().requires_grad_()
            loss = module(p, target, zero, avg_factor=avg, reduction_override=reduction)
            assert loss.requires_grad and loss.grad_fn is not None
            assert loss.item() == 0.0
            loss.backward()
            assert torch.equal(p.grad, torch.zeros_like(p.grad))
        p = pred.clone().requires_grad_()
        loss = module(p, target, zero, reduction_override='none')
        assert torch.equal(loss.detach(), torch.zeros_like(loss))
    # with non-zero weight the zero targets give a finite loss and gradient
    p = pred.clone().requires_grad_()
    loss = module(p, target, torch.ones(7, dtype=F64))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and torch.isfinite(p.grad).all()


@pytest.mark.parametrize('name', NAMES)
def test_empty_input(name):
    factory, _, per_box = CASES[name]
    module = factory()
    for weight in (None, torch.zeros(0, dtype=F64), torch.zeros(0, 4, dtype=F64)):
        for reduction, avg in (('mean', None), ('sum', None), ('mean', 0.0), ('mean', 4.0),
                               ('none', None)):
            pred = torch.zeros(0, 4, dtype=F64, requires_grad=True)
            loss = module(pred, torch.zeros(0, 4, dtype=F64), weight, avg_factor=avg,
                          reduction_override=reduction)
            assert loss.requires_grad and loss.grad_fn is not None
            if reduction == 'none':
                assert loss.shape == ((0,) if per_box else (0, 4))
                loss = loss.sum()
            else:
                assert loss.shape == ()
            assert loss.item() == 0.0  # not NaN
            loss.backward()
            assert pred.grad.shape == (0, 4)


@pytest.mark.parametrize('name', NAMES)
def test_half_precision_module(name):
    factory, _, _ = CASES[name]
    pred, target = pairs()
    module = factory()
    for dtype in (torch.float16, torch.bfloat16):
        p = pred.round().to(dtype).requires_grad_()
        w = weights(7).to(dtype)
        loss = module(p, target.round().to(dtype), w, avg_factor=4.0)
        # modules reduce half precision in float32 (README: conventions)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        assert p.grad.dtype == dtype and torch.isfinite(p.grad).all()
        want = module(pred.round(), target.round(), weights(7), avg_factor=4.0)
        torch.testing.assert_close(loss.double(), want, rtol=2e-2, atol=1e-2)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', NAMES)
def test_bad_call_arguments(name):
    factory, _, per_box = CASES[name]
    module = factory()
    pred, target = pairs(3)
    with pytest.raises(ValueError, match='weight'):
        module(pred, target, torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match='weight'):
        module(pred, target, torch.ones(3, 2, dtype=F64))
    with pytest.raises(TypeError, match='weight'):
        module(pred, target, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match='reduction_override'):
        module(pred, target, reduction_override='max')
    with pytest.raises(ValueError, match='target'):
        module(pred, target[:2])
    with pytest.raises(TypeError, match='pred'):
        module(pred.tolist(), target)
    with pytest.raises(TypeError, match='pred'):
        module(pred.long(), target)
    if per_box:
        with pytest.raises(ValueError, match='pred'):
            module(pred[:, :3], target[:, :3])


@pytest.mark.parametrize('cls', CLASSES, ids=lambda c: c.__name__)
def test_bad_constructor_arguments(cls):
    with pytest.raises(ValueError, match='reduction'):
        cls(reduction='avg')
    with pytest.raises(TypeError, match='loss_weight'):
        cls(loss_weight='1')


def test_bad_options():
    with pytest.raises(ValueError, match='mode'):
        IoULoss(mode='cube')
    for cls in (IoULoss, GIoULoss, DIoULoss, CIoULoss, EfficientIoULoss, FocalEIoULoss):
        with pytest.raises(ValueError, match='eps'):
            cls(eps=0.0)
    with pytest.raises(ValueError, match='gamma'):
        FocalEIoULoss(gamma=-1.0)
    with pytest.raises(ValueError, match='beta'):
        SmoothL1Loss(beta=-0.1)
    with pytest.raises(ValueError, match='beta'):
        FocalL1Loss(beta=1.5)
    with pytest.raises(ValueError, match='alpha'):
        FocalL1Loss(alpha=-2.0)


def test_defaults():
    # mmdet's defaults for the classes that share its names
    assert IoULoss().mode == 'log' and IoULoss(linear=True).mode == 'linear'
    assert CIoULoss().alpha_gate is True and CIoULoss().authors_gradient is False
    for cls in (IoULoss, GIoULoss, DIoULoss, CIoULoss):
        assert cls().eps == 1e-6
    assert EfficientIoULoss().eps == 1e-7 and FocalEIoULoss().eps == 1e-7
    assert FocalEIoULoss().gamma == 0.5 and FocalEIoULoss().detach_weight is True
    assert SmoothL1Loss().beta == 1.0
    assert FocalL1Loss().beta == pytest.approx(math.exp(-1)) and FocalL1Loss().alpha is None
    for cls in CLASSES:
        m = cls()
        assert m.reduction == 'mean' and m.loss_weight == 1.0


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

def test_every_class_builds_from_mmdet_default_scope():
    import mmdet.models  # noqa: F401  (fills mmdet's registry)
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('mmdet'):
        for cls in CLASSES:
            built = MMDET_MODELS.build(dict(type=f'detloss_plugin.{cls.__name__}'))
            assert type(built) is cls
        built = MMDET_MODELS.build(dict(type='detloss_plugin.CIoULoss', alpha_gate=True,
                                        loss_weight=10.0, reduction='sum'))
        assert built.alpha_gate and built.loss_weight == 10.0 and built.reduction == 'sum'
        built = MMDET_MODELS.build(dict(type='detloss_plugin.IoULoss', mode='log'))
        assert built.mode == 'log'


def test_mmdet_classes_are_not_shadowed():
    import mmdet.models.losses as mmdet_losses
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import DefaultScope

    from detloss_plugin.registry import MODELS as DETLOSS_MODELS

    same_names = ['IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'EIoULoss', 'L1Loss',
                  'MSELoss', 'SmoothL1Loss']
    with DefaultScope.overwrite_default_scope('mmdet'):
        for name in same_names:
            mmdet_cls = getattr(mmdet_losses, name)
            assert mmdet_cls.__module__.startswith('mmdet.')
            assert MMDET_MODELS.get(name) is mmdet_cls
            assert type(MMDET_MODELS.build(dict(type=name))) is mmdet_cls
            assert MMDET_MODELS.get(f'mmdet.{name}') is mmdet_cls
    # detloss's classes live in detloss's own registry, scope detloss_plugin
    assert DETLOSS_MODELS.scope == 'detloss_plugin'
    for cls in CLASSES:
        assert DETLOSS_MODELS.get(cls.__name__) is cls
        assert cls.__name__ not in MMDET_MODELS.module_dict or \
            MMDET_MODELS.module_dict[cls.__name__] is not cls
    # mmdet's EIoULoss (Extended-IoU) is not detloss's Efficient-IoU
    assert 'EIoULoss' not in DETLOSS_MODELS.module_dict
    # and every name detloss shares with mmdet (other blocks add FocalLoss, GHMC, ...)
    # still gives mmdet's own class in mmdet's registry
    shared = set(DETLOSS_MODELS.module_dict) & set(MMDET_MODELS.module_dict)
    assert set(same_names) - {'EIoULoss'} <= shared
    for name in shared:
        assert MMDET_MODELS.module_dict[name].__module__.startswith('mmdet.'), name
        assert DETLOSS_MODELS.module_dict[name].__module__.startswith('detloss_plugin.'), name
