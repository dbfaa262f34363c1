"""tools/gpu_check.sh and its training config, as far as a machine without a GPU can
check them: the script parses and refuses to run without CUDA (reporting why), and the
config is mmdet's stock RetinaNet R50-FPN with detloss's GIoULoss that trains (2
iterations on the CPU, without --amp, which needs a GPU) and evaluates."""
import os
import os.path as osp
import re
import subprocess

import pytest
import torch

from _tools_helpers import REPO, run_tool

SCRIPT = osp.join(REPO, 'tools', 'gpu_check.sh')
CONFIG = osp.join(REPO, 'configs', 'gpu_check', 'retinanet_r50_fpn_giou_synthetic.py')


def test_script_parses():
    subprocess.run(['bash', '-n', SCRIPT], check=True)
    assert os.access(SCRIPT, os.X_OK)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-GPU refusal')
def test_script_refuses_without_a_gpu_and_says_why(tmp_path):
    env = dict(os.environ, GPU_CHECK_DIR=str(tmp_path), PYTHON=__import__('sys').executable,
               PYTHONPATH=REPO)
    proc = subprocess.run(['bash', SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    report = (tmp_path / 'report.md').read_text()
    assert 'environment: FAILED' in report
    assert 'no CUDA device' in (tmp_path / 'env.log').read_text()


def test_config_is_the_stock_retinanet_with_detloss_giou():
    pytest.importorskip('mmdet')
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    head = cfg.model.bbox_head
    assert cfg.model.type == 'RetinaNet' and cfg.model.backbone.depth == 50
    assert cfg.model.backbone.init_cfg is None        # offline machines: no download
    assert head.loss_bbox.type == 'detloss_plugin.GIoULoss' and head.reg_decoded_bbox
    assert head.num_classes == 4 and head.loss_cls.type == 'FocalLoss'
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'


@pytest.mark.integration
def test_config_trains_two_iterations_on_cpu(tmp_path):
    pytest.importorskip('mmdet')
    from detloss_plugin.datasets import ensure_synthetic_coco
    data = osp.join(tmp_path, 'data') + '/'
    ensure_synthetic_coco(data, seed=0, num_train=4, num_val=2, image_size=(64, 64),
                          min_size=10, max_size=40)
    work = tmp_path / 'work'
    proc = run_tool(['train.py', CONFIG, '--work-dir', str(work), '--cfg-options',
                     f'train_dataloader.dataset.data_root={data}',
                     f'val_dataloader.dataset.data_root={data}',
                     f'test_dataloader.dataset.data_root={data}',
                     f'val_evaluator.ann_file={data}annotations/instances_val.json',
                     'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                     'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                     'train_dataloader.persistent_workers=False',
                     'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
                     'default_hooks.logger.interval=1',
                     'model.test_cfg.score_thr=0.0'], cwd=str(tmp_path), timeout=900)
    log = proc.stdout + proc.stderr
    assert 'loss_bbox' in log
    assert not re.search(r'loss\w*: (nan|inf)', log)
    assert 'bbox_mAP' in log
