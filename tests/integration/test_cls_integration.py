"""Stock mmdet RetinaNet (sigmoid) and Faster R-CNN (softmax) configs
(``_base_ = 'mmdet::...'``) switch ``loss_cls`` to each classification loss of detloss
by name; two SGD steps give finite losses and gradients, and the loss in the built
model is detloss's. The detectors are shrunk for CPU CI: ResNet-18, 64-channel FPN and
heads, 64 px images."""
import pytest
import torch

from integration_utils import (FASTER_RCNN, RETINANET, build_detector, predict, train_steps,
                               write_config)

SIZE = 64
TINY_RETINANET = """
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=1,
                   loss_cls={loss_cls}{extra_head}),
    test_cfg=dict(nms_pre=100, score_thr=0.05, max_per_img=20))
"""
TINY_FASTER_RCNN = """
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=128, loss_cls={loss_cls})),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(max_per_img=20)))
"""

RETINANET_LOSSES = {
    'CrossEntropyLoss': "dict(_delete_=True, type='detloss_plugin.CrossEntropyLoss', "
                        "use_sigmoid=True, loss_weight=1.0)",
    'FocalLoss': "dict(_delete_=True, type='detloss_plugin.FocalLoss', use_sigmoid=True, "
                 "gamma=2.0, alpha=0.25, loss_weight=1.0)",
    'GHMC': "dict(_delete_=True, type='detloss_plugin.GHMC', use_sigmoid=True, bins=10, "
            "momentum=0.75, loss_weight=1.0)",
    'AnchorLoss': "dict(_delete_=True, type='detloss_plugin.AnchorLoss', use_sigmoid=True, "
                  "gamma=0.5, slack=0.05, anchor='neg', loss_weight=1.0)",
    'SymmetricCELoss': "dict(_delete_=True, type='detloss_plugin.SymmetricCELoss', "
                       "use_sigmoid=True, alpha=0.1, beta=1.0, loss_weight=1.0)",
}
FASTER_RCNN_LOSSES = {
    'CrossEntropyLoss': "dict(_delete_=True, type='detloss_plugin.CrossEntropyLoss', "
                        "use_sigmoid=False, loss_weight=1.0)",
    'FocalLoss': "dict(_delete_=True, type='detloss_plugin.FocalLoss', use_sigmoid=False, "
                 "gamma=2.0, alpha=None, loss_weight=1.0)",
    'AnchorLoss': "dict(_delete_=True, type='detloss_plugin.AnchorLoss', use_sigmoid=False, "
                  "gamma=0.5, slack=0.05, anchor='pos', loss_weight=1.0)",
    'SymmetricCELoss': "dict(_delete_=True, type='detloss_plugin.SymmetricCELoss', "
                       "use_sigmoid=False, alpha=0.1, beta=1.0, loss_weight=1.0)",
    'SeesawLoss': "dict(_delete_=True, type='detloss_plugin.SeesawLoss', use_sigmoid=False, "
                  "p=0.8, q=2.0, num_classes=80, loss_weight=1.0)",
}


def _ours(module, name):
    return type(module).__name__ == name and type(module).__module__.startswith('detloss_plugin')


def _check_history(history, cls_keys):
    for step in history:
        assert step['grads_finite']
        for k, v in step.items():
            if k != 'grads_finite':
                assert torch.isfinite(torch.tensor(v)), (k, v)
        assert all(step[k] > 0 for k in cls_keys)


@pytest.mark.integration
@pytest.mark.parametrize('name', sorted(RETINANET_LOSSES))
def test_retinanet_switches_loss_cls(tmp_path, name):
    extra = ''
    if name == 'GHMC':  # mmdet's GHM config pairs GHM-C with GHM-R
        extra = (",\n                   loss_bbox=dict(_delete_=True, type='detloss_plugin.GHMR', "
                 "mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)")
    body = TINY_RETINANET.format(loss_cls=RETINANET_LOSSES[name], extra_head=extra)
    cfg, model = build_detector(write_config(tmp_path, RETINANET, body))
    head = model.bbox_head
    assert _ours(head.loss_cls, name)
    assert head.use_sigmoid_cls and head.cls_out_channels == 80
    history = train_steps(model, steps=2, size=SIZE)
    _check_history(history, ['loss_cls'])
    if name == 'GHMC':
        assert _ours(head.loss_bbox, 'GHMR')
        state = model.state_dict()
        # the moving averages are model state (saved in checkpoints) and were updated
        assert state['bbox_head.loss_cls.acc_sum'].sum() > 0
        assert state['bbox_head.loss_bbox.acc_sum'].sum() > 0
        assert all(step['loss_bbox'] > 0 for step in history)


