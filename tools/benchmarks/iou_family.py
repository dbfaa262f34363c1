"""IoU-family box losses: detloss against mmdet's and torchvision's losses of the same
definition, forward with a per-box weight and ``avg_factor`` then ``backward()`` into
``pred``, as a head does.

    python -m tools.benchmark --suite iou_family [--device cuda] [--threads 1 2] [--quick]

Contenders: ``detloss`` (the registered module, eager), ``detloss compiled`` (the same
module's forward under ``torch.compile(fullgraph=True)``, inductor; the backward is the
compiled graph's too), ``mmdet <version>`` and ``torchvision`` (``torchvision.ops``;
reported MISSING where it does not import). ``extras``: each call's peak memory.
"""
import math

import torch

from tools.benchmarks._common import (Case, Contender, compile_loss, measure_cases, pow2,
                                      standalone, version)

IMAGE_WH = (1333.0, 800.0)
SIZES, QUICK = [2 ** 12, 2 ** 16, 2 ** 20], [2 ** 10, 2 ** 12]


def box_pairs(n: int, device: torch.device, seed: int = 0) -> dict:
    """Targets spread over a 1333 x 800 image with sides log-uniform in [16, 512];
    predictions around them as a regressor in training produces (centre shift
    N(0, 0.2 side), sides scaled by exp(N(0, 0.3))): IoUs from 0 to ~1. A per-box
    weight in [0, 1] and ``avg_factor = n / 4``."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * torch.tensor(IMAGE_WH)
    side = torch.exp(torch.rand(n, 2, generator=g) * math.log(512 / 16) + math.log(16))
    target = torch.cat([centre - side / 2, centre + side / 2], 1)
    pc = centre + torch.randn(n, 2, generator=g) * 0.2 * side
    ps = side * torch.exp(torch.randn(n, 2, generator=g) * 0.3)
    pred = torch.cat([pc - ps / 2, pc + ps / 2], 1).to(device).requires_grad_()

    def reset():
        pred.grad = None
    return dict(pred=pred, target=target.to(device), weight=torch.rand(n, generator=g).to(device),
                avg_factor=n / 4, reset=reset)


def _step(inputs, loss_of):
    pred, target, weight, avg = (inputs['pred'], inputs['target'], inputs['weight'],
                                 inputs['avg_factor'])

    def step():
        pred.grad = None
        loss = loss_of(pred, target, weight, avg)
        loss.backward()
        return loss.detach()
    return step


def detloss_module(type_name, compiled=False, **cfg):
    def build(inputs):
        import detloss_plugin  # noqa: F401
        from detloss_plugin.registry import MODELS
        module = MODELS.build(dict(type=f'detloss_plugin.{type_name}', **cfg))
        loss_of = lambda p, t, w, a: module(p, t, weight=w, avg_factor=a)  # noqa: E731
        return _step(inputs, compile_loss(loss_of) if compiled else loss_of)
    return Contender('detloss compiled' if compiled else 'detloss', build, ref=not compiled)


def mmdet_module(type_name, **cfg):
    def build(inputs):
        from mmdet.models import losses  # noqa: F401  (registers mmdet's losses)
        from mmdet.registry import MODELS
        module = MODELS.build(dict(type=type_name, **cfg))
        return _step(inputs, lambda p, t, w, a: module(p, t, weight=w, avg_factor=a))
    return Contender(f"mmdet {version('mmdet')}", build)


def torchvision_loss(fn_name):
    def build(inputs):
        import torchvision.ops
        fn = getattr(torchvision.ops, fn_name)
        return _step(inputs, lambda p, t, w, a: (fn(p, t, reduction='none') * w).sum() / a)
    return Contender('torchvision', build)


def case(name, module, kwargs=None, mmdet=None, torchvision=None, note=''):
    kwargs = kwargs or {}
    contenders = [detloss_module(module, **kwargs),
                  detloss_module(module, compiled=True, **kwargs)]
    if mmdet is not None:
        contenders.append(mmdet_module(mmdet[0], **mmdet[1]))
    if torchvision is not None:
        contenders.append(torchvision_loss(torchvision))
    return Case('iou_family', name, SIZES, QUICK, box_pairs, contenders, size_name=pow2,
                memory=True, note=note, min_run_time=1.0)


# the cases, as data: (name, module, options, mmdet peer, torchvision peer)
CASES = [
    case('iou (linear)', 'IoULoss', dict(mode='linear'), mmdet=('IoULoss', dict(mode='linear'))),
    case('iou (log)', 'IoULoss', dict(mode='log'), mmdet=('IoULoss', dict(mode='log'))),
    case('giou', 'GIoULoss', mmdet=('GIoULoss', {}), torchvision='generalized_box_iou_loss'),
    case('diou', 'DIoULoss', mmdet=('DIoULoss', {}), torchvision='distance_box_iou_loss'),
    case('ciou (AAAI)', 'CIoULoss', dict(alpha_gate=False), torchvision='complete_box_iou_loss',
         note="alpha always on; mmdet's CIoULoss gates alpha: see ciou (alpha_gate)"),
    case('ciou (alpha_gate)', 'CIoULoss', dict(alpha_gate=True), mmdet=('CIoULoss', {})),
    case('ciou (authors_gradient)', 'CIoULoss', dict(authors_gradient=True),
         note='no peer implements this gradient'),
    case('eiou (Efficient-IoU)', 'EfficientIoULoss',
         note="no peer: mmdet's EIoULoss is the Extended-IoU loss"),
    # the paper's differentiated weight (the module defaults to the detached one)
    case('focal_eiou', 'FocalEIoULoss', dict(detach_weight=False), note='no peer'),
]

_EXTRAS: dict = {}


def selected(args):
    only = getattr(args, 'only', None)
    return [c for c in CASES if not only or any(o in c.name for o in only)]


def run(args):
    _EXTRAS.clear()
    return measure_cases(selected(args), args, _EXTRAS)


def extras(args) -> dict:
    """Peak memory of one forward + backward per contender and size (bytes), and the
    contenders that could not run."""
    return dict(_EXTRAS)


if __name__ == '__main__':
    raise SystemExit(standalone(run, extras, description=__doc__))
