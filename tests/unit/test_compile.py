"""``torch.compile(fullgraph=True)`` of every registered loss module: forward + backward
without a graph break, equal to eager in value, gradient and module state.

The modules are enumerated from ``detloss_plugin.registry.MODELS`` (every ``nn.Module``
of ``detloss_plugin.models.losses``), so a new loss is covered as soon as it is
registered; its call contract must then be given an input factory below (a test fails
until it is). The backend is ``aot_eager`` (dynamo's graph capture and AOTAutograd's
joint forward + backward graph, without code generation: seconds per module); a few
representative losses also run under ``inductor``, the backend that generates code
(``DETLOSS_TEST_INDUCTOR=1``: it compiles C++ for each, slow on a small machine).
"""
import copy
import os

import pytest
import torch
from torch import nn

from factories import box_pairs, generator, random_labels

pytest.importorskip('mmengine')
import detloss_plugin.models  # noqa: E402,F401  (registers the modules)
from detloss_plugin.registry import MODELS  # noqa: E402

N = 37   # not a power of two: no shape specialisation hides a bug
NUM_CLASSES = 6


def registered_losses():
    return sorted(name for name, cls in MODELS.module_dict.items()
                  if isinstance(cls, type) and issubclass(cls, nn.Module)
                  and cls.__module__.startswith('detloss_plugin.models.losses'))


# ---- inputs per call contract: factory(seed) -> (args, kwargs); args[0] gets gradients

def boxes_contract(seed):
    """``loss_bbox(pred, target, weight, avg_factor=...)`` on absolute xyxy boxes."""
    pred, target = box_pairs(N, seed, torch.float32, size=200.0, max_wh=60.0)
    weight = torch.rand(N, generator=generator(seed + 7))
    return (pred, target, weight), dict(avg_factor=11.0)


def deltas_contract(seed):
    """``loss_bbox(pred, target, weight, avg_factor=...)`` on coder deltas (N, 4)."""
    g = generator(seed)
    pred, target = torch.randn(N, 4, generator=g), torch.randn(N, 4, generator=g)
    return (pred, target, torch.rand(N, 4, generator=g)), dict(avg_factor=11.0)


def kl_contract(seed):
    """``loss_bbox(pred, pred_log_var, target, weight, avg_factor=...)``."""
    g = generator(seed)
    pred, log_var, target = (torch.randn(N, 4, generator=g) for _ in range(3))
    return (pred, log_var, target, torch.rand(N, 4, generator=g)), dict(avg_factor=11.0)


def sigmoid_contract(seed):
    """``loss_cls(cls_score, labels, label_weights, avg_factor=...)`` of a dense head:
    ``NUM_CLASSES`` columns, label ``NUM_CLASSES`` = background."""
    g = generator(seed)
    score = torch.randn(N, NUM_CLASSES, generator=g) * 2 - 2
    labels = random_labels(N, NUM_CLASSES + 1, seed)
    return (score, labels, torch.rand(N, generator=g)), dict(avg_factor=5.0)


def softmax_contract(seed, columns=NUM_CLASSES + 1):
    """``loss_cls(cls_score, labels, label_weights, avg_factor=...)`` of a RoI head: a
    background column, labels in ``[0, NUM_CLASSES]``."""
    g = generator(seed)
    score = torch.randn(N, columns, generator=g) * 2
    labels = random_labels(N, NUM_CLASSES + 1, seed)
    return (score, labels, torch.rand(N, generator=g)), dict(avg_factor=5.0)


def seesaw_contract(seed):
    """Seesaw's RoI-head scores: ``NUM_CLASSES`` class logits and an objectness pair."""
    return softmax_contract(seed, columns=NUM_CLASSES + 2)


BOX_LOSSES = ['IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'EfficientIoULoss',
              'FocalEIoULoss', 'SIoULoss', 'AlphaIoULoss', 'WIoULoss', 'L1Loss', 'MSELoss',
              'SmoothL1Loss', 'FocalL1Loss', 'NWDLoss']
# the ranking losses run only inside their heads (an explicit contract the head sets):
# tests/unit/test_ranking_compile.py compiles them with a head attached
RANKING_LOSSES = {'APLoss', 'DRLoss', 'RankSortLoss', 'ALRPLoss'}

