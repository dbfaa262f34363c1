"""The shipped configs: every quick-start config builds its detector and computes finite
losses with its plugin loss; every COCO config inherits mmdet's base and resolves its
plugin loss / DIoU-NMS with the intended settings."""
import os.path as osp

import pytest
import torch

from _tools_helpers import REPO
from integration_utils import two_box_sample

IOU_TAGS = ('iou', 'giou', 'diou', 'ciou', 'efficient-iou', 'focal-eiou')
EXPECTED_LOSS = {'iou': 'IoULoss', 'giou': 'GIoULoss', 'diou': 'DIoULoss',
                 'ciou': 'CIoULoss', 'efficient-iou': 'EfficientIoULoss',
                 'focal-eiou': 'FocalEIoULoss', 'l1': 'L1Loss', 'mse': 'MSELoss',
                 'smoothl1': 'SmoothL1Loss', 'focal-l1': 'FocalL1Loss'}
PATTERNS = (('retinanet', 'retinanet_r50_fpn_{}_1x_coco.py'),
            ('fcos', 'fcos_r50-caffe_fpn_gn-head_{}_1x_coco.py'),
            ('atss', 'atss_r50_fpn_{}_1x_coco.py'),
            ('faster_rcnn', 'faster-rcnn_r50_fpn_{}_1x_coco.py'))
# the IoU-family and DIoU-NMS COCO configs (the folder may hold others)
COCO = [osp.join(REPO, 'configs', 'coco', det, pattern.format(tag))
        for det, pattern in PATTERNS for tag in IOU_TAGS + ('ciou-diounms', 'diounms')]
# the regression-loss quick-start configs (other configs in the folder change loss_cls)
QUICK = [osp.join(REPO, 'configs', 'quickstart', f'retinanet_r18-slim_{tag}_synthetic.py')
         for tag in sorted(EXPECTED_LOSS) + ['ciou-diounms']]


def _tag(path, prefix, suffix):
    return osp.basename(path)[len(prefix):-len(suffix)]


def test_every_regression_loss_has_a_quickstart_config():
    missing = [p for p in QUICK if not osp.isfile(p)]
    assert not missing


@pytest.mark.parametrize('path', QUICK, ids=osp.basename)
def test_quickstart_config_builds_and_trains_one_step(path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401
    from mmdet.registry import MODELS

    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['detloss_plugin']
    tag = _tag(path, 'retinanet_r18-slim_', '_synthetic.py')
    head = cfg.model.bbox_head
    loss_tag = 'ciou' if tag == 'ciou-diounms' else tag
    assert head.loss_bbox.type == 'detloss_plugin.' + EXPECTED_LOSS[loss_tag]
    assert head.reg_decoded_bbox is (loss_tag in IOU_TAGS)
    nms = cfg.model.test_cfg.nms
    assert (nms.type, nms.get('beta')) == (('diou_nms', 0.6) if tag == 'ciou-diounms'
                                           else ('nms', None))
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.bbox_head.loss_bbox).__module__.startswith('detloss_plugin')
    # one training step on a 64x64 image with two boxes
    sample = two_box_sample()
    losses = model.loss(torch.randn(1, 3, 64, 64), [sample])
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    bbox = sum(losses['loss_bbox'])
    assert bbox > 0
    total.backward()
    grad = model.bbox_head.retina_reg.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # inference with the configured NMS
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.randn(1, 3, 64, 64), [sample])
    assert len(out[0].pred_instances.bboxes) <= cfg.model.test_cfg.max_per_img


def test_coco_configs_cover_every_detector_and_loss():
    missing = [p for p in COCO if not osp.isfile(p)]
    assert not missing


@pytest.mark.parametrize('path', COCO, ids=osp.basename)
def test_coco_config_resolves(path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401
    from mmdet.registry import MODELS

    text = open(path).read()
    assert "custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)" in text
    cfg = Config.fromfile(path)
    name = osp.basename(path)
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'  # mmdet's base was inherited
    assert cfg.train_cfg.max_epochs == 12
    faster = name.startswith('faster-rcnn')
    head = cfg.model.roi_head.bbox_head if faster else cfg.model.bbox_head
    test_cfg = cfg.model.test_cfg.rcnn if faster else cfg.model.test_cfg
    tag = name.split('_')[-3]
    loss_tag = 'ciou' if tag == 'ciou-diounms' else tag
    if loss_tag in EXPECTED_LOSS:
        assert head.loss_bbox.type == 'detloss_plugin.' + EXPECTED_LOSS[loss_tag]
        if name.startswith(('retinanet', 'faster')):
            assert head.reg_decoded_bbox is True
        expected_weight = {'retinanet': 2.0, 'fcos': 1.0, 'atss': 2.0}.get(
            name.split('_')[0], 12.0 if loss_tag in ('diou', 'ciou') else 10.0)
        assert head.loss_bbox.loss_weight == expected_weight
        init_default_scope('mmdet')
        loss = MODELS.build(head.loss_bbox)
        assert type(loss).__name__ == EXPECTED_LOSS[loss_tag]
        pred = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
        assert loss(pred, pred).abs().item() < 1e-5  # zero for a perfect box
    else:  # 'diounms': mmdet's own loss
        assert not head.loss_bbox.type.startswith('detloss_plugin')
    if 'diounms' in tag:
        assert test_cfg.nms.type == 'diou_nms' and test_cfg.nms.beta == 1.0
    else:
        assert test_cfg.nms.type == 'nms'
