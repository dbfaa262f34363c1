"""The registered classification losses: call contract, equality with mmdet's classes
where the definitions coincide (value and gradient), state in checkpoints, and
synchronisation across ranks."""
import os

import pytest
import torch

from detloss_plugin.functional import classification as C
from detloss_plugin.models.losses import (GHMC, GHMR, AnchorLoss, CrossEntropyLoss, FocalLoss,
                                          SeesawLoss, SymmetricCELoss)

NUM_CLASSES = 5


def _dense_batch(m=24, c=NUM_CLASSES, seed=0, scale=2.0, dtype=torch.float32):
    """A dense head's call: scores (M, C), labels with background C, label weights."""
    g = torch.Generator().manual_seed(seed)
    score = torch.randn(m, c, generator=g, dtype=dtype) * scale
    labels = torch.randint(0, c + 1, (m,), generator=g)
    labels[:3] = c  # background rows
    labels[3] = 0
    weights = (torch.rand(m, generator=g) > 0.15).to(dtype)
    return score, labels, weights


def _roi_batch(m=20, c=NUM_CLASSES, extra=1, seed=0, dtype=torch.float32):
    """A RoI head's call: scores (M, C + extra), labels in [0, C] (C = background)."""
    g = torch.Generator().manual_seed(seed)
    score = torch.randn(m, c + extra, generator=g, dtype=dtype) * 2
    labels = torch.randint(0, c + 1, (m,), generator=g)
    labels[:4] = c
    weights = torch.ones(m, dtype=dtype)
    return score, labels, weights


def _grad(loss, x):
    return torch.autograd.grad(loss, x)[0]


# ------------------------------------------------------------------ registry & errors
@pytest.mark.parametrize('name', ['CrossEntropyLoss', 'FocalLoss', 'GHMC', 'GHMR',
                                  'AnchorLoss', 'SymmetricCELoss', 'SeesawLoss'])
def test_registered_in_plugin_scope_not_mmdet(name):
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        ours = MMDET_MODELS.build(dict(type=f'detloss_plugin.{name}'))
        assert type(ours).__module__.startswith('detloss_plugin')
        if name not in ('AnchorLoss', 'SymmetricCELoss'):  # mmdet's own class untouched
            theirs = MMDET_MODELS.build(dict(type=name))
            assert type(theirs).__module__.startswith('mmdet')


def test_module_argument_errors():
    with pytest.raises(ValueError, match='use_sigmoid'):
        GHMC(use_sigmoid=False)
    with pytest.raises(ValueError, match='use_sigmoid'):
        SeesawLoss(use_sigmoid=True)
    with pytest.raises(ValueError, match='momentum'):
        GHMC(momentum=1.0)
    with pytest.raises(ValueError, match='bins'):
        GHMR(bins=0)
    with pytest.raises(ValueError, match='reduction'):
        FocalLoss(reduction='avg')
    with pytest.raises(ValueError, match='anchor'):
        AnchorLoss(anchor='x')
    with pytest.raises(ValueError, match='alpha'):
        FocalLoss(alpha=2.0)
    with pytest.raises(ValueError, match='num_classes'):
        SeesawLoss(num_classes=3).get_cls_channels(4)
    score, labels, weights = _dense_batch()
    with pytest.raises(ValueError, match='alpha has 3 values'):
        FocalLoss(alpha=[0.1, 0.2, 0.3])(score, labels)
    with pytest.raises(ValueError, match='weight must have the shape of the loss'):
        FocalLoss()(score, labels, torch.ones(7))
    with pytest.raises(ValueError, match='label must be'):
        FocalLoss()(score, labels[:5])
    with pytest.raises(ValueError, match='reduction_override'):
        FocalLoss()(score, labels, reduction_override='avg')
    with pytest.raises(ValueError, match='cls_score'):
        CrossEntropyLoss()(score[0], labels[:1])


