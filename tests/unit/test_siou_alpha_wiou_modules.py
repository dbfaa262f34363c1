"""SIoULoss, AlphaIoULoss, WIoULoss modules: mmdet's call contract, and WIoU v3's
running mean (a buffer: updated from the positive boxes in training mode before it
scales the loss, frozen in eval mode, in the state dict, restored from an mmengine
checkpoint, the same on two gloo ranks as in one process on the whole batch)."""
import os

import pytest
import torch

import detloss_plugin  # noqa: F401  (registers everything)
from detloss_plugin.functional import (alpha_iou_loss, iou_loss, siou_loss, wiou_loss,
                                       wiou_running_mean)
from detloss_plugin.models.losses import AlphaIoULoss, SIoULoss, WIoULoss
from detloss_plugin.models.losses.iou_loss import mmdet_siou_loss
from test_regression_modules import AVG_EPS, pairs, weights

F64 = torch.float64

# name -> (module factory, the functional form it must equal in eval mode)
CASES = {
    # SIoULoss defaults to mmdet's form (tests/unit/test_mmdet_contract.py); the paper's:
    'SIoULoss_paper': (lambda **k: SIoULoss(form='paper', **k),
                       lambda p, t: siou_loss(p, t, eps=1e-6)),
    'SIoULoss_paper_theta2': (lambda **k: SIoULoss(form='paper', theta=2.0, **k),
                              lambda p, t: siou_loss(p, t, theta=2.0, eps=1e-6)),
    'SIoULoss_mmdet': (SIoULoss, mmdet_siou_loss),
    'AlphaIoULoss': (AlphaIoULoss, alpha_iou_loss),
    'AlphaIoULoss_giou_a2': (lambda **k: AlphaIoULoss(alpha=2.0, base='giou', **k),
                             lambda p, t: alpha_iou_loss(p, t, 2.0, 'giou')),
    'WIoULoss_v1': (lambda **k: WIoULoss(version='v1', **k),
                    lambda p, t: wiou_loss(p, t, 'v1')),
    'WIoULoss_v2': (lambda **k: WIoULoss(version='v2', **k),
                    lambda p, t: wiou_loss(p, t, 'v2', iou_mean=1.0)),
    'WIoULoss': (WIoULoss, lambda p, t: wiou_loss(p, t, 'v3', iou_mean=1.0)),
}
NAMES = sorted(CASES)


def _module(name, **kwargs):
    module = CASES[name][0](**kwargs)
    return module.eval()  # eval: WIoU's mean stays at its initial 1.0


@pytest.mark.parametrize('name', NAMES)
def test_module_equals_functional_and_reduces_like_mmdet(name):
    _, fn = CASES[name]
    pred, target = pairs()
    loss = fn(pred, target)
    torch.testing.assert_close(_module(name, reduction='none')(pred, target), loss,
                               rtol=0, atol=0)
    w4 = weights(7)
    for weight, per_box in ((None, None), (w4[:, 1], w4[:, 1]), (w4, w4.mean(-1))):
        weighted = loss if weight is None else loss * per_box
        module = _module(name, loss_weight=2.5)
        torch.testing.assert_close(module(pred, target, weight), 2.5 * weighted.mean())
        torch.testing.assert_close(module(pred, target, weight, reduction_override='sum'),
                                   2.5 * weighted.sum())
        torch.testing.assert_close(module(pred, target, weight, avg_factor=3.0),
                                   2.5 * weighted.sum() / (3.0 + AVG_EPS))
    with pytest.raises(ValueError, match='avg_factor'):
        _module(name, reduction='sum')(pred, target, avg_factor=2.0)


