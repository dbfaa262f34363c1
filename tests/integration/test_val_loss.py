"""detloss_plugin.ValLossLoop / val_losses: the validation loss of stock mmdet detectors
(RetinaNet, Faster R-CNN, FCOS, DINO), computed without changing the model, its
stateful losses, its BN statistics or the random state; its value checked against
the model's own loss in the matching mode; and training with it bit-identical to
training without it."""
import json
import os.path as osp
import random

import numpy as np
import pytest
import torch

from integration_utils import FASTER_RCNN, RETINANET, build_detector, demo_batch, write_config

FCOS = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
DINO = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
SIZE = 64


def _snapshot(model):
    """Everything the loss pass must leave alone: weights and buffers (bitwise), module
    modes, requires_grad flags, and the python / numpy / torch random states."""
    return dict(
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        modes=[m.training for m in model.modules()],
        grads=[p.requires_grad for p in model.parameters()],
        rng=(random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()))


def _assert_same(before, after):
    assert before['modes'] == after['modes']
    assert before['grads'] == after['grads']
    assert before['rng'][0] == after['rng'][0]
    assert np.array_equal(before['rng'][1], after['rng'][1])
    assert torch.equal(before['rng'][2], after['rng'][2])
    changed = [k for k, v in before['state'].items() if not torch.equal(v, after['state'][k])]
    assert changed == []


def _reference(model, batch, train_structure: bool, seed: int = 0):
    """The model's own loss with its BN layers (and dropout) in eval mode: the whole
    model in eval mode, or (train_structure) in training mode with those layers in eval
    mode, seeded as val_losses seeds."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd
    model.eval()
    if train_structure:
        model.train()
        for m in model.modules():
            if isinstance(m, (_BatchNorm, _DropoutNd)):
                m.eval()
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        _, log_vars = model.parse_losses(model(**data, mode='loss'))
    return {k: float(v) for k, v in log_vars.items()}


DETECTORS = {
    # base config, body, detector keys that must appear, needs training-mode structure
    'retinanet': (RETINANET, "model = dict(bbox_head=dict(num_classes=4))\n",
                  {'loss', 'loss_cls', 'loss_bbox'}, False),
    'faster_rcnn': (FASTER_RCNN, "model = dict(roi_head=dict(bbox_head=dict(num_classes=4)))\n",
                    {'loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'acc'},
                    True),
    'fcos': (FCOS, "model = dict(bbox_head=dict(num_classes=4))\n",
             {'loss', 'loss_cls', 'loss_bbox', 'loss_centerness'}, False),
    'dino': (DINO, "model = dict(bbox_head=dict(num_classes=4), num_queries=50,\n"
                   "             dn_cfg=dict(group_cfg=dict(num_dn_queries=20)))\n",
             {'loss', 'loss_cls', 'loss_bbox', 'loss_iou', 'dn_loss_cls', 'dn_loss_bbox',
              'd0.loss_cls', 'enc_loss_cls'}, True),
}


@pytest.mark.parametrize('name', list(DETECTORS))
def test_val_losses_stock_detectors(tmp_path, name):
    from detloss_plugin.engine import val_losses
    base, body, keys, train_structure = DETECTORS[name]
    _, model = build_detector(write_config(tmp_path, base, body))
    model.train()  # as the training loop leaves it
    batch = demo_batch(size=SIZE, num_classes=4)
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = _snapshot(model)
    first = val_losses(model, batch, seed=0)
    _assert_same(before, _snapshot(model))
    assert keys <= set(first), sorted(first)
    assert all(torch.isfinite(v) for v in first.values())
    # the loss terms add up to 'loss', as in training
    assert float(first['loss']) == pytest.approx(
        sum(float(v) for k, v in first.items() if 'loss' in k and k != 'loss'), rel=1e-5)
    # reproducible whatever the random state outside
    torch.manual_seed(999)
    again = val_losses(model, batch, seed=0)
    assert {k: float(v) for k, v in again.items()} == {k: float(v) for k, v in first.items()}
    # equal to the model's own loss in the matching mode
    ref = _reference(model, batch, train_structure)
    assert {k: float(v) for k, v in first.items()} == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_dino_loss_needs_training_structure(tmp_path):
    """In plain eval mode DINO builds no denoising queries and its loss fails or lacks
    the dn terms: val_losses' training-mode structure is what makes it work."""
    from detloss_plugin.engine import val_losses
    base, body, _, _ = DETECTORS['dino']
    _, model = build_detector(write_config(tmp_path, base, body))
    batch = demo_batch(size=SIZE, num_classes=4)
    model.eval()
    try:
        ref = _reference(model, batch, train_structure=False)
    except Exception:  # mmdet 3.3's DINOHead.loss needs dn_meta
        ref = {}
    assert 'dn_loss_cls' not in ref
    assert 'dn_loss_cls' in val_losses(model, batch)


