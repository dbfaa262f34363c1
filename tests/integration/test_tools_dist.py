"""tools/dist_train.sh with 2 CPU processes (torchrun, gloo) for a few iterations."""
import glob
import os.path as osp
import socket

import torch

from _tools_helpers import make_tiny_setup, run_tool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_cpu_processes(tmp_path, monkeypatch):
    root = str(tmp_path)
    config = make_tiny_setup(root)
    work = osp.join(root, 'dist')
    monkeypatch.setenv('PORT', str(_free_port()))
    proc = run_tool(['dist_train.sh', config, '2', '--work-dir', work, '--cfg-options',
                     'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2'], cwd=root)
    out = proc.stdout + proc.stderr
    log = open(glob.glob(osp.join(work, '*', '*.log'))[0]).read()
    assert 'Distributed launcher: pytorch' in log
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    if not torch.cuda.is_available():
        assert "'backend': 'gloo'" in log or "backend='gloo'" in log
    assert 'Iter(train) [2/2]' in out + log
    # only rank 0 writes checkpoints; it holds the DDP-wrapped model's weights
    from mmengine.runner.checkpoint import _load_checkpoint

    from detloss_plugin.engine import enable_safe_checkpoint_loading
    enable_safe_checkpoint_loading()
    ckpt = _load_checkpoint(osp.join(work, 'iter_2.pth'), map_location='cpu')
    assert ckpt['meta']['iter'] == 2
    assert all(not k.startswith('module.') for k in ckpt['state_dict'])
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())
