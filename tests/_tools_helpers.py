"""Shared set-up of the tools tests: a tiny synthetic dataset and a tiny config that
inherits the real quick-start config (so the tests exercise it), run in subprocesses."""
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
NUM_VAL = 4

# the data and schedule of a tiny run of any quick-start config (format base, data_root)
TINY_RUN_CONFIG = """
_base_ = {base!r}
data_root = {data_root!r}
img_scale = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=-1, save_last=True))
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
"""
TINY_CONFIG = TINY_RUN_CONFIG + """
# score_thr 0 so that an almost untrained model still predicts boxes
model = dict(test_cfg=dict(score_thr=0.0))
train_cfg = dict(max_iters=4, val_interval=1000)
"""


def make_tiny_setup(root: str, loss: str = 'giou') -> str:
    """Generate 8 train / 4 val images of 64 px under ``root/data`` and write
    ``root/tiny_<loss>.py``; returns the config path."""
    from detloss_plugin.datasets import ensure_synthetic_coco
    data_root = osp.join(root, 'data') + '/'
    ensure_synthetic_coco(data_root, seed=0, num_train=8, num_val=NUM_VAL,
                          image_size=(64, 64), min_size=10, max_size=40)
    base = osp.join(REPO, 'configs', 'quickstart', f'retinanet_r18-slim_{loss}_synthetic.py')
    path = osp.join(root, f'tiny_{loss}.py')
    with open(path, 'w') as f:
        f.write(TINY_CONFIG.format(base=base, data_root=data_root))
    return path


def tool_env() -> dict:
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = '1'
    env['PYTHONPATH'] = REPO + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    env['PYTHON'] = sys.executable
    return env


def run_tool(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    """Run ``args`` (a tools/ script and its arguments); fail with the output tail."""
    if args[0].endswith('.py'):
        cmd = [sys.executable, osp.join(TOOLS, args[0])] + list(args[1:])
    else:
        cmd = ['bash', osp.join(TOOLS, args[0])] + list(args[1:])
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} failed with exit {proc.returncode}:\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}')
    return proc