STATEFUL = {
    # mmdet's GHMC updates its moving average whatever the mode; detloss's Wise-IoU v3
    # updates its running mean in training mode only
    'retinanet_ghm_wiou': (RETINANET, """
        model = dict(backbone=dict(norm_eval=False), bbox_head=dict(
            num_classes=4, reg_decoded_bbox=True,
            loss_cls=dict(_delete_=True, type='GHMC', bins=10, momentum=0.75,
                          use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(_delete_=True, type='detloss_plugin.WIoULoss', version='v3')))
        """, ('bbox_head.loss_cls.acc_sum', 'bbox_head.loss_bbox.iou_mean')),
    # mmdet's SeesawLoss adds the batch's class counts whatever the mode
    'faster_rcnn_seesaw': (FASTER_RCNN, """
        model = dict(backbone=dict(norm_eval=False), roi_head=dict(bbox_head=dict(
            num_classes=4,
            loss_cls=dict(_delete_=True, type='SeesawLoss', p=0.8, q=2.0, num_classes=4,
                          loss_weight=1.0))))
        """, ('roi_head.bbox_head.loss_cls.cum_samples',)),
}


@pytest.mark.parametrize('name', list(STATEFUL))
def test_stateful_losses_untouched(tmp_path, name):
    from detloss_plugin.engine import val_losses
    base, body, buffers = STATEFUL[name]
    _, model = build_detector(write_config(tmp_path, base, body))
    batch = demo_batch(size=SIZE, num_classes=4)
    model.train()
    before = _snapshot(model)
    val_losses(model, batch)
    _assert_same(before, _snapshot(model))
    # the same batch through a training-mode forward does move these buffers (so the
    # check above can fail), and the BN statistics (norm_eval=False) with them
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        model(**data, mode='loss')
    state = model.state_dict()
    for key in buffers + ('backbone.layer4.0.bn1.running_mean',):  # stem frozen
        assert not torch.equal(before['state'][key], state[key]), key


def test_gt_rescaled_when_loaded_after_resize(tmp_path):
    """Annotations loaded after Resize are in the original image's pixels: the loss on
    a half-size image with boxes in original pixels and rescale_gt=True equals the loss
    with the boxes already in the resized image's pixels."""
    from detloss_plugin.engine import val_losses
    base, body, _, _ = DETECTORS['retinanet']
    _, model = build_detector(write_config(tmp_path, base, body))
    batch = demo_batch(size=SIZE, num_classes=4)
    resized = val_losses(model, batch)
    original = demo_batch(size=SIZE, num_classes=4)
    for sample in original['data_samples']:
        sample.set_metainfo(dict(scale_factor=(0.5, 0.25), ori_shape=(SIZE * 4, SIZE * 2)))
        sample.gt_instances.bboxes = sample.gt_instances.bboxes * torch.tensor(
            [2.0, 4.0, 2.0, 4.0])
    kept = [s.gt_instances.bboxes.clone() for s in original['data_samples']]
    rescaled = val_losses(model, original, rescale_gt=True)
    assert {k: float(v) for k, v in rescaled.items()} == pytest.approx(
        {k: float(v) for k, v in resized.items()}, rel=1e-5)
    # the caller's samples are not modified
    for sample, boxes in zip(original['data_samples'], kept):
        assert torch.equal(sample.gt_instances.bboxes, boxes)
    wrong = val_losses(model, original, rescale_gt=False)
    assert float(wrong['loss_bbox']) != pytest.approx(float(resized['loss_bbox']), rel=1e-3)


def test_pipeline_needs_gt_rescale():
    from mmcv.transforms import Compose
    from mmdet.utils import register_all_modules

    from detloss_plugin.engine.val_loss import pipeline_needs_gt_rescale
    register_all_modules()

    class Dataset:
        def __init__(self, transforms):
            self.pipeline = Compose(transforms)

    load = dict(type='LoadImageFromFile')
    resize = dict(type='Resize', scale=(64, 64), keep_ratio=True)
    ann = dict(type='LoadAnnotations', with_bbox=True)
    pack = dict(type='PackDetInputs')
    assert pipeline_needs_gt_rescale(Dataset([load, resize, ann, pack])) is True  # mmdet's
    assert pipeline_needs_gt_rescale(Dataset([load, ann, resize, pack])) is False
    with pytest.raises(ValueError, match='no LoadAnnotations'):
        pipeline_needs_gt_rescale(Dataset([load, resize, pack]))
    with pytest.raises(ValueError, match='rescale_gt'):
        pipeline_needs_gt_rescale(object())