# registered name -> [(config, contract, marks)]
CASES = {name: [({}, boxes_contract, ())] for name in BOX_LOSSES}
CASES.update({
    'IoULoss': [(dict(mode='linear'), boxes_contract, ()), (dict(mode='log'), boxes_contract, ())],
    'CIoULoss': [({}, boxes_contract, ()), (dict(alpha_gate=True, authors_gradient=True),
                                            boxes_contract, ())],
    'FocalEIoULoss': [({}, boxes_contract, ()), (dict(detach_weight=False), boxes_contract, ())],
    'WIoULoss': [(dict(version=v), boxes_contract, ()) for v in ('v1', 'v2', 'v3')],
    'AlphaIoULoss': [(dict(base=b), boxes_contract, ()) for b in ('iou', 'ciou')],
    'GHMR': [(dict(momentum=0.75), deltas_contract, ())],
    'KLLoss': [({}, kl_contract, ())],
    'FocalLoss': [(dict(use_sigmoid=True), sigmoid_contract, ()),
                  (dict(use_sigmoid=True, alpha=[0.25] * 3 + [0.5] * 3), sigmoid_contract, ()),
                  (dict(use_sigmoid=False), softmax_contract, ())],
    'CrossEntropyLoss': [(dict(use_sigmoid=True), sigmoid_contract, ()),
                         (dict(use_sigmoid=False, class_weight=[1.0] * 6 + [0.5]),
                          softmax_contract, ())],
    'GHMC': [(dict(use_sigmoid=True, bins=30, momentum=0.75), sigmoid_contract, ())],
    'AnchorLoss': [(dict(use_sigmoid=True), sigmoid_contract, ()),
                   (dict(use_sigmoid=False), softmax_contract, ())],
    'SymmetricCELoss': [(dict(use_sigmoid=True), sigmoid_contract, ()),
                        (dict(use_sigmoid=False), softmax_contract, ())],
    'SeesawLoss': [(dict(num_classes=NUM_CLASSES, return_dict=False), seesaw_contract, ())],
})


def _params():
    params = []
    for name in sorted(set(registered_losses()) - RANKING_LOSSES):
        for k, (cfg, contract, marks) in enumerate(CASES.get(name, [(None, None, ())])):
            params.append(pytest.param(name, cfg, contract, marks=marks, id=f'{name}-{k}'))
    return params


def _build(name, cfg):
    # the scope prefix: another test may have left mmdet as the default scope
    return MODELS.build(dict(cfg, type=f'detloss_plugin.{name}'))


def _run(module, args, kwargs, grads, call=None):
    """Two calls (the second sees the state the first left: GHM's moving average,
    WIoU's running mean, Seesaw's class counts); returns the losses, the gradients of
    the differentiable arguments and the module's buffers."""
    losses, grad_list = [], []
    for _ in range(2):
        leaves = [a.detach().clone().requires_grad_(k in grads) if isinstance(a, torch.Tensor)
                  else a for k, a in enumerate(args)]
        loss = (module if call is None else call)(*leaves, **kwargs)
        loss = sum(loss.values()) if isinstance(loss, dict) else loss
        loss.backward()
        losses.append(loss.detach())
        grad_list.append([leaves[k].grad for k in grads])
    return losses, grad_list, {k: v.clone() for k, v in module.named_buffers()}


def _differentiable(contract):
    return (0, 1) if contract is kl_contract else (0,)


def check_compiled_equals_eager(name, cfg, contract, backend):
    module = _build(name, cfg).train()
    args, kwargs = contract(seed=0)
    grads = _differentiable(contract)
    eager = _run(copy.deepcopy(module), args, kwargs, grads)
    torch._dynamo.reset()
    copied = copy.deepcopy(module)
    compiled = torch.compile(copied, fullgraph=True, backend=backend)
    got = _run(copied, args, kwargs, grads, call=compiled)
    for a, b in zip(got[0], eager[0]):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for ga, gb in zip(got[1], eager[1]):
        for a, b in zip(ga, gb):
            assert b is not None and b.abs().sum() > 0
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert got[2].keys() == eager[2].keys()
    for key in eager[2]:
        torch.testing.assert_close(got[2][key], eager[2][key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name,cfg,contract', _params())
def test_compiled_equals_eager(name, cfg, contract):
    assert contract is not None, (
        f'{name} is registered but has no input factory in tests/unit/test_compile.py: add its '
        f'call contract to CASES')
    check_compiled_equals_eager(name, cfg, contract, 'aot_eager')


def test_every_case_is_a_registered_loss():
    assert set(CASES) <= set(registered_losses()), set(CASES) - set(registered_losses())
    assert RANKING_LOSSES <= set(registered_losses())


def _inductor_works() -> bool:
    try:
        torch.compile(lambda x: x * 2 + 1, backend='inductor', fullgraph=True)(torch.ones(3))
        return True
    except Exception:   # no C++ compiler, or an inductor without this platform
        return False


@pytest.mark.skipif(not os.environ.get('DETLOSS_TEST_INDUCTOR'),
                    reason='inductor generates and compiles C++ for each loss (about 10 s of '
                    'CPU each on a 2-core machine): set DETLOSS_TEST_INDUCTOR=1 to run it')
@pytest.mark.parametrize('name,cfg,contract', [
    ('GIoULoss', {}, boxes_contract),
    ('FocalLoss', dict(use_sigmoid=True), sigmoid_contract),
])
def test_inductor_equals_eager(name, cfg, contract):
    if not _inductor_works():
        pytest.skip('inductor cannot compile on this machine')
    check_compiled_equals_eager(name, cfg, contract, 'inductor')
