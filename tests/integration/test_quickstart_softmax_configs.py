"""The quick-start Faster R-CNN configs of the softmax classification losses
(configs/quickstart/faster-rcnn_r18-slim_<tag>_synthetic.py): each builds its detector
with detloss's loss in the RoI head, trains one step with finite losses and gradients,
and predicts; the base keeps the quick-start RetinaNet's data and schedule."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from _tools_helpers import REPO
from integration_utils import two_box_sample

QUICK_DIR = osp.join(REPO, 'configs', 'quickstart')
EXPECTED = {'ce': 'CrossEntropyLoss', 'focal': 'FocalLoss', 'anchor-loss': 'AnchorLoss',
            'sce': 'SymmetricCELoss', 'seesaw': 'SeesawLoss'}
QUICK = [osp.join(QUICK_DIR, f'faster-rcnn_r18-slim_{tag}_synthetic.py') for tag in EXPECTED]
IMPORTS = "custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)"


def _tag(path):
    return osp.basename(path)[len('faster-rcnn_r18-slim_'):-len('_synthetic.py')]


def test_every_softmax_loss_has_a_quickstart_config():
    assert [p for p in QUICK if not osp.isfile(p)] == []


def test_base_keeps_the_retinanet_quickstart_data_and_schedule():
    from mmengine.config import Config

    frcnn = Config.fromfile(osp.join(QUICK_DIR, '_base_', 'faster-rcnn_r18-slim_synthetic.py'))
    retina = Config.fromfile(osp.join(QUICK_DIR, '_base_', 'retinanet_r18-slim_synthetic.py'))
    # the model is mmdet's Faster R-CNN (inherited), slimmed as the quick-start RetinaNet
    assert frcnn.model.type == 'FasterRCNN'
    assert frcnn.model.roi_head.bbox_head.num_classes == 4
    for key in ('depth', 'base_channels', 'out_indices', 'frozen_stages', 'norm_eval',
                'init_cfg'):
        assert frcnn.model.backbone[key] == retina.model.backbone[key], key
    assert frcnn.model.neck.in_channels == retina.model.neck.in_channels
    assert frcnn.model.neck.out_channels == retina.model.neck.out_channels
    # same data, pipelines and schedule as the RetinaNet base
    for key in ('data_root', 'classes', 'metainfo', 'img_scale', 'max_iters',
                'val_interval', 'train_pipeline', 'test_pipeline', 'train_cfg',
                'param_scheduler', 'custom_hooks', 'randomness'):
        assert frcnn[key] == retina[key], key
    for key in ('type', 'ann_file', 'metric', 'format_only'):
        assert frcnn.val_evaluator[key] == retina.val_evaluator[key], key
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ours, theirs = frcnn[loader], retina[loader]
        assert ours.batch_size == theirs.batch_size, loader
        assert ours.sampler.type == theirs.sampler.type, loader
        for key in ('type', 'data_root', 'metainfo', 'ann_file', 'data_prefix', 'pipeline'):
            assert ours.dataset[key] == theirs.dataset[key], (loader, key)
    assert frcnn.train_dataloader.dataset.filter_cfg.min_size == 1
    assert frcnn.optim_wrapper.optimizer == retina.optim_wrapper.optimizer
    assert frcnn.optim_wrapper.clip_grad == retina.optim_wrapper.clip_grad
    assert frcnn.optim_wrapper.paramwise_cfg == retina.optim_wrapper.paramwise_cfg
    assert frcnn.default_hooks.checkpoint.by_epoch is False
    assert frcnn.log_processor.by_epoch is False


def _softmax_reference(tag, score, labels, weight, avg_factor):
    """Per-RoI reference for the two losses with a closed form, reduced as mmdet does."""
    logp = F.log_softmax(score.double(), dim=-1).gather(1, labels[:, None]).squeeze(1)
    if tag == 'ce':
        per_roi = -logp
    else:  # focal, gamma 2, no alpha
        per_roi = -(1 - logp.exp()) ** 2 * logp
    return (per_roi * weight.double()).sum() / avg_factor


@pytest.mark.parametrize('path', QUICK, ids=osp.basename)
def test_quickstart_softmax_config_builds_trains_and_predicts(path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401
    from mmdet.registry import MODELS

    assert IMPORTS in open(path).read()
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['detloss_plugin']
    tag = _tag(path)
    loss_cfg = cfg.model.roi_head.bbox_head.loss_cls
    assert loss_cfg.type == 'detloss_plugin.' + EXPECTED[tag]
    assert loss_cfg.use_sigmoid is False
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    head = model.roi_head.bbox_head
    assert type(head.loss_cls).__module__.startswith('detloss_plugin')
    assert type(head.loss_cls).__name__ == EXPECTED[tag]
    # 4 classes + background, or + the objectness pair for seesaw
    assert head.fc_cls.out_features == (6 if tag == 'seesaw' else 5)

    calls = []
    head.loss_cls.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append((args, kwargs, out)), with_kwargs=True)
    sample = two_box_sample()
    model.train()
    losses = model.loss(torch.randn(1, 3, 64, 64), [sample])
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    assert len(calls) == 1
    (score, labels, weight), kwargs, out = calls[0]
    # the ground truths are added as proposals: some RoIs are positive
    assert ((labels >= 0) & (labels < 4)).any() and (labels == 4).any()
    if tag == 'seesaw':
        assert {'loss_cls_objectness', 'loss_cls_classes'} <= set(losses)
        cls_loss = losses['loss_cls_objectness'] + losses['loss_cls_classes']
    else:
        cls_loss = losses['loss_cls']
    assert torch.isfinite(cls_loss) and cls_loss > 0
    if tag in ('ce', 'focal'):
        expected = _softmax_reference(tag, score.detach(), labels, weight,
                                      kwargs['avg_factor'])
        assert cls_loss.double().item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    grad = head.fc_cls.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # inference: scores in [0, 1], labels among the 4 classes
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.randn(1, 3, 64, 64), [sample])
    pred = out[0].pred_instances
    assert len(pred.bboxes) <= cfg.model.test_cfg.rcnn.max_per_img
    if len(pred.scores):
        assert (pred.scores >= 0).all() and (pred.scores <= 1).all()
        assert (pred.labels >= 0).all() and (pred.labels < 4).all()