# --------------------------------------------------------------- module = functional
SIGMOID_MODULES = {
    'ce': (lambda: CrossEntropyLoss(use_sigmoid=True),
           lambda x, t: C.sigmoid_cross_entropy(x, t)),
    'focal': (lambda: FocalLoss(), lambda x, t: C.sigmoid_focal_loss(x, t)),
    'anchor': (lambda: AnchorLoss(anchor='pos', gamma=1.0),
               lambda x, t: C.sigmoid_anchor_loss(x, t, 1.0, 0.05, 'pos')),
    'sce': (lambda: SymmetricCELoss(use_sigmoid=True, alpha=1.0, beta=0.5),
            lambda x, t: C.sigmoid_symmetric_ce(x, t, 1.0, 0.5)),
}
SOFTMAX_MODULES = {
    'ce': (lambda: CrossEntropyLoss(), lambda x, y: C.softmax_cross_entropy(x, y)),
    'focal': (lambda: FocalLoss(use_sigmoid=False, gamma=1.0),
              lambda x, y: C.softmax_focal_loss(x, y, None, 1.0)),
    'anchor': (lambda: AnchorLoss(use_sigmoid=False),
               lambda x, y: C.softmax_anchor_loss(x, y)),
    'sce': (lambda: SymmetricCELoss(), lambda x, y: C.softmax_symmetric_ce(x, y)),
}


@pytest.mark.parametrize('name', sorted(SIGMOID_MODULES))
def test_sigmoid_module_contract(name):
    make, fn = SIGMOID_MODULES[name]
    module = make()
    score, labels, weights = _dense_batch()
    el = fn(score, C.labels_to_one_hot(labels, NUM_CLASSES))  # (M, C), background rows 0
    w = weights[:, None]
    torch.testing.assert_close(module(score, labels, reduction_override='none'), el)
    torch.testing.assert_close(module(score, labels, weights, reduction_override='none'),
                               el * w)
    torch.testing.assert_close(module(score, labels, weights), (el * w).mean())
    torch.testing.assert_close(module(score, labels, weights, reduction_override='sum'),
                               (el * w).sum())
    # RetinaNet: sum / number of positives (eps as mmdet's weight_reduce_loss)
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(module(score, labels, weights, avg_factor=7.0),
                               (el * w).sum() / (7.0 + eps))
    # per-element weight (M, C), one-hot float targets, loss_weight
    wfull = torch.rand(score.shape, generator=torch.Generator().manual_seed(5))
    onehot = C.labels_to_one_hot(labels, NUM_CLASSES)
    torch.testing.assert_close(module(score, onehot, wfull, reduction_override='sum'),
                               (el * wfull).sum())
    module.loss_weight = 3.0
    torch.testing.assert_close(module(score, labels, avg_factor=2.0),
                               3.0 * el.sum() / (2.0 + eps))
    # ignored labels: weight 0
    ignored = labels.clone()
    ignored[5:9] = -100
    out = module(score, ignored, reduction_override='none')
    assert out[5:9].abs().sum().item() == 0.0
    torch.testing.assert_close(out[9:], el[9:] * 3.0)
    # avg_factor with 'sum' is an error (mmdet's rule)
    with pytest.raises(ValueError, match='avg_factor'):
        module(score, labels, avg_factor=2.0, reduction_override='sum')


@pytest.mark.parametrize('name', sorted(SOFTMAX_MODULES))
def test_softmax_module_contract(name):
    make, fn = SOFTMAX_MODULES[name]
    module = make()
    score, labels, weights = _roi_batch()
    weights[::3] = 0.5
    el = fn(score, labels)
    assert el.shape == labels.shape
    torch.testing.assert_close(module(score, labels, reduction_override='none'), el)
    torch.testing.assert_close(module(score, labels, weights), (el * weights).mean())
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(module(score, labels, weights, avg_factor=20.0),
                               (el * weights).sum() / (20.0 + eps))
    with pytest.raises(ValueError, match='weight must have the shape of the loss'):
        module(score, labels, torch.ones(20, 6))


