"""Sigmoid classification losses of dense heads: focal and GHM-C, detloss against mmdet
(and torchvision's focal), forward then ``backward()`` into the logits, as
``AnchorHead`` calls ``loss_cls``.

    python -m tools.benchmark --suite classification [--device cuda] [--threads 1 2] [--quick]

Inputs (:func:`dense_scores`): ``Tensor[n, 80]`` logits around RetinaNet's prior bias
(N(-4.6, 1.5)), ~1% positive anchors (their class logit raised by 3), 5% ignored
(label weight 0), ``avg_factor`` = number of positives. ``extras``: each contender's
loss value (they must agree: same loss, same inputs), its host synchronisations per
call (operators that make the host wait on a GPU) and peak memory.
"""
import math

import torch

from tools.benchmarks._common import (Case, Contender, compile_loss, measure_cases, pow2,
                                      standalone, version)

NUM_CLASSES = 80
SIZES, QUICK = [2 ** 14, 2 ** 16, 2 ** 17], [2 ** 10, 2 ** 12]


def dense_scores(n: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, NUM_CLASSES, generator=g) * 1.5 - math.log(99)
    labels = torch.full((n,), NUM_CLASSES, dtype=torch.int64)
    pos = torch.rand(n, generator=g) < 0.01
    pos[0] = True
    labels[pos] = torch.randint(0, NUM_CLASSES, (int(pos.sum()),), generator=g)
    rows = pos.nonzero().squeeze(1)
    logits[rows, labels[rows]] += 3.0
    weight = (torch.rand(n, generator=g) > 0.05).float()
    onehot = (labels.unsqueeze(1) == torch.arange(NUM_CLASSES)).float()
    pred = logits.to(device).requires_grad_()

    def reset():
        pred.grad = None
    return dict(pred=pred, target=labels.to(device), weight=weight.to(device),
                avg_factor=float(pos.sum()), onehot=onehot.to(device), reset=reset)


def _step(build_loss):
    def build(inputs):
        loss_of, pred = build_loss(inputs), inputs['pred']

        def step():
            pred.grad = None
            loss = loss_of(pred)
            loss.backward()
            return loss.detach()
        return step
    return build


def _detloss_registry():
    import detloss_plugin  # noqa: F401
    from detloss_plugin.registry import MODELS
    return MODELS


def _mmdet_registry():
    from mmdet.models import losses  # noqa: F401
    from mmdet.registry import MODELS
    return MODELS


def module_contender(description, registry, type_name, ref=False, ghm=False,
                     compiled=False, **cfg):
    """``loss_cls(cls_score, labels, label_weights, avg_factor=num_pos)``; mmdet's
    ``GHMC`` takes the weights positionally and ignores ``avg_factor``. ``compiled``:
    under ``torch.compile(fullgraph=True)``."""
    def build_loss(inputs):
        device = inputs['pred'].device
        module = registry().build(dict(type=type_name, **cfg)).to(device)
        labels, weight, avg = inputs['target'], inputs['weight'], inputs['avg_factor']
        if ghm:
            loss_of = lambda p: module(p, labels, weight)  # noqa: E731
        else:
            loss_of = lambda p: module(p, labels, weight, avg_factor=avg)  # noqa: E731
        return compile_loss(loss_of) if compiled else loss_of
    return Contender(description, _step(build_loss), ref=ref)


def torchvision_focal():
    """``torchvision.ops.sigmoid_focal_loss`` on 0/1 targets with the head's weighted
    mean."""
    def build_loss(inputs):
        from torchvision.ops import sigmoid_focal_loss as fn
        t, w, avg = inputs['onehot'], inputs['weight'].unsqueeze(1), inputs['avg_factor']
        return lambda p: (fn(p, t, alpha=0.25, gamma=2.0, reduction='none') * w).sum() / avg
    return Contender('torchvision', _step(build_loss))


def _value(out):
    return float(out)


FOCAL = dict(use_sigmoid=True, gamma=2.0, alpha=0.25)


def ghmc_case(bins, momentum, note):
    cfg = dict(bins=bins, momentum=momentum, use_sigmoid=True, loss_weight=1.0)
    return Case('classification', f'ghm-c (bins={bins}, momentum={momentum})', SIZES, QUICK,
                dense_scores, [
                    module_contender('detloss', _detloss_registry, 'detloss_plugin.GHMC',
                                     ref=True, ghm=True, **cfg),
                    module_contender('detloss compiled', _detloss_registry,
                                     'detloss_plugin.GHMC', ghm=True, compiled=True, **cfg),
                    module_contender(f"mmdet {version('mmdet')}", _mmdet_registry, 'GHMC',
                                     ghm=True, **cfg),
                ], size_name=pow2, memory=True, syncs=True, value=_value, note=note)


CASES = [
    Case('classification', 'sigmoid focal (alpha 0.25, gamma 2)', SIZES, QUICK, dense_scores, [
        module_contender('detloss', _detloss_registry, 'detloss_plugin.FocalLoss', ref=True,
                         **FOCAL),
        module_contender('detloss compiled', _detloss_registry, 'detloss_plugin.FocalLoss',
                         compiled=True, **FOCAL),
        module_contender(f"mmdet {version('mmdet')}", _mmdet_registry, 'FocalLoss', **FOCAL),
        torchvision_focal(),
    ], size_name=pow2, memory=True, syncs=True, value=_value,
        note="n anchors x 80 classes; mmdet's FocalLoss: py_sigmoid_focal_loss on the CPU, "
             "mmcv's CUDA kernel on a GPU"),
    ghmc_case(10, 0.0, "mmdet's class defaults"),
    ghmc_case(30, 0.75, "mmdet's configs/ghm (RetinaNet) setting"),
]

_EXTRAS: dict = {}


def run(args):
    _EXTRAS.clear()
    only = getattr(args, 'only', None)
    cases = [c for c in CASES if not only or any(o in c.name for o in only)]
    return measure_cases(cases, args, _EXTRAS)


def extras(args) -> dict:
    """Per contender and size: ``value`` (the loss), ``host_syncs``, ``peak_bytes``."""
    return dict(_EXTRAS)


if __name__ == '__main__':
    raise SystemExit(standalone(run, extras, description=__doc__))
