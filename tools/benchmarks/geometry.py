"""Pairwise box similarities (the N x M matrices of assigners and matchers) and NWD-NMS.

    python tools/benchmark.py --suite geometry [--device cuda] [--threads 1 2] [--quick]

Pairwise: ``n`` ground truths against ``100 n`` priors (``n`` = 10, 50: the sizes an
assigner sees), detloss's ``pairwise_similarity`` in every mode against mmdet's
``bbox_overlaps`` (IoU and GIoU: the modes both have). NMS: ``n`` tiny detections
(2-32 px, clustered around n/25 objects in an 800 x 800 image), detloss's ``nwd_nms``
(threshold 0.85) against its ``diou_nms`` and mmcv's IoU ``nms`` (different criteria,
the kept counts differ). ``extras``: the sum of each matrix (detloss and mmdet agree on
IoU and GIoU) and the kept counts.
"""
import math

import torch

from tools.benchmarks._common import Case, Contender, measure_cases, standalone

MODES = ('iou', 'giou', 'diou', 'ciou', 'siou', 'eiou', 'nwd')


def _boxes(n: int, g: torch.Generator, size: float = 800.0, lo: float = 2.0,
           hi: float = 64.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.exp(torch.rand(n, 2, generator=g) * math.log(hi / lo) + math.log(lo))
    return torch.cat([xy, xy + wh], 1)


def pair_inputs(n: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(gts=_boxes(n, g).to(device), priors=_boxes(100 * n, g).to(device))


def tiny_detections(n: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 25)
    centre = torch.rand(objects, 2, generator=g) * 800
    side = torch.exp(torch.rand(objects, 2, generator=g) * math.log(16) + math.log(2))
    pick = torch.randint(0, objects, (n,), generator=g)
    c = centre[pick] + torch.randn(n, 2, generator=g) * 0.3 * side[pick]
    s = side[pick] * torch.exp(torch.randn(n, 2, generator=g) * 0.2)
    return dict(boxes=torch.cat([c - s / 2, c + s / 2], 1).to(device),
                scores=torch.rand(n, generator=g).to(device))


def _pairwise(mode):
    def build(inputs):
        from detloss_plugin.functional import pairwise_similarity
        gts, priors = inputs['gts'], inputs['priors']
        return lambda: pairwise_similarity(gts, priors, mode)
    return Contender(f'detloss pairwise {mode}', build, ref=mode == 'iou')


def _mmdet(mode):
    def build(inputs):
        from mmdet.structures.bbox import bbox_overlaps
        gts, priors = inputs['gts'], inputs['priors']
        return lambda: bbox_overlaps(gts, priors, mode)
    return Contender(f'mmdet bbox_overlaps {mode}', build)


def _nms(description, make, ref=False):
    def build(inputs):
        fn = make()
        boxes, scores = inputs['boxes'], inputs['scores']
        return lambda: fn(boxes, scores)
    return Contender(description, build, ref=ref)


def _nwd_nms():
    from detloss_plugin.functional import nwd_nms
    return lambda b, s: nwd_nms(b, s, 0.85)


def _diou_nms():
    from detloss_plugin.functional import diou_nms
    return lambda b, s: diou_nms(b, s, 0.5)


def _mmcv_nms():
    from mmcv.ops import nms
    return lambda b, s: nms(b, s, 0.5)


def _kept(out):
    keep = out[1] if isinstance(out, tuple) else out
    return int(keep.numel())


CASES = [
    Case('geometry_pairwise', 'pairwise similarity, n gts x 100 n priors', [10, 50], [10],
         pair_inputs, [_pairwise(m) for m in MODES] + [_mmdet('iou'), _mmdet('giou')],
         size_name=lambda n: f'{n}x{100 * n}', value=lambda out: float(out.double().sum()),
         min_run_time=0.5),
    Case('nwd_nms', 'NWD-NMS (0.85) vs DIoU-NMS / IoU NMS (0.5), tiny boxes',
         [1000, 4000], [1000], tiny_detections, [
             _nms('detloss nwd_nms', _nwd_nms, ref=True),
             _nms('detloss diou_nms', _diou_nms),
             _nms('mmcv.ops.nms', _mmcv_nms)],
         value=_kept, min_run_time=0.5),
]

_EXTRAS: dict = {}


def run(args):
    _EXTRAS.clear()
    return measure_cases(CASES, args, _EXTRAS)


def extras(args) -> dict:
    return dict(_EXTRAS)


if __name__ == '__main__':
    raise SystemExit(standalone(run, extras, description=__doc__))
