#!/usr/bin/env python
"""Evaluate a trained detector (COCO metrics through mmdet's CocoMetric / pycocotools).

Same command line as mmdetection's ``tools/test.py``::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out preds.pkl]
        [--json-prefix PREFIX] [--show-dir DIR] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

- ``--show-dir DIR`` draws the predictions (score >= 0.3) on every test image, into
  ``<work_dir>/<timestamp>/DIR`` (mmdet's ``DetVisualizationHook``);
- ``--out FILE.pkl`` dumps the raw predictions (mmdet's ``DumpDetResults``);
- ``--json-prefix PREFIX`` also writes them in COCO results format to
  ``PREFIX.bbox.json`` (``CocoMetric``'s ``outfile_prefix``);
- the metrics are printed and written to ``<work_dir>/test_metrics.json``.
It imports ``detloss_plugin``, loads checkpoints safely under torch >= 2.6 and runs on
the CPU when there is no GPU (gloo for distributed CPU jobs), like ``tools/train.py``.
"""
import argparse
import json
import os
import os.path as osp

import detloss_plugin  # noqa: F401

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from detloss_plugin.engine import (setup_device_and_launcher,  # noqa: E402
                                   shutdown_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the metrics and logs are written')
    parser.add_argument('--out', help='dump predictions to a pickle file')
    parser.add_argument('--json-prefix',
                        help='write predictions in COCO results format to PREFIX.bbox.json')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='draw predictions into this folder (relative to '
                        '<work_dir>/<timestamp>)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='score threshold for drawn predictions')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries (see tools/train.py)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show or args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise SystemExit('--show/--show-dir need default_hooks.visualization '
                             "(type='DetVisualizationHook') in the config")
        hook['draw'] = True
        hook['score_thr'] = args.score_thr
        if args.show:
            hook['show'] = True
            hook['wait_time'] = args.wait_time
        if args.show_dir:
            hook['test_out_dir'] = args.show_dir
    if args.json_prefix:
        evaluators = cfg.test_evaluator
        for ev in (evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]):
            if ev.get('type', '').endswith('CocoMetric'):
                ev['outfile_prefix'] = osp.abspath(args.json_prefix)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must name a .pkl file, got {args.out!r}')
    cfg = build_cfg(args)
    setup_device_and_launcher(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out is not None:
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    metrics = runner.test()
    if is_main_process():
        metrics = {k: float(v) if isinstance(v, (int, float)) else v
                   for k, v in metrics.items()}
        path = osp.join(cfg.work_dir, 'test_metrics.json')
        with open(path, 'w') as f:
            json.dump(metrics, f, indent=1)
        keys = [k for k in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')
                if k in metrics]
        if keys:
            print('[detloss test] ' + '  '.join(
                f"{k.split('/')[-1].replace('bbox_', '')}={metrics[k]:.3f}" for k in keys))
        print(f'[detloss test] metrics written to {path}')
    shutdown_distributed()


if __name__ == '__main__':
    main()
