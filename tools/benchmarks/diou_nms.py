"""DIoU-NMS: detloss against mmcv's and torchvision's NMS (plain IoU NMS: a different
criterion, so the kept counts differ; DIoU-NMS does more work per pair).

    python -m tools.benchmark --suite diou_nms [--device cuda] [--threads 1 2] [--quick]

Inputs (:func:`detections`): ``n`` boxes around n/25 objects in a 1333 x 800 image,
uniform scores, IoU threshold 0.5. On the CPU detloss runs its C kernel (and the torch
backend for comparison, up to 10k boxes); on a GPU its torch backend, whose host
synchronisations (one ``nonzero`` per row block, one ``torch.equal`` per fixed-point
iteration) are counted in ``extras`` next to mmcv's. ``detloss cluster_diou_nms`` is
the dense matrix form (Cluster-NMS, the same kept boxes), up to 10k boxes.
``extras``: kept counts and host synchronisations per call.
"""
import math

import torch

from tools.benchmarks._common import Case, Contender, measure_cases, standalone

IMAGE_WH = (1333.0, 800.0)
SIZES, QUICK = [1000, 10000, 50000], [1000, 4000]


def detections(n: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 25)
    centre = torch.rand(objects, 2, generator=g) * torch.tensor(IMAGE_WH)
    side = torch.exp(torch.rand(objects, 2, generator=g) * math.log(400 / 32) + math.log(32))
    pick = torch.randint(0, objects, (n,), generator=g)
    c = centre[pick] + torch.randn(n, 2, generator=g) * 0.15 * side[pick]
    s = side[pick] * torch.exp(torch.randn(n, 2, generator=g) * 0.2)
    boxes = torch.cat([c - s / 2, c + s / 2], 1)
    return dict(boxes=boxes.to(device), scores=torch.rand(n, generator=g).to(device),
                iou_threshold=0.5)


def nms_contender(description, make_fn, ref=False, max_n=None, devices=('cpu', 'cuda')):
    def build(inputs):
        fn = make_fn()
        boxes, scores, thr = inputs['boxes'], inputs['scores'], inputs['iou_threshold']
        return lambda: fn(boxes, scores, thr)
    return Contender(description, build, ref=ref, max_n=max_n, devices=devices)


def _diou_nms_mmcv():
    from detloss_plugin.ops import diou_nms_mmcv
    return diou_nms_mmcv


def _diou_nms(backend='auto'):
    from detloss_plugin.functional import diou_nms
    return lambda b, s, thr: diou_nms(b, s, thr, backend=backend)


def _cluster_diou_nms():
    from detloss_plugin.functional import cluster_diou_nms
    return cluster_diou_nms


def _mmcv_nms():
    from mmcv.ops import nms
    return nms


def _torchvision_nms():
    import torchvision.ops
    return torchvision.ops.nms


def _kept(out):
    keep = out[1] if isinstance(out, tuple) else out
    return int(keep.numel())


CASES = [
    Case('diou_nms', 'DIoU-NMS vs plain NMS (thr 0.5)', SIZES, QUICK, detections, [
        nms_contender('detloss diou_nms_mmcv', _diou_nms_mmcv, ref=True),
        nms_contender('detloss diou_nms', _diou_nms),
        nms_contender('detloss diou_nms (torch backend)', lambda: _diou_nms('torch'),
                      max_n=10000, devices=('cpu',)),
        nms_contender('detloss cluster_diou_nms', _cluster_diou_nms, max_n=10000),
        nms_contender('mmcv.ops.nms', _mmcv_nms),
        nms_contender('torchvision.ops.nms', _torchvision_nms),
    ], syncs=True, value=_kept, min_run_time=1.0,
        note='detloss runs DIoU-NMS (beta 1); the peers run plain IoU NMS'),
]

_EXTRAS: dict = {}


def run(args):
    _EXTRAS.clear()
    return measure_cases(CASES, args, _EXTRAS)


def extras(args) -> dict:
    """Per contender and size: ``value`` (boxes kept) and ``host_syncs``."""
    return dict(_EXTRAS)


if __name__ == '__main__':
    raise SystemExit(standalone(run, extras, description=__doc__))