@pytest.mark.parametrize('name', NAMES)
def test_zero_weight_empty_and_half(name):
    pred, target = pairs()
    pred.requires_grad_()
    module = _module(name)
    out = module(pred, target, torch.zeros(7))
    assert out.item() == 0.0
    out.backward()
    assert (pred.grad == 0).all()
    empty = torch.zeros(0, 4, requires_grad=True)
    out = module.train()(empty, torch.zeros(0, 4), torch.zeros(0), avg_factor=1.0)
    assert out.item() == 0.0
    out.backward()
    if hasattr(module, 'iou_mean'):
        assert module.iou_mean.item() == 1.0  # nothing valid: no update
    half = pred.detach().half().requires_grad_()
    out = _module(name)(half, target.half())
    assert out.dtype == torch.float32 and torch.isfinite(out)
    out.backward()
    assert half.grad.dtype == torch.float16 and torch.isfinite(half.grad).all()


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match='theta'):
        SIoULoss(theta=0.5)
    with pytest.raises(ValueError, match='alpha'):
        AlphaIoULoss(alpha=-1.0)
    with pytest.raises(ValueError, match='base'):
        AlphaIoULoss(base='siou')
    with pytest.raises(ValueError, match='version'):
        WIoULoss(version='v0')
    with pytest.raises(ValueError, match='momentum'):
        WIoULoss(momentum=2.0)
    with pytest.raises(ValueError, match='momentum'):
        WIoULoss(momentum=0.0)
    with pytest.raises(ValueError, match='delta'):
        WIoULoss(delta=0.0)
    with pytest.raises(ValueError, match='reduction'):
        WIoULoss(reduction='avg')
    with pytest.raises(ValueError, match='eps'):
        SIoULoss(eps=-1.0)
    with pytest.raises(ValueError, match='form'):
        SIoULoss(form='yolov6')


def test_defaults():
    s, a, w = SIoULoss(), AlphaIoULoss(), WIoULoss()
    assert s.theta == 4.0 and s.eps == 1e-6 and s.form == 'mmdet' and not s.neg_gamma
    assert (a.alpha, a.base) == (3.0, 'ciou')
    assert (w.version, w.alpha, w.delta, w.gamma, w.momentum, w.sync) == \
        ('v3', 1.9, 3.0, 0.5, 0.01, True)
    assert w.iou_mean.dtype == torch.float32 and w.iou_mean.item() == 1.0


# ------------------------------------------------------------------- WIoU's running mean
def test_wiou_mean_updated_from_positives_before_scaling():
    pred, target = pairs(n=9, seed=3)
    weight = torch.ones(9, 4)
    weight[[0, 4]] = 0  # negatives, as mmdet's dense heads pass them
    module = WIoULoss(momentum=0.2, reduction='none').train()
    valid = weight.mean(-1) > 0
    l_iou = iou_loss(pred, target)
    expected_mean = 0.8 * 1.0 + 0.2 * l_iou[valid].mean()
    out = module(pred, target, weight)
    torch.testing.assert_close(module.iou_mean.double(), expected_mean, rtol=1e-6, atol=1e-7)
    # the loss was scaled with the updated mean, not the previous one
    torch.testing.assert_close(
        out, wiou_loss(pred, target, iou_mean=module.iou_mean) * weight.mean(-1))
    assert not torch.allclose(out, wiou_loss(pred, target, iou_mean=1.0) * weight.mean(-1))
    # a second call moves it again; eval mode reads it without updating
    second = 0.8 * module.iou_mean.double() + 0.2 * l_iou[valid].mean()
    module(pred, target, weight)
    torch.testing.assert_close(module.iou_mean.double(), second, rtol=1e-6, atol=1e-7)
    module.eval()
    frozen = module.iou_mean.clone()
    out = module(pred, target, weight)
    assert torch.equal(module.iou_mean, frozen)
    torch.testing.assert_close(out, wiou_loss(pred, target, iou_mean=frozen) * weight.mean(-1))
    # v1 never touches it
    v1 = WIoULoss(version='v1').train()
    v1(pred, target)
    assert v1.iou_mean.item() == 1.0


@pytest.mark.parametrize('name', NAMES)
def test_no_host_synchronisation(monkeypatch, name):
    """Forward and backward (WIoU: with its running-mean update, in training mode)
    never turn a tensor into a Python value."""
    pred, target = pairs(n=12, seed=4)
    pred.requires_grad_()
    module = CASES[name][0]().train()

    def forbidden(*args, **kwargs):
        raise AssertionError('tensor converted to a Python value on the training path')

    for name in ('item', 'tolist', '__bool__', '__int__', '__float__', '__index__'):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    loss = module(pred, target, torch.ones(12), avg_factor=torch.tensor(5.0))
    loss.backward()
    monkeypatch.undo()
    assert torch.isfinite(pred.grad).all() and loss.item() > 0


