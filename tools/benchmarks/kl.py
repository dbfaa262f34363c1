#!/usr/bin/env python
"""Benchmark suite ``kl``: the KL loss and variance voting (He et al., CVPR 2019).

    python -m tools.benchmarks.kl --threads 1          # standalone, prints Compare
    python -m tools.benchmarks.kl --quick --device cpu
    python -m tools.benchmark --suite kl               # through the dispatcher

Cases (``torch.utils.benchmark``; label / sub_label / description for ``Compare``). The
contenders of a case are timed in interleaved rounds (3 quick, 7 full) of
``blocked_autorange`` and each one's blocks merged: the median is over all blocks.

- ``kl_loss fwd+bwd``: what :class:`~detloss_plugin.KLBBoxHead` does per step: the
  registered module on ``n`` positive RoIs' deltas and log-variances (``Tensor[n, 4]``
  each, float32) with a weight and ``avg_factor``, then ``backward()`` into both leaves;
  against detloss's ``SmoothL1Loss`` (the same head without the variance: one input fewer).
  Sizes: 512 (one image's sampled RoIs) to 16k (a large batch).
- ``var_voting``: the kept boxes of one image voted over all candidates (``N``
  candidates of 4 classes around N/20 objects, 100 kept), batched
  (:func:`detloss_plugin.functional.var_voting`) against a straightforward loop over the
  kept boxes (torch ops per kept box, the shape of the reference's per-box loop).

``extras(args)`` returns, per size, the largest difference between the batched and the
looped voting (they compute the same thing).
"""
import argparse

import torch
import torch.utils.benchmark as benchmark

LOSS_SIZES = (512, 4096, 16384)
LOSS_SIZES_QUICK = (512, 4096)
VOTE_SIZES = (1000, 4000)
VOTE_SIZES_QUICK = (1000,)
NUM_KEPT = 100


def _loss_inputs(n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, 4, generator=g).to(device).requires_grad_(True)
    log_var = (torch.randn(n, 4, generator=g) * 0.5).to(device).requires_grad_(True)
    target = (torch.randn(n, 4, generator=g) * 2).to(device)
    weight = torch.ones(n, 4, device=device)
    return pred, log_var, target, weight


def _candidates(n, device, seed=0, num_classes=4):
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 20)
    centre = torch.rand(objects, 2, generator=g) * 800
    size = torch.rand(objects, 2, generator=g) * 200 + 20
    which = torch.randint(0, objects, (n,), generator=g)
    c = centre[which] + torch.randn(n, 2, generator=g) * size[which] * 0.1
    s = size[which] * torch.exp(torch.randn(n, 2, generator=g) * 0.1)
    boxes = torch.cat([c - s / 2, c + s / 2], dim=1)
    variances = torch.rand(n, 4, generator=g) * 10 + 0.1
    scores = torch.rand(n, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    keep = torch.randperm(n, generator=g)[:NUM_KEPT]
    return [t.to(device) for t in (boxes, scores, variances, keep, labels)]


def looped_var_voting(boxes, scores, variances, keep, sigma_t, idxs):
    """One kept box at a time (torch ops over the candidates): the loop that the
    batched form replaces."""
    from detloss_plugin.functional import box_pair_geometry

    out = []
    for k in keep.tolist():
        iou = box_pair_geometry(boxes[k].expand_as(boxes), boxes).iou
        votes = (iou > 0) & (idxs == idxs[k])
        votes[k] = True
        p = torch.exp(-(1 - iou[votes]).square() / sigma_t)
        w = p[:, None] / variances[votes]
        out.append((w * boxes[votes]).sum(0) / w.sum(0))
    return torch.stack(out)


def _measure_interleaved(contenders, globals_, label, sub_label, threads, quick):
    """Time each ``(stmt, description)`` in rounds, round-robin (so that the drift of a
    shared machine hits all contenders alike), and merge each one's blocks into one
    Measurement (median over all blocks)."""
    timers = [benchmark.Timer(stmt=stmt, globals=globals_, label=label, sub_label=sub_label,
                              description=description, num_threads=threads)
              for stmt, description in contenders]
    for t in timers:  # warm-up (lazy imports, first-call allocations)
        t.timeit(2)
    rounds = 3 if quick else 7
    blocks = [[] for _ in timers]
    for r in range(rounds):
        for k in range(len(timers)):
            i = (r + k) % len(timers)
            blocks[i].append(timers[i].blocked_autorange(min_run_time=0.1 if quick else 0.3))
    return [benchmark.Measurement.merge(b)[0] for b in blocks]


def run(args) -> list:
    import detloss_plugin  # noqa: F401  (registers the modules)
    from detloss_plugin.functional import var_voting
    from detloss_plugin.models.losses import KLLoss, SmoothL1Loss

    device = torch.device(args.device)
    kl, sl1 = KLLoss(), SmoothL1Loss(beta=1.0)
    results = []
    loss_sizes = LOSS_SIZES_QUICK if args.quick else LOSS_SIZES
    vote_sizes = VOTE_SIZES_QUICK if args.quick else VOTE_SIZES
    for threads in args.threads:
        for n in loss_sizes:
            pred, log_var, target, weight = _loss_inputs(n, device)
            env = dict(kl=kl, sl1=sl1, pred=pred, log_var=log_var, target=target,
                       weight=weight, n=n)
            results += _measure_interleaved(
                [('kl(pred, log_var, target, weight, avg_factor=n).backward()',
                  f'KLLoss ({device.type}, {threads}t)'),
                 ('sl1(pred, target, weight, avg_factor=n).backward()',
                  f'SmoothL1Loss ({device.type}, {threads}t)')],
                env, 'kl_loss fwd+bwd', f'n={n}', threads, args.quick)
        for n in vote_sizes:
            boxes, scores, variances, keep, labels = _candidates(n, device)
            env = dict(var_voting=var_voting, looped=looped_var_voting, boxes=boxes,
                       scores=scores, variances=variances, keep=keep, labels=labels)
            results += _measure_interleaved(
                [('var_voting(boxes, scores, variances, keep, 0.01, labels)',
                  f'batched ({device.type}, {threads}t)'),
                 ('looped(boxes, scores, variances, keep, 0.01, labels)',
                  f'loop per kept box ({device.type}, {threads}t)')],
                env, 'var_voting', f'N={n}, kept={NUM_KEPT}', threads, args.quick)
    return results


def extras(args) -> dict:
    from detloss_plugin.functional import var_voting

    device = torch.device(args.device)
    out = {}
    for n in (VOTE_SIZES_QUICK if args.quick else VOTE_SIZES):
        boxes, scores, variances, keep, labels = _candidates(n, device)
        a = var_voting(boxes, scores, variances, keep, 0.01, labels)[:, :4]
        b = looped_var_voting(boxes, scores, variances, keep, 0.01, labels)
        out[f'var_voting max |batched - loop| px, N={n}'] = float((a - b).abs().max())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, nargs='+', default=[1])
    p.add_argument('--quick', action='store_true')
    args = p.parse_args(argv)
    results = run(args)
    compare = benchmark.Compare(results)
    compare.trim_significant_figures()
    compare.print()
    for k, v in extras(args).items():
        print(f'{k}: {v:.3g}')


if __name__ == '__main__':
    main()