def test_no_ground_truth_is_a_value_error(tmp_path):
    from detloss_plugin.engine import val_losses
    base, body, _, _ = DETECTORS['retinanet']
    _, model = build_detector(write_config(tmp_path, base, body))
    batch = demo_batch(size=SIZE, num_classes=4)
    for sample in batch['data_samples']:
        del sample.gt_instances
    with pytest.raises(ValueError, match='LoadAnnotations'):
        val_losses(model, batch)


def test_loss_meter_weights_batches_by_size():
    from detloss_plugin.engine.val_loss import _LossMeter
    meter = _LossMeter()
    meter.update({'loss': torch.tensor(1.0), 'loss_cls': torch.tensor(0.5)}, 2)
    meter.update({'loss': torch.tensor(4.0), 'loss_cls': torch.tensor(2.0)}, 1)
    # (1.0 * 2 + 4.0 * 1) / 3 = 2.0; (0.5 * 2 + 2.0) / 3 = 1.0
    assert meter.means() == pytest.approx({'loss': 2.0, 'loss_cls': 1.0})
    assert _LossMeter().means() == {}


def test_loop_registered_and_options_checked():
    from mmengine.registry import LOOPS, DefaultScope

    import detloss_plugin  # noqa: F401
    from detloss_plugin.engine import ValLossLoop
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert LOOPS.get('detloss_plugin.ValLossLoop') is ValLossLoop


# ----------------------------------------------------------------- with the Runner


def _tiny(root: str, detector: str) -> str:
    from _tools_helpers import REPO, TINY_RUN_CONFIG, make_tiny_setup
    if detector == 'retinanet':  # a stateful box loss, to check its state too
        return make_tiny_setup(root, 'wiou')
    make_tiny_setup(root, 'wiou')  # the data
    path = osp.join(root, 'tiny_faster.py')
    base = osp.join(REPO, 'configs', 'quickstart', 'faster-rcnn_r18-slim_seesaw_synthetic.py')
    with open(path, 'w') as f:
        f.write(TINY_RUN_CONFIG.format(base=base, data_root=osp.join(root, 'data') + '/'))
    return path


@pytest.mark.parametrize('detector', ['retinanet', 'faster_rcnn'])
def test_training_bit_identical_with_and_without(tmp_path, detector):
    """4 iterations with a validation after 2 and 4: the same weights, buffers
    (BN statistics, Wise-IoU's mean, Seesaw's counts) and optimizer state with
    ValLossLoop as with mmengine's ValLoop; the validation losses are logged to the
    text log and to vis_data/scalars.json (which every visualizer backend receives,
    TensorBoard included) under val/<term>."""
    import glob

    from mmengine.runner.checkpoint import _load_checkpoint

    from _tools_helpers import run_tool
    from detloss_plugin.engine import enable_safe_checkpoint_loading
    from detloss_plugin.engine.plots import read_scalars
    root = str(tmp_path)
    config = _tiny(root, detector)
    common = ['train_cfg.max_iters=4', 'train_cfg.val_interval=2']
    states = {}
    for loop in ('ValLoop', 'detloss_plugin.ValLossLoop'):
        work = osp.join(root, loop.split('.')[-1])
        run_tool(['train.py', config, '--work-dir', work, '--cfg-options',
                  f'val_cfg.type={loop}'] + common, cwd=root)
        enable_safe_checkpoint_loading()
        ckpt = _load_checkpoint(osp.join(work, 'iter_4.pth'), map_location='cpu')
        states[loop] = ckpt
    plain, with_loss = states['ValLoop'], states['detloss_plugin.ValLossLoop']
    assert plain['state_dict'].keys() == with_loss['state_dict'].keys()
    for key, value in plain['state_dict'].items():
        assert torch.equal(value, with_loss['state_dict'][key]), key
    for a, b in zip(plain['optimizer']['state'].values(),
                    with_loss['optimizer']['state'].values()):
        for k in a:
            assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), k
    work = osp.join(root, 'ValLossLoop')
    val = read_scalars(work)['val']
    assert [r['step'] for r in val] == [2, 4]
    terms = ({'val/loss', 'val/loss_cls', 'val/loss_bbox'} if detector == 'retinanet' else
             {'val/loss', 'val/loss_rpn_cls', 'val/loss_rpn_bbox', 'val/loss_bbox',
              # Seesaw's terms and accuracies
              'val/loss_cls_objectness', 'val/loss_cls_classes', 'val/acc_objectness',
              'val/acc_classes'})
    for rec in val:
        assert terms <= set(rec), sorted(rec)
        assert 'coco/bbox_mAP' in rec
        assert rec['val/loss'] == pytest.approx(
            sum(v for k, v in rec.items() if k.startswith('val/loss_')), rel=1e-4)
    assert all(k not in r for r in read_scalars(osp.join(root, 'ValLoop'))['val']
               for k in terms)
    log = open(glob.glob(osp.join(work, '*', '*.log'))[0]).read()
    assert 'val/loss_bbox: ' in log
    with open(glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))[0]) as f:
        assert any('val/loss_bbox' in json.loads(line) for line in f if line.strip())