def test_wiou_state_in_state_dict_and_mmengine_checkpoint(tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint

    pred, target = pairs(n=6, seed=5)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    model.loss_bbox = WIoULoss(momentum=0.3).train()
    for _ in range(3):
        model.loss_bbox(pred, target)
    trained = model.loss_bbox.iou_mean.clone()
    assert trained.item() != 1.0
    assert 'loss_bbox.iou_mean' in model.state_dict()
    path = str(tmp_path / 'epoch_1.pth')
    save_checkpoint({'state_dict': model.state_dict(), 'meta': {'epoch': 1}}, path)
    fresh = torch.nn.Sequential(torch.nn.Linear(2, 2))
    fresh.loss_bbox = WIoULoss(momentum=0.3)
    assert fresh.loss_bbox.iou_mean.item() == 1.0
    load_checkpoint(fresh, path, map_location='cpu', strict=True)
    assert torch.equal(fresh.loss_bbox.iou_mean, trained)
    # resumed training continues from the restored mean, as uninterrupted training would
    model.loss_bbox(pred, target)
    fresh.loss_bbox.train()(pred, target)
    assert torch.equal(fresh.loss_bbox.iou_mean, model.loss_bbox.iou_mean)


# ------------------------------------------------------------------------ two gloo ranks
def _batch(step, n=40):
    pred, target = pairs(n=n, seed=10 + step)
    weight = torch.ones(n)
    weight[::5] = 0
    return pred.float(), target.float(), weight


def _dist_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        results = {}
        for name, sync in (('sync', True), ('nosync', False)):
            module = WIoULoss(momentum=0.25, sync=sync).train()
            steps = []
            for step in range(2):
                pred, target, weight = _batch(step)
                part = slice(rank * 20, rank * 20 + 20)
                x = pred[part].clone().requires_grad_()
                loss = module(x, target[part], weight[part], avg_factor=20.0)
                (grad,) = torch.autograd.grad(loss, x)
                steps.append((loss.detach(), grad))
            results[name] = (steps, module.iou_mean.clone())
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_wiou_mean_synchronised_across_two_ranks(tmp_path):
    """Two gloo ranks with half the batch each: with sync, the running mean is that of
    the whole batch on both ranks, and the mean of the rank losses (DDP averages
    gradients) equals the single-process loss on the whole batch."""
    import torch.multiprocessing as mp
    mp.spawn(_dist_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2,
             join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in range(2)]
    module = WIoULoss(momentum=0.25).train()
    for step in range(2):
        pred, target, weight = _batch(step)
        x = pred.clone().requires_grad_()
        full = module(x, target, weight, avg_factor=40.0)
        (grad,) = torch.autograd.grad(full, x)
        losses = [ranks[r]['sync'][0][step][0] for r in range(2)]
        grads = [ranks[r]['sync'][0][step][1] for r in range(2)]
        torch.testing.assert_close((losses[0] + losses[1]) / 2, full)
        torch.testing.assert_close(torch.cat(grads) / 2, grad)
    for r in range(2):
        torch.testing.assert_close(ranks[r]['sync'][1], module.iou_mean)
    # without sync each rank follows its own half
    assert not torch.allclose(ranks[0]['nosync'][1], ranks[1]['nosync'][1])
    half = WIoULoss(momentum=0.25).train()
    for step in range(2):
        pred, target, weight = _batch(step)
        half(pred[:20], target[:20], weight[:20])
    torch.testing.assert_close(ranks[0]['nosync'][1], half.iou_mean)


def test_running_mean_function_is_what_the_module_stores():
    pred, target = pairs(n=5, seed=6)
    module = WIoULoss(momentum=0.1).train()
    expected = wiou_running_mean(pred, target, torch.tensor(1.0), 0.1)
    module(pred, target)
    assert torch.equal(module.iou_mean, expected)


# ---------------------------------------------------------------------------- registry
def test_build_from_mmdet_default_scope():
    import mmdet.models  # noqa: F401
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('mmdet'):
        for cls in (SIoULoss, AlphaIoULoss, WIoULoss):
            assert type(MMDET_MODELS.build(dict(type=f'detloss_plugin.{cls.__name__}'))) is cls
        built = MMDET_MODELS.build(dict(type='detloss_plugin.WIoULoss', version='v2',
                                        alpha=1.7, delta=2.7, loss_weight=2.0))
        assert (built.version, built.alpha, built.delta, built.loss_weight) == \
            ('v2', 1.7, 2.7, 2.0)
        # mmdet's own SIoULoss is untouched
        mm = MMDET_MODELS.build(dict(type='SIoULoss'))
        assert type(mm).__module__.startswith('mmdet.')
