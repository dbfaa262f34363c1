#!/usr/bin/env python
"""Train a detector with mmdetection and detloss's losses.

Same command line as mmdetection's ``tools/train.py``::

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [auto|PATH]] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}] [--local-rank N]

Differences from mmdet's script:
- it imports ``detloss_plugin`` itself (a config without ``custom_imports`` works) and
  enables safe loading of mmengine checkpoints under torch >= 2.6
  (:func:`detloss_plugin.engine.enable_safe_checkpoint_loading`), so ``--resume`` and
  ``load_from`` work without unsafe unpickling;
- without a GPU it trains on the CPU, and distributed CPU jobs use gloo
  (:func:`detloss_plugin.engine.setup_device_and_launcher`); ``--amp`` needs a GPU;
- ``--resume auto`` is accepted as a spelling of a bare ``--resume``;
- a plain ``CheckpointHook`` (mmdet's default runtime) is replaced by
  ``detloss_plugin.AtomicCheckpointHook`` (same options): checkpoints are written to a
  temporary file and renamed, and old ones deleted only afterwards, so that a kill at
  any moment leaves a run that ``--resume`` continues (docs/training.md).
Multi-GPU / multi-node: ``tools/dist_train.sh CONFIG GPUS`` (torchrun, NCCL) or
``tools/slurm_train.sh``.
"""
import argparse
import os
import os.path as osp

import detloss_plugin  # noqa: F401

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from detloss_plugin.engine import (setup_device_and_launcher,  # noqa: E402
                                   shutdown_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector (mmdet + detloss)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (GPU only)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (total batch size / auto_scale_lr.base_batch_size)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from PATH, or (no value, or "auto") from the latest checkpoint '
        'in the work dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=100 '
        'model.bbox_head.loss_bbox.type=detloss_plugin.DIoULoss (lists: key="[a,b]")')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
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
    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a GPU: mmengine\'s AmpOptimWrapper refuses the CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise SystemExit('--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
                             'base_batch_size=N) in the config')
    hooks = cfg.get('default_hooks') or {}
    ckpt_hook = hooks.get('checkpoint')
    if ckpt_hook is not None and ckpt_hook.get('type') in ('CheckpointHook',
                                                           'mmengine.CheckpointHook'):
        ckpt_hook['type'] = 'detloss_plugin.AtomicCheckpointHook'
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    setup_device_and_launcher(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    shutdown_distributed()


if __name__ == '__main__':
    main()