def test_focal_alpha_auto_and_softmax_per_class():
    assert FocalLoss().alpha == 0.25
    assert FocalLoss(use_sigmoid=False).alpha is None
    score, labels, _ = _roi_batch()
    alpha = [0.5, 1.0, 1.5, 2.0, 2.5, 0.25]  # one per column, background last
    out = FocalLoss(use_sigmoid=False, alpha=alpha)(score, labels, reduction_override='none')
    ref = C.softmax_focal_loss(score, labels, None, 2.0) * torch.tensor(alpha)[labels]
    torch.testing.assert_close(out, ref)
    # the alpha buffer is never overwritten by a call (hedgefair's bug)
    module = FocalLoss(use_sigmoid=False, alpha=alpha)
    before = module.alpha.clone()
    module(score, labels)
    module(score * 3, labels.flip(0))
    torch.testing.assert_close(module.alpha, before)
    assert 'alpha' not in module.state_dict()


def test_activated_probabilities_equal_logits():
    score, labels, weights = _dense_batch(scale=1.0)
    for cls, kw in ((FocalLoss, {}), (CrossEntropyLoss, dict(use_sigmoid=True)),
                    (AnchorLoss, {}), (SymmetricCELoss, dict(use_sigmoid=True))):
        a = cls(**kw)(score, labels, weights, avg_factor=5.0)
        b = cls(activated=True, **kw)(score.sigmoid(), labels, weights, avg_factor=5.0)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    roi, rlabels, _ = _roi_batch()
    for cls, kw in ((FocalLoss, dict(use_sigmoid=False)), (CrossEntropyLoss, {}),
                    (AnchorLoss, dict(use_sigmoid=False)), (SymmetricCELoss, {})):
        a = cls(**kw)(roi, rlabels)
        b = cls(activated=True, **kw)(roi.softmax(-1), rlabels)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------- equality with mmdet
def test_focal_equals_mmdet():
    from mmdet.models.losses import FocalLoss as MMFocal
    score, labels, weights = _dense_batch(m=40)
    ours_x = score.clone().requires_grad_()
    mm_x = score.clone().requires_grad_()
    for kw in (dict(), dict(gamma=1.5, alpha=0.4, loss_weight=2.0)):
        ours = FocalLoss(**kw)(ours_x, labels, weights, avg_factor=9.0)
        mm = MMFocal(use_sigmoid=True, **kw)(mm_x, labels, weights, avg_factor=9.0)
        torch.testing.assert_close(ours, mm)
        torch.testing.assert_close(_grad(ours, ours_x), _grad(mm, mm_x))
    # one-hot targets and activated (probability) inputs
    onehot = C.labels_to_one_hot(labels, NUM_CLASSES)
    torch.testing.assert_close(FocalLoss()(score, onehot, reduction_override='none'),
                               MMFocal()(score, onehot, reduction_override='none'))
    probs = score.sigmoid()
    torch.testing.assert_close(
        FocalLoss(activated=True)(probs, onehot, weights[:, None], avg_factor=3.0),
        MMFocal(activated=True)(probs, onehot, weights[:, None], avg_factor=3.0),
        rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kw', [
    dict(),
    dict(class_weight=[0.5, 1.0, 2.0, 1.0, 3.0, 0.2]),
    dict(avg_non_ignore=True, ignore_index=-100),
    dict(loss_weight=2.0, ignore_index=2),
])
def test_softmax_cross_entropy_equals_mmdet(kw):
    from mmdet.models.losses import CrossEntropyLoss as MMCE
    score, labels, weights = _roi_batch()
    labels[7:10] = -100 if kw.get('ignore_index', -100) == -100 else 2
    x1, x2 = score.clone().requires_grad_(), score.clone().requires_grad_()
    for extra in (dict(), dict(avg_factor=11.0)):
        ours = CrossEntropyLoss(**kw)(x1, labels, weights, **extra)
        mm = MMCE(**kw)(x2, labels, weights, **extra)
        torch.testing.assert_close(ours, mm)
        torch.testing.assert_close(_grad(ours, x1), _grad(mm, x2))


@pytest.mark.parametrize('kw', [
    dict(),
    dict(class_weight=[0.5, 1.0, 2.0, 1.0, 3.0]),
    dict(avg_non_ignore=True),
])
def test_sigmoid_cross_entropy_equals_mmdet(kw):
    from mmdet.models.losses import CrossEntropyLoss as MMCE
    score, labels, weights = _dense_batch()
    labels[10:12] = -100
    x1, x2 = score.clone().requires_grad_(), score.clone().requires_grad_()
    ours = CrossEntropyLoss(use_sigmoid=True, **kw)(x1, labels, weights)
    mm = MMCE(use_sigmoid=True, **kw)(x2, labels, weights)
    torch.testing.assert_close(ours, mm)
    torch.testing.assert_close(_grad(ours, x1), _grad(mm, x2))


