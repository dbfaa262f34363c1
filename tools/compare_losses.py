#!/usr/bin/env python
"""Train the same detector on the same data with several losses and seeds; tabulate,
compare with a baseline over the seeds, and plot.

CPU, the quick-start detector on the synthetic dataset (a few minutes per run)::

    python tools/compare_losses.py --losses giou l1 diou ciou --seeds 0 1 2 \\
        --work-dir work_dirs/compare --skip-existing

GPUs, COCO (each run trained with tools/dist_train.sh on 8 GPUs)::

    python tools/compare_losses.py --config-dir configs/coco/retinanet \\
        --pattern 'retinanet_r50_fpn_{}_1x_coco.py' --losses giou diou ciou --gpus 8 \\
        --seeds 0 1 2 --work-dir work_dirs/compare_coco

A loss name ``X`` selects ``<config-dir>/<pattern with X>``; an argument ending in
``.py`` is taken as a config path. Every run of a seed uses that seed
(``randomness.seed``), the same data and the same schedule; ``--cfg-options`` apply to
all of them (for example ``train_cfg.max_iters=300``). Each run is ``tools/train.py``
then ``tools/test.py`` on its last checkpoint, in subprocesses, in
``<work-dir>/seed<S>/<loss>/`` (with ``--seeds``) or ``<work-dir>/<loss>/`` (with a single
``--seed``, the layout of earlier versions).

Resuming (``--skip-existing``): a run that has test metrics is read, not repeated; a run
killed during training continues from its last checkpoint (``tools/train.py --resume``,
marked ``resumed`` in the results: mmengine's resume does not restore the data order,
so it is not bit-identical to an uninterrupted run); a run killed during testing is
only tested. Without ``--skip-existing`` every run is trained from scratch.
``--report-only`` trains nothing: it tabulates the finished runs and lists the others
(to read a long comparison while it runs).

Results, in ``<work-dir>/``:

- ``results.md``: every run (loss, seed, mAP, AP50, AP75, the validation loss
  ``val/loss`` at the last validation when the config logs it,
  ``detloss_plugin.ValLossLoop``, and the training time); per loss the mean +- sample
  standard deviation over its seeds; the paired comparison of ``--metric`` with
  ``--baseline`` (default: the first loss) over the seeds both have: mean difference,
  95% t-interval (mean +- t(0.975, n-1) * sd / sqrt(n)), in how many seeds the loss is
  better, and whether the interval excludes 0 ("outside seed noise"); the seed noise
  pooled over the losses (sample standard deviation assuming one variance for all, and
  the difference two n-seed means need to be apart beyond it);
- ``results.json``: the same, machine-readable (``runs``, ``summary``, ``paired``);
- ``comparison.png``: ``--metric`` against iteration (mean over seeds), its final value
  (mean +- std, one dot per seed) and the paired differences with their intervals.

``--metric`` is ``mAP`` (default), ``AP50``, ``AP75`` (from the test run) or a logged
validation loss (``val/loss``, ``val/loss_bbox``, ... at the last validation; lower is
better for every metric whose name contains ``loss``).
"""
import argparse
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART_DIR = osp.join(REPO, 'configs', 'quickstart')
QUICKSTART_PATTERN = 'retinanet_r18-slim_{}_synthetic.py'
# final metrics of tools/test.py and their names in the validation logs
AP_KEYS = {'mAP': 'coco/bbox_mAP', 'AP50': 'coco/bbox_mAP_50', 'AP75': 'coco/bbox_mAP_75'}
VAL_PREFIX = 'val/'

# two-sided 95% quantiles t(0.975, df) of Student's t for df = 1..30
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Compare losses on one detector over seeds')
    p.add_argument('--losses', nargs='+', required=True,
                   help='loss names (e.g. l1 giou diou ciou) or config paths')
    p.add_argument('--config-dir', default=QUICKSTART_DIR)
    p.add_argument('--pattern', default=QUICKSTART_PATTERN,
                   help='config file name with {} for the loss name')
    p.add_argument('--work-dir', default='work_dirs/compare_losses')
    p.add_argument('--gpus', type=int, default=1,
                   help='> 1: train and test with tools/dist_train.sh / dist_test.sh')
    p.add_argument('--seed', type=int, default=0,
                   help='one seed, runs in <work-dir>/<loss> (ignored with --seeds)')
    p.add_argument('--seeds', type=int, nargs='+',
                   help='several seeds, runs in <work-dir>/seed<S>/<loss>')
    p.add_argument('--baseline', help='loss the others are compared with (default: the first)')
    p.add_argument('--metric', default='mAP',
                   help='mAP, AP50, AP75 or a logged validation loss (val/loss, val/loss_bbox...)')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='k=v overrides passed to every train and test run')
    p.add_argument('--skip-existing', action='store_true',
                   help='reuse finished runs; resume interrupted ones')
    p.add_argument('--report-only', action='store_true',
                   help='train nothing: tabulate the finished runs, list the missing ones')
    args = p.parse_args(argv)
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        p.error(f'--seeds has duplicates: {args.seeds}')
    if args.metric not in AP_KEYS and not args.metric.startswith(VAL_PREFIX):
        p.error(f'--metric must be one of {sorted(AP_KEYS)} or start with {VAL_PREFIX!r} '
                f'(a logged validation loss), got {args.metric!r}')
    return args