def test_ddp_two_processes_average_over_ranks(tmp_path, monkeypatch):
    """2 CPU processes (torchrun, gloo), 4 validation images, one per batch: the
    validation loss that rank 0 logs after 2 iterations is the mean over all 4 images,
    the value a single process computes with the same weights and buffers (each rank
    alone sees 2 of them)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from _tools_helpers import NUM_VAL, run_tool
    from detloss_plugin.engine.plots import read_scalars
    from test_tools_dist import _free_port
    root = str(tmp_path)
    config = _tiny(root, 'retinanet')
    work = osp.join(root, 'dist')
    monkeypatch.setenv('PORT', str(_free_port()))
    # BN statistics frozen (norm_eval): with broadcast_buffers=False each rank keeps its
    # own, and rank 1's would differ from the checkpoint's (rank 0's)
    run_tool(['dist_train.sh', config, '2', '--work-dir', work, '--cfg-options',
              'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
              'val_dataloader.batch_size=1', 'model.backbone.norm_eval=True'], cwd=root)
    logged = read_scalars(work)['val'][-1]
    assert logged['step'] == 2
    cfg = Config.fromfile(config)
    cfg.work_dir = osp.join(root, 'single')
    cfg.load_from = osp.join(work, 'iter_2.pth')
    cfg.val_dataloader.batch_size = 1
    cfg.model.backbone.norm_eval = True
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    metrics = Runner.from_cfg(cfg).val()
    assert NUM_VAL == 4  # two images per rank
    for key in ('val/loss', 'val/loss_cls', 'val/loss_bbox'):
        assert logged[key] == pytest.approx(metrics[key], rel=1e-5), key


def test_every_visualizer_backend_receives_the_losses(tmp_path):
    """The losses reach every backend of mmengine's visualizer through add_scalars, as
    TensorboardVisBackend (tensorboard is not installed here) or WandbVisBackend would
    receive them: a recording backend gets val/loss, val/loss_cls and val/loss_bbox
    beside the COCO metrics."""
    from mmengine.config import Config
    from mmengine.registry import VISBACKENDS
    from mmengine.runner import Runner
    from mmengine.visualization import BaseVisBackend

    received = []

    class _Recording(BaseVisBackend):
        @property
        def experiment(self):
            return self

        def _init_env(self):
            pass

        def add_scalars(self, scalar_dict, step=0, file_path=None, **kwargs):
            received.append(dict(scalar_dict))

    name = 'ValLossTestRecordingVisBackend'
    VISBACKENDS.register_module(name=name, module=_Recording, force=True)
    root = str(tmp_path)
    cfg = Config.fromfile(_tiny(root, 'retinanet'))
    cfg.work_dir = osp.join(root, 'val_only')
    cfg.visualizer.vis_backends = [dict(type='LocalVisBackend'), dict(type=name)]
    cfg.visualizer.name = 'val_loss_test_visualizer'
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    metrics = Runner.from_cfg(cfg).val()
    assert {'val/loss', 'val/loss_cls', 'val/loss_bbox', 'coco/bbox_mAP'} <= set(metrics)
    logged = [r for r in received if 'val/loss' in r]
    assert len(logged) == 1
    for key in ('val/loss', 'val/loss_cls', 'val/loss_bbox', 'coco/bbox_mAP'):
        assert logged[0][key] == pytest.approx(metrics[key])