@pytest.mark.parametrize('bins,momentum', [(10, 0.0), (10, 0.75), (30, 0.75)])
def test_ghmc_equals_mmdet_over_calls(bins, momentum):
    from mmdet.models.losses import GHMC as MMGHMC
    ours_mod = GHMC(bins=bins, momentum=momentum, loss_weight=2.0)
    mm_mod = MMGHMC(bins=bins, momentum=momentum, loss_weight=2.0)
    for call in range(3):
        score, labels, weights = _dense_batch(m=60, seed=call, scale=3.0)
        x1, x2 = score.clone().requires_grad_(), score.clone().requires_grad_()
        ours = ours_mod(x1, labels, weights, avg_factor=123.0)  # avg_factor is ignored
        mm = mm_mod(x2, labels, weights)
        torch.testing.assert_close(ours, mm)
        torch.testing.assert_close(_grad(ours, x1), _grad(mm, x2))
        if momentum:
            torch.testing.assert_close(ours_mod.acc_sum, mm_mod.acc_sum)
    torch.testing.assert_close(ours_mod(score, labels, weights, reduction_override='none'),
                               mm_mod(score, labels, weights, reduction_override='none'),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('momentum', [0.0, 0.7])
def test_ghmr_equals_mmdet_over_calls(momentum):
    from mmdet.models.losses import GHMR as MMGHMR
    ours_mod = GHMR(momentum=momentum, loss_weight=10.0)
    mm_mod = MMGHMR(momentum=momentum, loss_weight=10.0)
    g = torch.Generator().manual_seed(0)
    for call in range(3):
        pred = torch.randn(50, 4, generator=g) * 0.1
        target = torch.randn(50, 4, generator=g) * 0.1
        weight = (torch.rand(50, 1, generator=g) > 0.6).float().expand(50, 4).contiguous()
        x1, x2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        ours = ours_mod(x1, target, weight, avg_factor=17.0)
        mm = mm_mod(x2, target, weight, avg_factor=17.0)
        torch.testing.assert_close(ours, mm)
        torch.testing.assert_close(_grad(ours, x1), _grad(mm, x2))
        if momentum:
            torch.testing.assert_close(ours_mod.acc_sum, mm_mod.acc_sum)


def test_seesaw_equals_mmdet_over_calls():
    from mmdet.models.losses import SeesawLoss as MMSeesaw
    ours_mod = SeesawLoss(num_classes=NUM_CLASSES, loss_weight=2.0)
    mm_mod = MMSeesaw(num_classes=NUM_CLASSES, loss_weight=2.0)
    assert ours_mod.get_cls_channels(NUM_CLASSES) == mm_mod.get_cls_channels(NUM_CLASSES) == 7
    for call in range(3):
        score, labels, weights = _roi_batch(m=30, extra=2, seed=call)
        labels[-6:] = 1  # a frequent class, so the mitigation factor matters
        weights[::4] = 0.5
        x1, x2 = score.clone().requires_grad_(), score.clone().requires_grad_()
        for extra in (dict(avg_factor=30.0), dict()):
            ours = ours_mod(x1, labels, weights, **extra)
            mm = mm_mod(x2, labels, weights, **extra)
            assert set(ours) == set(mm) == {'loss_cls_objectness', 'loss_cls_classes'}
            for k in ours:
                torch.testing.assert_close(ours[k], mm[k])
            total_o = ours['loss_cls_classes'] + ours['loss_cls_objectness']
            total_m = mm['loss_cls_classes'] + mm['loss_cls_objectness']
            torch.testing.assert_close(_grad(total_o, x1), _grad(total_m, x2))
            torch.testing.assert_close(ours_mod.cum_samples, mm_mod.cum_samples)
        torch.testing.assert_close(ours_mod.get_activation(score), mm_mod.get_activation(score))
        acc_o, acc_m = ours_mod.get_accuracy(score, labels), mm_mod.get_accuracy(score, labels)
        for k in acc_m:
            torch.testing.assert_close(acc_o[k].reshape(()), acc_m[k].reshape(()))
    # counts: 3 calls x 2 forwards; background column last
    assert ours_mod.cum_samples.sum().item() == 3 * 2 * 30
    assert ours_mod.custom_cls_channels and ours_mod.custom_activation \
        and ours_mod.custom_accuracy


def test_seesaw_without_positives_is_zero_and_connected():
    module = SeesawLoss(num_classes=NUM_CLASSES)
    score = torch.randn(6, NUM_CLASSES + 2, requires_grad=True)
    labels = torch.full((6,), NUM_CLASSES)
    out = module(score, labels)
    assert out['loss_cls_classes'].item() == 0.0
    assert out['loss_cls_objectness'].item() > 0
    (out['loss_cls_classes'] + out['loss_cls_objectness']).backward()
    assert torch.isfinite(score.grad).all()
    assert module.get_accuracy(score, labels)['acc_classes'].item() == 0.0
    summed = SeesawLoss(num_classes=NUM_CLASSES, return_dict=False)(score, labels)
    torch.testing.assert_close(summed, out['loss_cls_objectness'])


# ------------------------------------------------------------------------ state
def _train_calls(module, calls=3):
    for call in range(calls):
        if isinstance(module, GHMR):
            pred = torch.randn(40, 4, generator=torch.Generator().manual_seed(call)) * 0.1
            module(pred, torch.zeros_like(pred), torch.ones_like(pred))
        elif isinstance(module, SeesawLoss):
            score, labels, _ = _roi_batch(extra=2, seed=call)
            module(score, labels)
        else:
            score, labels, weights = _dense_batch(seed=call)
            module(score, labels, weights)


@pytest.mark.parametrize('make,buffer', [
    (lambda: GHMC(momentum=0.75), 'acc_sum'),
    (lambda: GHMR(momentum=0.7, bins=30), 'acc_sum'),
    (lambda: SeesawLoss(num_classes=NUM_CLASSES), 'cum_samples'),
])
def test_state_round_trips_through_checkpoint(tmp_path, make, buffer):
    module = make()
    _train_calls(module)
    state = getattr(module, buffer).clone()
    assert state.abs().sum().item() > 0
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': module.state_dict()}, path)
    restored = make()
    assert getattr(restored, buffer).abs().sum().item() == 0
    restored.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
    torch.testing.assert_close(getattr(restored, buffer), state)
    # both continue identically
    _train_calls(module, 1)
    _train_calls(restored, 1)
    torch.testing.assert_close(getattr(restored, buffer), getattr(module, buffer))
    # the checkpointed buffer is the only state (edges / constants are not saved)
    assert list(module.state_dict()) == [buffer]


def test_state_not_updated_in_eval_mode():
    module = GHMC(momentum=0.75)
    _train_calls(module, 1)
    before = module.acc_sum.clone()
    score, labels, weights = _dense_batch(seed=9)
    module.eval()
    eval_value = module(score, labels, weights)
    torch.testing.assert_close(module.acc_sum, before)
    module.train()
    train_value = module(score, labels, weights)
    torch.testing.assert_close(eval_value, train_value)  # same weights, then stored
    assert not torch.equal(module.acc_sum, before)


# ---------------------------------------------------------------- robustness
ALL_DENSE = {
    'ce': lambda: CrossEntropyLoss(use_sigmoid=True),
    'focal': lambda: FocalLoss(),
    'ghmc': lambda: GHMC(),
    'anchor': lambda: AnchorLoss(),
    'sce': lambda: SymmetricCELoss(use_sigmoid=True),
}
ALL_ROI = {
    'ce': lambda: CrossEntropyLoss(),
    'focal': lambda: FocalLoss(use_sigmoid=False),
    'anchor': lambda: AnchorLoss(use_sigmoid=False),
    'sce': lambda: SymmetricCELoss(),
    'seesaw': lambda: SeesawLoss(num_classes=NUM_CLASSES, return_dict=False),
}


@pytest.mark.parametrize('dtype', [torch.float16, torch.float32])
@pytest.mark.parametrize('name', sorted(ALL_DENSE))
def test_dense_half_and_extreme_logits(name, dtype):
    score, labels, weights = _dense_batch(dtype=dtype)
    score = (torch.sign(score) * 100).to(dtype).requires_grad_()
    out = ALL_DENSE[name]()(score, labels, weights, avg_factor=4.0)
    assert out.dtype == torch.float32 and torch.isfinite(out) and out.item() > 0
    out.backward()
    assert score.grad.dtype == dtype and torch.isfinite(score.grad).all()


@pytest.mark.parametrize('dtype', [torch.float16, torch.float32])
@pytest.mark.parametrize('name', sorted(ALL_ROI))
def test_roi_half_and_extreme_logits(name, dtype):
    extra = 2 if name == 'seesaw' else 1
    score, labels, weights = _roi_batch(extra=extra, dtype=dtype)
    score = (torch.sign(score) * 100).to(dtype).requires_grad_()
    out = ALL_ROI[name]()(score, labels, weights, avg_factor=20.0)
    assert out.dtype == torch.float32 and torch.isfinite(out) and out.item() > 0
    out.backward()
    assert torch.isfinite(score.grad).all()


@pytest.mark.parametrize('name', sorted(ALL_DENSE))
def test_dense_empty_and_all_ignored(name):
    module = ALL_DENSE[name]()
    score = torch.zeros(0, NUM_CLASSES, requires_grad=True)
    out = module(score, torch.zeros(0, dtype=torch.long), torch.zeros(0), avg_factor=1.0)
    assert out.item() == 0.0
    out.backward()
    assert score.grad.shape == (0, NUM_CLASSES)
    assert module(score, torch.zeros(0, dtype=torch.long)).item() == 0.0  # no NaN mean
    score, labels, weights = _dense_batch()
    score.requires_grad_()
    out = module(score, torch.full_like(labels, -100), weights, avg_factor=1.0)
    assert out.item() == 0.0
    out.backward()
    assert score.grad.abs().sum().item() == 0.0


@pytest.mark.parametrize('name', sorted(ALL_ROI))
def test_roi_empty_and_all_ignored(name):
    module = ALL_ROI[name]()
    cols = NUM_CLASSES + (2 if name == 'seesaw' else 1)
    score = torch.zeros(0, cols, requires_grad=True)
    out = module(score, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert out.item() == 0.0
    out.backward()
    if name != 'seesaw':  # seesaw's objectness term has no ignore_index (as mmdet)
        score, labels, weights = _roi_batch()
        out = module(score, torch.full_like(labels, -100), weights, avg_factor=3.0)
        assert out.item() == 0.0


def test_ghmr_empty():
    module = GHMR()
    pred = torch.zeros(0, 4, requires_grad=True)
    out = module(pred, torch.zeros(0, 4), torch.zeros(0, 4), avg_factor=1.0)
    assert out.item() == 0.0
    out.backward()


# -------------------------------------------------------- multi-process (gloo)
def _dist_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        results = {}
        for name, make in (('ghmc', lambda: GHMC(momentum=0.75)),
                           ('ghmc_nosync', lambda: GHMC(momentum=0.75, sync=False)),
                           ('seesaw', lambda: SeesawLoss(num_classes=NUM_CLASSES,
                                                         return_dict=False))):
            module = make()
            steps = []
            for step in range(2):
                if name == 'seesaw':
                    score, labels, weights = _roi_batch(m=40, extra=2, seed=step)
                else:
                    score, labels, weights = _dense_batch(m=40, seed=step, scale=3.0)
                part = slice(rank * 20, rank * 20 + 20)
                x = score[part].clone().requires_grad_()
                loss = module(x, labels[part], weights[part])
                steps.append((loss.detach(), _grad(loss, x)))
            buf = module.acc_sum if name.startswith('ghmc') else module.cum_samples
            results[name] = (steps, buf.clone())
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_ghm_and_seesaw_sync_across_ranks(tmp_path):
    """Two gloo ranks with half the batch each: with sync, the mean of the rank losses
    (DDP averages gradients) equals the single-process loss on the whole batch, in value
    and gradient, and the state is that of the whole batch on every rank."""
    import torch.multiprocessing as mp
    mp.spawn(_dist_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2,
             join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in range(2)]
    for name, make in (('ghmc', lambda: GHMC(momentum=0.75)),
                       ('seesaw', lambda: SeesawLoss(num_classes=NUM_CLASSES,
                                                     return_dict=False))):
        module = make()
        for step in range(2):
            if name == 'seesaw':
                score, labels, weights = _roi_batch(m=40, extra=2, seed=step)
            else:
                score, labels, weights = _dense_batch(m=40, seed=step, scale=3.0)
            x = score.clone().requires_grad_()
            full = module(x, labels, weights)
            grad = _grad(full, x)
            losses = [ranks[r][name][0][step][0] for r in range(2)]
            grads = [ranks[r][name][0][step][1] for r in range(2)]
            if name == 'ghmc':
                torch.testing.assert_close((losses[0] + losses[1]) / 2, full)
                torch.testing.assert_close(torch.cat(grads) / 2, grad)
        buf = module.acc_sum if name == 'ghmc' else module.cum_samples
        for r in range(2):
            torch.testing.assert_close(ranks[r][name][1], buf)
    # without sync each rank keeps its own counts: they differ from the whole batch's
    assert not torch.allclose(ranks[0]['ghmc_nosync'][1], ranks[1]['ghmc_nosync'][1])


# ------------------------------------------------------------- no host synchronisation
@pytest.mark.parametrize('make,kind', [
    (lambda: CrossEntropyLoss(use_sigmoid=True, avg_non_ignore=True), 'dense'),
    (lambda: CrossEntropyLoss(avg_non_ignore=True), 'roi'),
    (lambda: FocalLoss(), 'dense'),
    (lambda: FocalLoss(use_sigmoid=False, alpha=[1.0] * 6), 'roi'),
    (lambda: GHMC(momentum=0.75), 'dense'),
    (lambda: GHMR(momentum=0.7), 'box'),
    (lambda: AnchorLoss(), 'dense'),
    (lambda: AnchorLoss(use_sigmoid=False), 'roi'),
    (lambda: SymmetricCELoss(use_sigmoid=True), 'dense'),
    (lambda: SymmetricCELoss(), 'roi'),
    (lambda: SeesawLoss(num_classes=NUM_CLASSES, return_dict=False), 'seesaw'),
])
def test_no_tensor_to_python_conversion_on_training_path(monkeypatch, make, kind):
    """Forward and backward never turn a tensor into a Python value (``.item()``,
    ``.tolist()``, ``bool(t)``, ``int(t)``, ``float(t)``): each is a host
    synchronisation on GPU. mmdet's GHMC / GHMR / SeesawLoss would fail this test."""
    module = make()
    if kind == 'box':
        inputs = (torch.randn(30, 4, requires_grad=True), torch.randn(30, 4), torch.ones(30, 4))
    elif kind == 'dense':
        score, labels, weights = _dense_batch()
        inputs = (score.requires_grad_(), labels, weights)
    else:
        score, labels, weights = _roi_batch(extra=2 if kind == 'seesaw' else 1)
        inputs = (score.requires_grad_(), labels, weights)

    def forbidden(*args, **kwargs):
        raise AssertionError('tensor converted to a Python value on the training path')

    for name in ('item', 'tolist', '__bool__', '__int__', '__float__', '__index__'):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    loss = module(*inputs, avg_factor=None if kind == 'box' else torch.tensor(7.0))
    loss.backward()
    monkeypatch.undo()
    assert torch.isfinite(inputs[0].grad).all() and loss.item() > 0


def test_mmdet_ghmc_fails_the_no_sync_check(monkeypatch):
    """The check above can fail: mmdet's GHMC calls ``.item()`` per bin."""
    from mmdet.models.losses import GHMC as MMGHMC
    score, labels, weights = _dense_batch()
    monkeypatch.setattr(torch.Tensor, 'item', lambda *a: (_ for _ in ()).throw(AssertionError))
    with pytest.raises(AssertionError):
        MMGHMC()(score, labels, weights)
