"""tools/train.py and tools/test.py end to end on a tiny generated dataset (CPU):
training with a plugin loss, kill-free resume equal to an uninterrupted run, and COCO
evaluation equal to an independent pycocotools evaluation."""
import glob
import importlib.util
import json
import math
import os.path as osp
import pickle

import pytest
import torch

from _tools_helpers import NUM_VAL, REPO, make_tiny_setup, run_tool


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f'detloss_tool_{name}',
                                                  osp.join(REPO, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ckpt(path):
    # loaded the way mmengine loads it (after detloss's safe-loading fix)
    from mmengine.runner.checkpoint import _load_checkpoint

    from detloss_plugin.engine import enable_safe_checkpoint_loading
    enable_safe_checkpoint_loading()
    return _load_checkpoint(path, map_location='cpu')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """4 iterations uninterrupted (checkpoints at 2 and 4)."""
    root = str(tmp_path_factory.mktemp('tools'))
    config = make_tiny_setup(root)
    work = osp.join(root, 'run_a')
    run_tool(['train.py', config, '--work-dir', work], cwd=root)
    return dict(root=root, config=config, work=work)


def test_train_uses_the_plugin_loss_and_saves_checkpoints(trained):
    work = trained['work']
    assert osp.isfile(osp.join(work, 'iter_2.pth')) and osp.isfile(osp.join(work, 'iter_4.pth'))
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'iter_4.pth')
    ck2, ck4 = _ckpt(osp.join(work, 'iter_2.pth')), _ckpt(osp.join(work, 'iter_4.pth'))
    assert ck4['meta']['iter'] == 4
    assert "type='detloss_plugin.GIoULoss'" in ck4['meta']['cfg']
    # training changed the weights between iterations 2 and 4
    changed = [k for k in ck4['state_dict']
               if not torch.equal(ck2['state_dict'][k], ck4['state_dict'][k])]
    assert 'bbox_head.retina_reg.weight' in changed
    # the logged losses: 4 records, finite, the regression loss (GIoU, weight 2) in (0, 4]
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))
    records = [json.loads(line) for line in open(scalars[0]) if '"loss"' in line]
    assert [r['step'] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert math.isfinite(r['loss']) and 0 < r['loss_bbox'] <= 4.0
    # the validation at the end of training is logged at iteration 4, and the
    # TrainingCurvesHook of the quick-start config drew the curves
    from detloss_plugin.engine.plots import read_scalars
    val = read_scalars(work)['val']
    assert [r['step'] for r in val] == [4]
    assert 0 <= val[0]['coco/bbox_mAP'] <= 1
    assert osp.getsize(osp.join(work, 'curves.png')) > 10000


def test_resume_equals_uninterrupted_training(trained):
    """Kill-free resume: train 2 iterations (the checkpoint of run A at iter 2), resume
    for 2 more in a fresh work dir, compare with 4 uninterrupted iterations."""
    work_b = osp.join(trained['root'], 'run_b')
    proc = run_tool(['train.py', trained['config'], '--work-dir', work_b, '--resume',
                     osp.join(trained['work'], 'iter_2.pth')], cwd=trained['root'])
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    assert not osp.exists(osp.join(work_b, 'iter_2.pth'))  # it did not retrain 1..2
    a = _ckpt(osp.join(trained['work'], 'iter_4.pth'))
    b = _ckpt(osp.join(work_b, 'iter_4.pth'))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    # the optimizer state (AdamW moments, step) and the schedule match too
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)
    assert a['param_schedulers'] == b['param_schedulers']
    assert b['meta']['iter'] == 4


def test_test_tool_metrics_equal_pycocotools(trained):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    out_dir = osp.join(trained['root'], 'eval')
    prefix = osp.join(out_dir, 'preds')
    pkl = osp.join(out_dir, 'preds.pkl')
    proc = run_tool(['test.py', trained['config'], osp.join(trained['work'], 'iter_4.pth'),
                     '--work-dir', out_dir, '--json-prefix', prefix, '--out', pkl,
                     '--show-dir', 'drawn'], cwd=trained['root'])
    assert 'metrics written to' in proc.stdout
    metrics = json.load(open(osp.join(out_dir, 'test_metrics.json')))
    # an independent evaluation of the dumped predictions
    ann = osp.join(trained['root'], 'data', 'annotations', 'instances_val.json')
    gt = COCO(ann)
    preds = json.load(open(prefix + '.bbox.json'))
    assert len(preds) > 0 and {p['image_id'] for p in preds} <= set(gt.getImgIds())
    ev = COCOeval(gt, gt.loadRes(prefix + '.bbox.json'), 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    for key, idx in (('coco/bbox_mAP', 0), ('coco/bbox_mAP_50', 1), ('coco/bbox_mAP_75', 2)):
        assert metrics[key] == pytest.approx(round(float(ev.stats[idx]), 3), abs=1e-9), key
    # the drawn predictions, one picture per val image
    drawn = glob.glob(osp.join(out_dir, '*', 'drawn', '*.jpg'))
    assert len(drawn) == NUM_VAL
    # the raw dump: one entry per image, at most max_per_img boxes each
    with open(pkl, 'rb') as f:
        dump = pickle.load(f)
    assert len(dump) == NUM_VAL
    assert all(0 < len(d['pred_instances']['scores']) <= 100 for d in dump)


def test_train_cli_options(tmp_path):
    train = _load_tool('train')
    cfg_path = tmp_path / 'c.py'
    cfg_path.write_text("optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=0.1))\n"
                        "auto_scale_lr = dict(enable=False, base_batch_size=16)\n"
                        "train_cfg = dict(max_iters=10)\n")
    cfg = train.build_cfg(train.parse_args([str(cfg_path), '--resume']))
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.work_dir == osp.join('./work_dirs', 'c')
    cfg = train.build_cfg(train.parse_args([str(cfg_path), '--resume', 'auto']))
    assert cfg.resume is True and cfg.load_from is None
    cfg = train.build_cfg(train.parse_args(
        [str(cfg_path), '--resume', 'x/iter_2.pth', '--auto-scale-lr', '--work-dir', 'w',
         '--cfg-options', 'train_cfg.max_iters=3']))
    assert cfg.resume is True and cfg.load_from == 'x/iter_2.pth'
    assert cfg.auto_scale_lr.enable is True and cfg.work_dir == 'w'
    assert cfg.train_cfg.max_iters == 3
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='--amp needs a GPU'):
            train.build_cfg(train.parse_args([str(cfg_path), '--amp']))
    cfg_path.write_text('train_cfg = dict(max_iters=10)\n')
    with pytest.raises(SystemExit, match='auto_scale_lr'):
        train.build_cfg(train.parse_args([str(cfg_path), '--auto-scale-lr']))


def test_cpu_launcher_setup_without_gpu():
    from mmengine.config import Config

    from detloss_plugin.engine import setup_device_and_launcher
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    device = setup_device_and_launcher(cfg, 'none')
    if torch.cuda.is_available():
        assert device == 'cuda' and cfg.env_cfg.dist_cfg.backend == 'nccl'
    else:
        assert device == 'cpu' and cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.get('model_wrapper_cfg') is None  # not distributed: no wrapper