def resolve(name: str, config_dir: str, pattern: str):
    if name.endswith('.py'):
        return osp.splitext(osp.basename(name))[0], name
    path = osp.join(config_dir, pattern.format(name))
    if not osp.isfile(path):
        head, tail = pattern.split('{}')
        available = sorted(f[len(head):len(f) - len(tail)] for f in os.listdir(config_dir)
                           if f.startswith(head) and f.endswith(tail))
        raise SystemExit(f'no config for loss {name!r}: {path} does not exist; '
                         f'available: {available}')
    return name, path


def run_dir(work_dir: str, name: str, seed: int, seeded_layout: bool) -> str:
    parts = [work_dir, f'seed{seed}', name] if seeded_layout else [work_dir, name]
    return osp.abspath(osp.join(*parts))


def last_checkpoint(work_dir: str) -> Optional[str]:
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        ckpt = f.read().strip()
    return ckpt if ckpt and osp.isfile(ckpt) else None


def run(cmd, log_path: str) -> float:
    print('[compare] ' + ' '.join(cmd), flush=True)
    t0 = time.time()
    with open(log_path, 'a') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f'command failed (exit {proc.returncode}), see {log_path}:\n{tail}')
    return time.time() - t0


def _files(wd: str):
    return (osp.join(wd, 'test', 'test_metrics.json'), osp.join(wd, 'train_time.json'))


def train_and_test(name: str, config: str, seed: int, wd: str, args) -> dict:
    """Train and test one (loss, seed) run in ``wd`` unless ``--skip-existing`` finds
    it done; resume or only test an interrupted one. Returns :func:`read_run`'s row."""
    metrics_file, timing_file = _files(wd)
    if args.skip_existing and osp.isfile(metrics_file) and osp.isfile(timing_file):
        print(f'[compare] {name} seed {seed}: reusing {metrics_file}', flush=True)
        return read_run(name, config, seed, wd)
    opts = [f'randomness.seed={seed}'] + list(args.cfg_options)
    tools = osp.join(REPO, 'tools')
    if not (args.skip_existing and osp.isfile(timing_file)):
        os.makedirs(wd, exist_ok=True)
        resume = args.skip_existing and last_checkpoint(wd) is not None
        if args.gpus > 1:
            train = ['bash', osp.join(tools, 'dist_train.sh'), config, str(args.gpus)]
        else:
            train = [sys.executable, osp.join(tools, 'train.py'), config]
        seconds = run(train + ['--work-dir', wd] + (['--resume'] if resume else [])
                      + ['--cfg-options'] + opts, osp.join(wd, 'compare_train.log'))
        with open(timing_file, 'w') as f:
            json.dump(dict(train_seconds=seconds, resumed=resume), f)
    ckpt = last_checkpoint(wd)
    if ckpt is None:
        raise SystemExit(f'{wd}: training left no checkpoint (last_checkpoint)')
    if args.gpus > 1:
        test_cmd = ['bash', osp.join(tools, 'dist_test.sh'), config, ckpt, str(args.gpus)]
    else:
        test_cmd = [sys.executable, osp.join(tools, 'test.py'), config, ckpt]
    run(test_cmd + ['--work-dir', osp.join(wd, 'test'), '--cfg-options'] + opts,
        osp.join(wd, 'compare_test.log'))
    return read_run(name, config, seed, wd)


def last_validation(wd: str) -> Dict:
    """The ``val/...`` scalars of the run's last validation (``{}`` if none was logged),
    with its iteration as ``'val_step'``."""
    from detloss_plugin.engine.plots import read_scalars
    for rec in reversed(read_scalars(wd)['val']):
        values = {k: v for k, v in rec.items() if k.startswith(VAL_PREFIX)}
        if values:
            return dict(values, val_step=rec['step'])
    return {}


