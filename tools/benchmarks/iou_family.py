"""IoU-family box losses: detloss against mmdet's and torchvision's losses of the same
definition, forward with a per-box weight and ``avg_factor`` then ``backward()`` into
``pred``, as a head does.

    python tools/benchmark.py --suite iou_family [--device cuda] [--threads 1 2] [--quick]

Contenders: ``detloss`` (the registered module: the compiled CPU kernel on the CPU, the
torch fast path on a GPU), ``detloss fast (torch impl.)`` (the torch fast path forced on
the CPU), ``detloss plain`` (``fast=False``), ``mmdet <version>`` and ``torchvision``
(``torchvision.ops``; reported MISSING where it does not import). ``extras``: each
call's peak memory.
"""
import math

import torch

if __package__ in (None, ''):
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Case, Contender, measure_cases, pow2, standalone, version  # noqa: E402

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


def detloss_module(type_name, **cfg):
    def build(inputs):
        import detloss_plugin  # noqa: F401
        from detloss_plugin.registry import MODELS
        module = MODELS.build(dict(type=f'detloss_plugin.{type_name}', **cfg))
        return _step(inputs, lambda p, t, w, a: module(p, t, weight=w, avg_factor=a))
    return Contender('detloss', build, ref=True)


def detloss_function(fn_name, description, fast=True, **kwargs):
    def build(inputs):
        from detloss_plugin import functional as F
        fn = getattr(F, fn_name)
        return _step(inputs, lambda p, t, w, a: (fn(p, t, fast=fast, **kwargs) * w).sum() / a)
    return Contender(description, build)


def detloss_torch_fast_path(kind, **options):
    def build(inputs):
        from detloss_plugin.functional import _fused_iou
        return _step(inputs, lambda p, t, w, a: (_fused_iou.fused_iou_family(
            kind, p, t, cpu_kernel=False, **options) * w).sum() / a)
    return Contender('detloss fast (torch impl.)', build, devices=('cpu',))


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


def case(name, module, function, kind, kwargs=None, mmdet=None, torchvision=None, note=''):
    kwargs = kwargs or {}
    options = {k: v for k, v in kwargs.items() if k != 'mode'}
    contenders = [detloss_module(module, **kwargs),
                  detloss_function(function, 'detloss function', **kwargs),
                  detloss_torch_fast_path(kind, **options),
                  detloss_function(function, 'detloss plain', fast=False, **kwargs)]
    if mmdet is not None:
        contenders.append(mmdet_module(mmdet[0], **mmdet[1]))
    if torchvision is not None:
        contenders.append(torchvision_loss(torchvision))
    return Case('iou_family', name, SIZES, QUICK, box_pairs, contenders, size_name=pow2,
                memory=True, note=note, min_run_time=1.0)


# the cases, as data: (name, module, function, fast-path kind, options, mmdet peer,
# torchvision peer)
CASES = [
    case('iou (linear)', 'IoULoss', 'iou_loss', 'iou_linear', dict(mode='linear'),
         mmdet=('IoULoss', dict(mode='linear'))),
    case('iou (log)', 'IoULoss', 'iou_loss', 'iou_log', dict(mode='log'),
         mmdet=('IoULoss', dict(mode='log'))),
    case('giou', 'GIoULoss', 'giou_loss', 'giou', mmdet=('GIoULoss', {}),
         torchvision='generalized_box_iou_loss'),
    case('diou', 'DIoULoss', 'diou_loss', 'diou', mmdet=('DIoULoss', {}),
         torchvision='distance_box_iou_loss'),
    case('ciou (AAAI)', 'CIoULoss', 'ciou_loss', 'ciou', dict(alpha_gate=False),
         torchvision='complete_box_iou_loss',
         note="alpha always on; mmdet's CIoULoss gates alpha: see ciou (alpha_gate)"),
    case('ciou (alpha_gate)', 'CIoULoss', 'ciou_loss', 'ciou', dict(alpha_gate=True),
         mmdet=('CIoULoss', {})),
    case('ciou (authors_gradient)', 'CIoULoss', 'ciou_loss', 'ciou',
         dict(authors_gradient=True), note='no peer implements this gradient'),
    case('eiou (Efficient-IoU)', 'EfficientIoULoss', 'eiou_loss', 'eiou',
         note="no peer: mmdet's EIoULoss is the Extended-IoU loss"),
    case('focal_eiou', 'FocalEIoULoss', 'focal_eiou_loss', 'focal_eiou', note='no peer'),
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