@pytest.mark.integration
@pytest.mark.parametrize('name', sorted(FASTER_RCNN_LOSSES))
def test_faster_rcnn_switches_loss_cls(tmp_path, name):
    body = TINY_FASTER_RCNN.format(loss_cls=FASTER_RCNN_LOSSES[name])
    cfg, model = build_detector(write_config(tmp_path, FASTER_RCNN, body))
    bbox_head = model.roi_head.bbox_head
    assert _ours(bbox_head.loss_cls, name)
    history = train_steps(model, steps=2, size=SIZE)
    if name == 'SeesawLoss':
        # C + 2 channels, two loss terms and the custom accuracies
        assert bbox_head.fc_cls.out_features == 82
        _check_history(history, ['loss_cls_objectness'])
        assert 'acc_objectness' in history[0] and 'acc_classes' in history[0]
        assert model.state_dict()['roi_head.bbox_head.loss_cls.cum_samples'].sum() > 0
    else:
        assert bbox_head.fc_cls.out_features == 81
        _check_history(history, ['loss_cls'])
    results = predict(model, size=SIZE)  # the inference path (get_activation for seesaw)
    assert len(results) == 2
    for r in results:
        scores = r.pred_instances.scores
        assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


CLS_CONFIGS = {
    'coco/retinanet/retinanet_r50_fpn_focal_1x_coco.py': ('FocalLoss', None),
    'coco/retinanet/retinanet_r50_fpn_ghm_1x_coco.py': ('GHMC', 'GHMR'),
    'coco/retinanet/retinanet_r50_fpn_anchor-loss_1x_coco.py': ('AnchorLoss', None),
    'coco/retinanet/retinanet_r50_fpn_sce_1x_coco.py': ('SymmetricCELoss', None),
    'coco/faster_rcnn/faster-rcnn_r50_fpn_ce_1x_coco.py': ('CrossEntropyLoss', None),
    'coco/faster_rcnn/faster-rcnn_r50_fpn_focal_1x_coco.py': ('FocalLoss', None),
    'coco/faster_rcnn/faster-rcnn_r50_fpn_anchor-loss_1x_coco.py': ('AnchorLoss', None),
    'coco/faster_rcnn/faster-rcnn_r50_fpn_sce_1x_coco.py': ('SymmetricCELoss', None),
    'coco/faster_rcnn/faster-rcnn_r50_fpn_seesaw_1x_coco.py': ('SeesawLoss', None),
    'quickstart/retinanet_r18-slim_focal_synthetic.py': ('FocalLoss', None),
    'quickstart/retinanet_r18-slim_ghm_synthetic.py': ('GHMC', 'GHMR'),
    'quickstart/retinanet_r18-slim_anchor-loss_synthetic.py': ('AnchorLoss', None),
    'quickstart/retinanet_r18-slim_sce_synthetic.py': ('SymmetricCELoss', None),
}


@pytest.mark.parametrize('path', sorted(CLS_CONFIGS))
def test_cls_configs_load_and_build_their_losses(path):
    """Each shipped config parses (custom_imports, mmdet:: base) and its loss dicts
    build detloss's classes, with the head's use_sigmoid matching the loss."""
    from pathlib import Path

    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    cfg = Config.fromfile(str(Path(__file__).parents[2] / 'configs' / path))
    model = cfg.model
    head = model.bbox_head if 'bbox_head' in model else model.roi_head.bbox_head
    cls_name, bbox_name = CLS_CONFIGS[path]
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmdet')):
        loss_cls = MMDET_MODELS.build(head.loss_cls)
        assert _ours(loss_cls, cls_name)
        assert loss_cls.use_sigmoid == head.loss_cls.get('use_sigmoid', False)
        if model.type == 'RetinaNet':
            assert loss_cls.use_sigmoid
        if bbox_name is not None:
            assert _ours(MMDET_MODELS.build(head.loss_bbox), bbox_name)