def read_run(name: str, config: str, seed: int, wd: str) -> dict:
    """One finished run: test metrics, training time and the last validation's losses."""
    metrics_file, timing_file = _files(wd)
    with open(metrics_file) as f:
        m = json.load(f)
    with open(timing_file) as f:
        timing = json.load(f)
    row = dict(loss=name, seed=seed,
               config=osp.relpath(config, REPO) if config.startswith(REPO) else config,
               **{k: m.get(key) for k, key in AP_KEYS.items()},
               train_seconds=timing['train_seconds'], resumed=bool(timing.get('resumed')),
               val=last_validation(wd), work_dir=wd)
    val_loss = row['val'].get('val/loss')
    print(f"[compare] {name} seed {seed}: mAP {row['mAP']:.3f}  AP50 {row['AP50']:.3f}  "
          f"AP75 {row['AP75']:.3f}" + ('' if val_loss is None else f'  val/loss {val_loss:.4f}')
          + f"  ({row['train_seconds']:.0f} s)", flush=True)
    return row


# ------------------------------------------------------------------------- statistics
def t_quantile_975(df: int) -> float:
    """t(0.975, df): the table for df <= 30, the Cornish-Fisher expansion above (error
    below 1e-4 at df = 31)."""
    if df < 1:
        raise ValueError(f'df must be >= 1, got {df}')
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def mean_std(values: Sequence[float]) -> dict:
    """``n``, ``mean`` and the sample standard deviation ``std`` (n - 1 in the
    denominator; None for one value)."""
    n = len(values)
    if n == 0:
        return dict(n=0, mean=None, std=None)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return dict(n=n, mean=mean, std=std)


def paired(values: Dict[int, float], base: Dict[int, float], lower_is_better: bool) -> dict:
    """Difference ``values - base`` over the seeds both have: mean, sample std, 95%
    t-interval (None below 2 seeds), how many seeds are better / worse / tied, and
    whether the interval excludes 0."""
    seeds = sorted(set(values) & set(base))
    diffs = [values[s] - base[s] for s in seeds]
    stats = mean_std(diffs)
    low = high = None
    if stats['n'] >= 2:
        half = t_quantile_975(stats['n'] - 1) * stats['std'] / math.sqrt(stats['n'])
        low, high = stats['mean'] - half, stats['mean'] + half
    sign = -1 if lower_is_better else 1
    return dict(seeds=seeds, diffs=diffs, mean=stats['mean'], std=stats['std'],
                low=low, high=high,
                better=sum(sign * d > 0 for d in diffs), worse=sum(sign * d < 0 for d in diffs),
                ties=sum(d == 0 for d in diffs),
                outside_noise=low is not None and (low > 0 or high < 0))


def pooled_std(groups: Sequence[Sequence[float]]) -> dict:
    """The seed noise pooled over losses (each loss's values are one group; groups of
    one value add nothing): ``std = sqrt(sum((n_i - 1) s_i^2) / df)``, ``df = sum(n_i - 1)``,
    assuming every loss has the same seed-to-seed variance. ``std`` is None for df 0."""
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    if df == 0:
        return dict(std=None, df=0)
    ss = sum(sum((v - sum(g) / len(g)) ** 2 for v in g) for g in groups if len(g) > 1)
    return dict(std=math.sqrt(ss / df), df=df)


def lower_is_better(metric: str) -> bool:
    return 'loss' in metric


def metric_value(row: dict, metric: str) -> Optional[float]:
    return row.get(metric) if metric in AP_KEYS else row['val'].get(metric)


def aggregate(rows: List[dict], names: Sequence[str], metric: str, baseline: str):
    """Per loss: mean +- std of mAP / AP50 / AP75 / ``metric`` / ``val/loss``; and the
    paired comparison of ``metric`` with ``baseline``."""
    by_loss = {n: [r for r in rows if r['loss'] == n] for n in names}
    keys = list(AP_KEYS) + [k for k in (metric, 'val/loss') if k not in AP_KEYS]
    keys = list(dict.fromkeys(keys))
    summary = []
    for name in names:
        entry = dict(loss=name, seeds=sorted(r['seed'] for r in by_loss[name]))
        for key in keys:
            entry[key] = mean_std([v for v in (metric_value(r, key) for r in by_loss[name])
                                   if v is not None])
        summary.append(entry)

    def per_seed(name):
        return {r['seed']: metric_value(r, metric) for r in by_loss[name]
                if metric_value(r, metric) is not None}

    base = per_seed(baseline)
    comparisons = [dict(loss=name, baseline=baseline, metric=metric,
                        **paired(per_seed(name), base, lower_is_better(metric)))
                   for name in names if name != baseline]
    noise = pooled_std([list(per_seed(name).values()) for name in names])
    return summary, comparisons, noise


# ----------------------------------------------------------------------------- output
def _fmt(value, digits=3) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _fmt_mean_std(stats: dict, digits=3) -> str:
    if stats['n'] == 0:
        return '-'
    if stats['n'] == 1:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} +- {stats['std']:.{digits}f}"


def _digits(metric: str) -> int:
    return 4 if lower_is_better(metric) else 3


