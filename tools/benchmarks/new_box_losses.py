#!/usr/bin/env python
"""Benchmark suite ``new_box_losses``: SIoU, Alpha-IoU and Wise-IoU (forward + backward)
against mmdet's ``SIoULoss`` and detloss's CIoU, and Cluster-DIoU-NMS against
``diou_nms`` (C and torch backends) and mmcv's ``nms`` at 1k and 10k boxes.

    python -m tools.benchmarks.new_box_losses --threads 1          # standalone
    python -m tools.benchmarks.new_box_losses --quick --threads 1  # smaller, shorter
    python -m tools.benchmark --suite new_box_losses               # through the dispatcher

Contract (HELPERS.md): ``run(args) -> list`` of ``torch.utils.benchmark`` Measurements
(label / sub_label / description for ``Compare``), ``extras(args) -> dict`` for numbers
that are not times; ``args`` has ``.device``, ``.threads`` (list of int), ``.quick``.

What is timed. A loss contender does what a head does: its registered module called
with a per-box weight and an ``avg_factor``, then ``backward()`` into the leaf ``pred``
(``Tensor[n, 4]`` float32). WIoU runs in training mode (its running mean is updated
every call). mmdet's ``SIoULoss`` runs with ``neg_gamma=True``, the paper's distance
cost and the definition detloss computes. NMS: ``n`` boxes around ``n / 25`` objects,
uniform scores, IoU threshold 0.5; detloss's two functions compute DIoU-NMS (beta 1),
mmcv's ``nms`` plain IoU NMS (a cheaper criterion, so the kept counts differ).
"""
import argparse
import importlib
import math
import sys
from types import SimpleNamespace
from typing import Dict, List

import torch
from torch.utils import benchmark

LOSS_SIZES = (1000, 100000)
LOSS_SIZES_QUICK = (1000, 10000)
NMS_SIZES = (1000, 10000)
MIN_RUN_TIME = 2.0
MIN_RUN_TIME_QUICK = 0.3


def loss_boxes(n: int, device: str, seed: int = 0):
    """Targets over a 1333 x 800 image (sides log-uniform in [16, 512]); predictions
    around them (centre shift N(0, 0.2 side), sides times exp(N(0, 0.3)))."""
    g = torch.Generator().manual_seed(seed)
    side = torch.exp(math.log(16) + torch.rand(n, 2, generator=g) * math.log(32))
    ctr = torch.rand(n, 2, generator=g) * torch.tensor([1333.0, 800.0])
    p_ctr = ctr + torch.randn(n, 2, generator=g) * 0.2 * side
    p_side = side * torch.exp(torch.randn(n, 2, generator=g) * 0.3)
    target = torch.cat([ctr - side / 2, ctr + side / 2], 1)
    pred = torch.cat([p_ctr - p_side / 2, p_ctr + p_side / 2], 1)
    weight = (torch.rand(n, generator=g) > 0.1).float()
    return pred.to(device), target.to(device), weight.to(device)


