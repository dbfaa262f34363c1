#!/usr/bin/env python
"""Train the same detector on the same data with several losses; tabulate and plot.

CPU, the quick-start detector on the synthetic dataset (a few minutes per loss)::

    python tools/compare_losses.py --losses l1 giou diou ciou --work-dir work_dirs/compare

GPUs, COCO (each loss trained with tools/dist_train.sh on 8 GPUs)::

    python tools/compare_losses.py --config-dir configs/coco/retinanet \\
        --pattern 'retinanet_r50_fpn_{}_1x_coco.py' --losses giou diou ciou --gpus 8 \\
        --work-dir work_dirs/compare_coco

A loss name ``X`` selects ``<config-dir>/<pattern with X>``; an argument ending in
``.py`` is taken as a config path. Every run uses the same seed (``randomness.seed``),
the same data and the same schedule; ``--cfg-options`` apply to all of them (for
example ``train_cfg.max_iters=300``). Each run is ``tools/train.py`` then
``tools/test.py`` on its last checkpoint, in subprocesses; the results go to
``<work-dir>/results.md`` (markdown table: mAP, AP50, AP75, training time),
``<work-dir>/results.json`` and ``<work-dir>/comparison.png`` (val mAP curves and the
final metrics). ``--skip-existing`` reuses runs that already have test metrics.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART_DIR = osp.join(REPO, 'configs', 'quickstart')
QUICKSTART_PATTERN = 'retinanet_r18-slim_{}_synthetic.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Compare regression losses on one detector')
    p.add_argument('--losses', nargs='+', required=True,
                   help='loss names (e.g. l1 giou diou ciou) or config paths')
    p.add_argument('--config-dir', default=QUICKSTART_DIR)
    p.add_argument('--pattern', default=QUICKSTART_PATTERN,
                   help='config file name with {} for the loss name')
    p.add_argument('--work-dir', default='work_dirs/compare_losses')
    p.add_argument('--gpus', type=int, default=1,
                   help='> 1: train and test with tools/dist_train.sh / dist_test.sh')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='k=v overrides passed to every train and test run')
    p.add_argument('--skip-existing', action='store_true')
    return p.parse_args(argv)


def resolve(name: str, config_dir: str, pattern: str):
    if name.endswith('.py'):
        return osp.splitext(osp.basename(name))[0], name
    path = osp.join(config_dir, pattern.format(name))
    if not osp.isfile(path):
        available = sorted(
            f[len(pattern.split('{}')[0]):len(f) - len(pattern.split('{}')[1])]
            for f in os.listdir(config_dir)
            if f.startswith(pattern.split('{}')[0]) and f.endswith(pattern.split('{}')[1]))
        raise SystemExit(f'no config for loss {name!r}: {path} does not exist; '
                         f'available: {available}')
    return name, path


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def run(cmd, log_path: str) -> float:
    print('[compare] ' + ' '.join(cmd), flush=True)
    t0 = time.time()
    with open(log_path, 'w') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f'command failed (exit {proc.returncode}), see {log_path}:\n{tail}')
    return time.time() - t0


def train_and_test(name, config, args):
    wd = osp.abspath(osp.join(args.work_dir, name))
    metrics_file = osp.join(wd, 'test', 'test_metrics.json')
    timing_file = osp.join(wd, 'train_time.json')
    if args.skip_existing and osp.isfile(metrics_file) and osp.isfile(timing_file):
        print(f'[compare] {name}: reusing {metrics_file}', flush=True)
    else:
        os.makedirs(wd, exist_ok=True)
        opts = [f'randomness.seed={args.seed}'] + list(args.cfg_options)
        tools = osp.join(REPO, 'tools')
        if args.gpus > 1:
            train = ['bash', osp.join(tools, 'dist_train.sh'), config, str(args.gpus)]
        else:
            train = [sys.executable, osp.join(tools, 'train.py'), config]
        seconds = run(train + ['--work-dir', wd, '--cfg-options'] + opts,
                      osp.join(wd, 'compare_train.log'))
        with open(timing_file, 'w') as f:
            json.dump(dict(train_seconds=seconds), f)
        ckpt = last_checkpoint(wd)
        if args.gpus > 1:
            test_cmd = ['bash', osp.join(tools, 'dist_test.sh'), config, ckpt, str(args.gpus)]
        else:
            test_cmd = [sys.executable, osp.join(tools, 'test.py'), config, ckpt]
        run(test_cmd + ['--work-dir', osp.join(wd, 'test'), '--cfg-options'] + opts,
            osp.join(wd, 'compare_test.log'))
    with open(metrics_file) as f:
        m = json.load(f)
    with open(timing_file) as f:
        seconds = json.load(f)['train_seconds']
    res = dict(loss=name, config=osp.relpath(config, REPO) if config.startswith(REPO) else config,
               mAP=m.get('coco/bbox_mAP'), AP50=m.get('coco/bbox_mAP_50'),
               AP75=m.get('coco/bbox_mAP_75'), train_seconds=seconds, work_dir=wd)
    print(f"[compare] {name}: mAP {res['mAP']:.3f}  AP50 {res['AP50']:.3f}  "
          f"AP75 {res['AP75']:.3f}  ({seconds:.0f} s)", flush=True)
    return res


def markdown(results) -> str:
    lines = ['| loss | mAP | AP50 | AP75 | train time | config |',
             '|---|---:|---:|---:|---:|---|']
    for r in results:
        mins, secs = divmod(int(round(r['train_seconds'])), 60)
        lines.append(f"| {r['loss']} | {r['mAP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} "
                     f"| {mins}m{secs:02d}s | `{r['config']}` |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    runs = [resolve(n, args.config_dir, args.pattern) for n in args.losses]
    names = [n for n, _ in runs]
    if len(set(names)) != len(names):
        raise SystemExit(f'--losses has duplicates: {names}')
    os.makedirs(args.work_dir, exist_ok=True)
    results = [train_and_test(n, c, args) for n, c in runs]
    table = markdown(results)
    md = osp.join(args.work_dir, 'results.md')
    with open(md, 'w') as f:
        f.write(table)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    from detloss_plugin.engine.plots import plot_comparison
    png = plot_comparison(
        {r['loss']: r['work_dir'] for r in results}, osp.join(args.work_dir, 'comparison.png'),
        final={r['loss']: dict(mAP=r['mAP'], AP50=r['AP50'], AP75=r['AP75']) for r in results},
        title='same detector, same data, same seed: regression losses compared')
    print('\n' + table)
    print(f'[compare] table: {osp.abspath(md)}\n[compare] plot: {osp.abspath(png)}')


if __name__ == '__main__':
    main()