def markdown(rows, summary, comparisons, noise, metric: str, baseline: str) -> str:
    extra = [k for k in (metric, 'val/loss') if k not in AP_KEYS]
    extra = list(dict.fromkeys(extra))
    head = ['loss', 'seed', 'mAP', 'AP50', 'AP75'] + extra + ['train time', 'config']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|---|---:|' + '---:|' * (3 + len(extra)) + '---:|---|']
    for r in rows:
        mins, secs = divmod(int(round(r['train_seconds'])), 60)
        cells = [r['loss'], str(r['seed'])] + [_fmt(r[k]) for k in AP_KEYS]
        cells += [_fmt(metric_value(r, k), 4) for k in extra]
        cells += [f"{mins}m{secs:02d}s" + (' (resumed)' if r.get('resumed') else ''),
                  f"`{r['config']}`"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    keys = list(AP_KEYS) + extra
    lines += ['', 'Mean +- sample standard deviation over the seeds:', '',
              '| loss | seeds | ' + ' | '.join(keys) + ' |',
              '|---|---|' + '---:|' * len(keys)]
    for s in summary:
        lines.append(f"| {s['loss']} | {', '.join(map(str, s['seeds']))} | "
                     + ' | '.join(_fmt_mean_std(s[k], _digits(k)) for k in keys) + ' |')
    better = 'lower' if lower_is_better(metric) else 'higher'
    lines += ['', f'Paired with {baseline} ({metric}, difference = loss - {baseline}, '
              f'{better} is better; 95% t-interval over the seeds both have):', '',
              '| loss | seeds | difference | 95% interval | better in | outside seed noise |',
              '|---|---|---:|---|---|---|']
    d = _digits(metric)
    for c in comparisons:
        interval = '-' if c['low'] is None else f"[{c['low']:+.{d}f}, {c['high']:+.{d}f}]"
        mean = '-' if c['mean'] is None else f"{c['mean']:+.{d}f}"
        verdict = '-' if c['low'] is None else ('yes' if c['outside_noise'] else 'no')
        lines.append(f"| {c['loss']} | {', '.join(map(str, c['seeds'])) or '-'} | {mean} | "
                     f"{interval} | {c['better']} of {len(c['seeds'])} | {verdict} |")
    if noise['std'] is not None:
        t = t_quantile_975(noise['df'])
        lsd = ', '.join(f"{t * noise['std'] * math.sqrt(2 / n):.{d}f} ({n} seed"
                        + ('s)' if n > 1 else ')') for n in (1, 2, 3, 5))
        lines += ['', f"Seed noise of {metric} pooled over the losses (same variance "
                  f"assumed): standard deviation {noise['std']:.{d}f} ({noise['df']} degrees "
                  f"of freedom); two means of n seeds each differ beyond it (95%) by more "
                  f"than t * sd * sqrt(2 / n) = {lsd}."]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    runs = [resolve(n, args.config_dir, args.pattern) for n in args.losses]
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise SystemExit(f'--losses has duplicates: {names}')
    baseline = args.baseline or names[0]
    if baseline not in names:
        raise SystemExit(f'--baseline {baseline!r} is not among --losses {names}')
    seeded_layout = args.seeds is not None
    seeds = args.seeds if seeded_layout else [args.seed]
    os.makedirs(args.work_dir, exist_ok=True)
    rows = []
    for s in seeds:
        for n, c in runs:
            wd = run_dir(args.work_dir, n, s, seeded_layout)
            if not args.report_only:
                rows.append(train_and_test(n, c, s, wd, args))
            elif all(osp.isfile(f) for f in _files(wd)):
                rows.append(read_run(n, c, s, wd))
            else:
                print(f'[compare] {n} seed {s}: not finished ({wd})', flush=True)
    summary, comparisons, noise = aggregate(rows, names, args.metric, baseline)
    table = markdown(rows, summary, comparisons, noise, args.metric, baseline)
    md = osp.join(args.work_dir, 'results.md')
    with open(md, 'w') as f:
        f.write(table)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(metric=args.metric, baseline=baseline, seeds=seeds, runs=rows,
                       summary=summary, paired=comparisons, seed_noise=noise), f, indent=1)
    from detloss_plugin.engine.plots import plot_seed_comparison
    key = AP_KEYS.get(args.metric, args.metric)
    png = plot_seed_comparison(
        {n: {r['seed']: r['work_dir'] for r in rows if r['loss'] == n} for n in names},
        {n: {r['seed']: metric_value(r, args.metric) for r in rows if r['loss'] == n}
         for n in names},
        comparisons, osp.join(args.work_dir, 'comparison.png'), metric=args.metric,
        curve_key=key,
        title=f'same detector and data, seeds {", ".join(map(str, seeds))}: {args.metric}')
    print('\n' + table)
    print(f'[compare] table: {osp.abspath(md)}\n[compare] plot: {osp.abspath(png)}')


if __name__ == '__main__':
    main()