def nms_boxes(n: int, device: str, seed: int = 0):
    """``n`` boxes around ``n / 25`` objects, uniform scores."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, n // 25)
    side = torch.exp(math.log(16) + torch.rand(k, 2, generator=g) * math.log(32))
    ctr = torch.rand(k, 2, generator=g) * torch.tensor([1333.0, 800.0])
    idx = torch.randint(0, k, (n,), generator=g)
    c = ctr[idx] + torch.randn(n, 2, generator=g) * 0.1 * side[idx]
    s = side[idx] * torch.exp(torch.randn(n, 2, generator=g) * 0.1)
    boxes = torch.cat([c - s / 2, c + s / 2], 1)
    return boxes.to(device), torch.rand(n, generator=g).to(device)


def _loss_contenders():
    import detloss_plugin  # noqa: F401
    from detloss_plugin.models.losses import AlphaIoULoss, CIoULoss, SIoULoss, WIoULoss
    out = {
        'detloss SIoULoss (paper form)': lambda: SIoULoss(form='paper', eps=1e-7),
        'detloss AlphaIoULoss (ciou, 3)': lambda: AlphaIoULoss(),
        'detloss WIoULoss v3 (train)': lambda: WIoULoss().train(),
        'detloss WIoULoss v1': lambda: WIoULoss(version='v1'),
        'detloss CIoULoss (ungated)': lambda: CIoULoss(alpha_gate=False, eps=1e-7),
    }
    try:
        from mmdet.models.losses import SIoULoss as MMSIoULoss
        out['mmdet SIoULoss (neg_gamma)'] = lambda: MMSIoULoss(neg_gamma=True, eps=1e-7)
    except ImportError as err:  # reported, never skipped silently
        print(f'MISSING mmdet SIoULoss: {err}', file=sys.stderr)
    return out


def _nms_contenders(device: str):
    from detloss_plugin.functional import cluster_diou_nms, diou_nms
    out = {
        'detloss cluster_diou_nms': lambda b, s: cluster_diou_nms(b, s, 0.5),
        'detloss diou_nms (torch)': lambda b, s: diou_nms(b, s, 0.5, backend='torch'),
    }
    if device == 'cpu':
        out['detloss diou_nms (C)'] = lambda b, s: diou_nms(b, s, 0.5, backend='c')
    try:
        mmcv_nms = importlib.import_module('mmcv.ops').nms
        out['mmcv nms (plain IoU)'] = lambda b, s: mmcv_nms(b, s, 0.5)
    except ImportError as err:
        print(f'MISSING mmcv nms: {err}', file=sys.stderr)
    return out


def run(args) -> List[benchmark.Measurement]:
    device = args.device
    quick = bool(args.quick)
    min_time = MIN_RUN_TIME_QUICK if quick else MIN_RUN_TIME
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for n in (LOSS_SIZES_QUICK if quick else LOSS_SIZES):
            pred, target, weight = loss_boxes(n, device)
            avg = weight.sum()
            for name, make in _loss_contenders().items():
                module = make().to(device)
                x = pred.clone().requires_grad_()

                def step(module=module, x=x):
                    x.grad = None
                    module(x, target, weight, avg_factor=avg).backward()

                step()  # warm-up: kernel builds, lazy imports
                timer = benchmark.Timer(
                    stmt='step()', globals={'step': step}, num_threads=threads,
                    label='box losses, forward + backward', sub_label=f'n={n}',
                    description=name)
                results.append(timer.blocked_autorange(min_run_time=min_time))
        for n in NMS_SIZES:
            boxes, scores = nms_boxes(n, device)
            for name, fn in _nms_contenders(device).items():
                fn(boxes, scores)  # warm-up
                timer = benchmark.Timer(
                    stmt='fn(boxes, scores)', num_threads=threads,
                    globals={'fn': fn, 'boxes': boxes, 'scores': scores},
                    label='NMS, iou_threshold 0.5', sub_label=f'n={n}', description=name)
                results.append(timer.blocked_autorange(min_run_time=min_time))
    return results


def extras(args) -> Dict[str, object]:
    """Gradient agreement with mmdet's SIoU (neg_gamma=True) and the kept counts."""
    from detloss_plugin.functional import cluster_diou_nms, diou_nms
    from detloss_plugin.models.losses import SIoULoss
    out: Dict[str, object] = {}
    pred, target, weight = loss_boxes(10000, args.device, seed=1)
    try:
        from mmdet.models.losses import SIoULoss as MMSIoULoss
        grads = []
        for module in (SIoULoss(form='paper', eps=1e-7), MMSIoULoss(neg_gamma=True, eps=1e-7)):
            x = pred.clone().requires_grad_()
            module(x, target, weight, avg_factor=weight.sum()).backward()
            grads.append(x.grad)
        out['siou grad max abs diff vs mmdet (neg_gamma=True)'] = float(
            (grads[0] - grads[1]).abs().max())
        out['siou grad max abs'] = float(grads[0].abs().max())
    except ImportError as err:
        out['siou grad max abs diff vs mmdet'] = f'MISSING: {err}'
    for n in NMS_SIZES:
        boxes, scores = nms_boxes(n, args.device)
        keep_c = cluster_diou_nms(boxes, scores, 0.5)
        keep_g = diou_nms(boxes, scores, 0.5)
        out[f'nms n={n} kept (cluster, greedy, identical)'] = (
            len(keep_c), len(keep_g), bool(torch.equal(keep_c.cpu(), keep_g.cpu())))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, nargs='+', default=[1])
    parser.add_argument('--quick', action='store_true')
    ns = parser.parse_args(argv)
    args = SimpleNamespace(device=ns.device, threads=ns.threads, quick=ns.quick)
    results = run(args)
    compare = benchmark.Compare(results)
    compare.print()
    for key, value in extras(args).items():
        print(f'{key}: {value}')


if __name__ == '__main__':
    main()
