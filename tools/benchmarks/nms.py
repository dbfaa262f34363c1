"""Benchmark suite ``nms``: DIoU-NMS at beta = 1.0 and beta = 0.6 against mmcv's plain
NMS, at 1k and 10k boxes (``--quick``: 1k only).

Contract of ``tools/benchmarks/<suite>.py`` (``python -m tools.benchmark --suite nms``
dispatches here): ``run(args)`` returns ``torch.utils.benchmark`` Measurements (label:
the input, sub_label: the contender, description: the number of boxes), ``args`` has
``.device``, ``.threads`` and ``.quick``. ``extras(args)`` returns the number of boxes
each contender keeps (DIoU-NMS keeps more than NMS: the distance penalty spares boxes
of nearby objects). Standalone::

    python -m tools.benchmarks.nms [--device cpu|cuda] [--threads 1 4] [--quick]

Inputs (deterministic): **clustered**, what a detector hands to NMS: ``n`` boxes around
``n / 25`` objects in a 1333 x 800 image (centre jitter N(0, 0.15 side), sides scaled by
exp(N(0, 0.2)), object sides log-uniform in [32, 400]), uniform scores; and
**scattered**, ``n`` boxes of side 10..40 spread over a square of side ``50 sqrt(n)``
(few overlaps: almost every box is kept, the worst case of greedy NMS, O(n^2) pairs).
IoU threshold 0.5.
"""
import argparse
import math
import sys
from typing import Callable, Dict, List, Optional

import torch
from torch.utils import benchmark

from detloss_plugin.functional.nms import diou_nms

IOU_THRESHOLD = 0.5
SIZES, QUICK_SIZES = [1000, 10000], [1000]


def clustered(n: int, seed: int = 0):
    """``(boxes Tensor[n, 4], scores Tensor[n])`` around n / 25 objects (module doc)."""
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 25)
    centre = torch.rand(objects, 2, generator=g) * torch.tensor([1333.0, 800.0])
    side = torch.exp(torch.rand(objects, 2, generator=g) * math.log(400 / 32)
                     + math.log(32))
    pick = torch.randint(0, objects, (n,), generator=g)
    c = centre[pick] + torch.randn(n, 2, generator=g) * 0.15 * side[pick]
    s = side[pick] * torch.exp(torch.randn(n, 2, generator=g) * 0.2)
    return torch.cat([c - s / 2, c + s / 2], 1), torch.rand(n, generator=g)


def scattered(n: int, seed: int = 0):
    """``(boxes, scores)``: n boxes of side 10..40 over a square of side 50 sqrt(n)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * (50 * math.sqrt(n))
    wh = 10 + 30 * torch.rand(n, 2, generator=g)
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


def _mmcv_nms() -> Optional[Callable]:
    try:
        from mmcv.ops import nms
    except ImportError as err:  # reported, never hidden
        print(f'[nms suite] mmcv.ops.nms unavailable: {err}', file=sys.stderr)
        return None
    return nms


def contenders() -> Dict[str, Callable]:
    """name -> fn(boxes, scores) returning the kept indices."""
    out = {
        'detloss diou_nms beta=1.0':
            lambda b, s: diou_nms(b, s, IOU_THRESHOLD, beta=1.0),
        'detloss diou_nms beta=0.6':
            lambda b, s: diou_nms(b, s, IOU_THRESHOLD, beta=0.6),
    }
    nms = _mmcv_nms()
    if nms is not None:
        out['mmcv.ops.nms'] = lambda b, s: nms(b, s, IOU_THRESHOLD)[1]
    return out


def _sizes(args) -> List[int]:
    return QUICK_SIZES if getattr(args, 'quick', False) else SIZES


def run(args) -> list:
    device = torch.device(getattr(args, 'device', 'cpu'))
    results = []
    for n in _sizes(args):
        boxes, scores = clustered(n)
        boxes, scores = boxes.to(device), scores.to(device)
        for name, fn in contenders().items():
            for threads in getattr(args, 'threads', [1]):
                timer = benchmark.Timer(
                    stmt='fn(boxes, scores)',
                    globals=dict(fn=fn, boxes=boxes, scores=scores),
                    num_threads=threads, label='NMS, clustered boxes (thr 0.5)',
                    sub_label=name, description=f'n={n}')
                results.append(timer.blocked_autorange(min_run_time=0.5))
    return results


def extras(args) -> dict:
    """Number of boxes kept by each contender, per size."""
    out = {}
    for n in _sizes(args):
        boxes, scores = clustered(n)
        for name, fn in contenders().items():
            out[f'kept {name} n={n}'] = int(fn(boxes, scores).numel())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, nargs='+', default=[1])
    parser.add_argument('--quick', action='store_true', help='1k boxes only')
    args = parser.parse_args(argv)
    compare = benchmark.Compare(run(args))
    compare.print()
    for k, v in extras(args).items():
        print(f'{k}: {v}')


if __name__ == '__main__':
    main()
