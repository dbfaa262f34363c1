"""SIoU, Alpha-IoU and Wise-IoU as ``loss_bbox`` of stock mmdet RetinaNet and Faster R-CNN
configs (``_base_ = 'mmdet::...'``, shrunk for CPU CI as in
tests/integration/test_integration_regression.py), with Cluster-DIoU-NMS as ``test_cfg.nms``: a few
training steps give finite losses and gradients, WIoU's running mean moves and is in the
detector's state dict, and Cluster-DIoU-NMS predicts exactly the boxes DIoU-NMS does.
Also: the quick-start and COCO configs of these losses."""
import importlib
import os.path as osp

import pytest
import torch

from _tools_helpers import REPO
from integration_utils import FASTER_RCNN, RETINANET, predict, train_and_predict, two_box_sample
from test_integration_regression import (SLIM_FASTER_RCNN, SLIM_FASTER_RCNN_HEAD,
                                         SLIM_FASTER_RCNN_ROI, SLIM_RETINANET,
                                         SLIM_RETINANET_HEAD)

LOSSES = {
    'SIoULoss': "dict(type='detloss_plugin.SIoULoss', loss_weight=2.0)",
    'AlphaIoULoss': "dict(type='detloss_plugin.AlphaIoULoss', alpha=3.0, base='ciou')",
    'WIoULoss': "dict(type='detloss_plugin.WIoULoss', momentum=0.1, loss_weight=2.0)",
}


@pytest.fixture
def cluster_calls(monkeypatch):
    """Count the calls mmcv's batched_nms makes to detloss's cluster_diou_nms."""
    nms_module = importlib.import_module('mmcv.ops.nms')
    import detloss_plugin  # noqa: F401
    real = nms_module.cluster_diou_nms
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(nms_module, 'cluster_diou_nms', counting)
    return calls


def _check(out, loss_type, calls):
    for step in out['history']:
        assert all(torch.isfinite(torch.tensor(v)) for k, v in step.items()
                   if k != 'grads_finite')
        assert step['grads_finite']
    assert any(step['loss_bbox'] > 0 for step in out['history'])
    losses = [m for m in out['model'].modules() if type(m).__name__ == loss_type
              and type(m).__module__.startswith('detloss_plugin')]
    assert losses
    if loss_type == 'WIoULoss':
        assert losses[0].iou_mean.item() != 1.0  # updated from the positives
        keys = [k for k in out['model'].state_dict() if k.endswith('loss_bbox.iou_mean')]
        assert keys  # saved with the detector's checkpoints
    assert sum(len(r.pred_instances.bboxes) for r in out['results']) > 0
    assert calls and all(c.get('beta') == 0.6 for c in calls)


def _same_predictions(model, head_cfg):
    """Cluster-DIoU-NMS and DIoU-NMS predict the same boxes."""
    cluster = predict(model, size=64)
    head_cfg.nms = dict(type='diou_nms', iou_threshold=0.5, beta=0.6)
    greedy = predict(model, size=64)
    for a, b in zip(cluster, greedy):
        assert torch.equal(a.pred_instances.bboxes, b.pred_instances.bboxes)
        assert torch.equal(a.pred_instances.scores, b.pred_instances.scores)


@pytest.mark.integration
@pytest.mark.parametrize('loss_type', sorted(LOSSES))
def test_retinanet(tmp_path, cluster_calls, loss_type):
    body = f"""
    model = dict({SLIM_RETINANET}
        bbox_head=dict({SLIM_RETINANET_HEAD}
                       reg_decoded_bbox=True, loss_bbox={LOSSES[loss_type]}),
        test_cfg=dict(score_thr=0.0, nms_pre=200, max_per_img=50,
                      nms=dict(type='cluster_diou_nms', iou_threshold=0.5, beta=0.6)))
    """
    out = train_and_predict(tmp_path, RETINANET, body, size=64)
    _check(out, loss_type, cluster_calls)
    _same_predictions(out['model'], out['model'].bbox_head.test_cfg)


@pytest.mark.integration
@pytest.mark.parametrize('loss_type', sorted(LOSSES))
def test_faster_rcnn(tmp_path, cluster_calls, loss_type):
    body = f"""
    model = dict({SLIM_FASTER_RCNN}
        roi_head=dict({SLIM_FASTER_RCNN_ROI}
                      bbox_head=dict({SLIM_FASTER_RCNN_HEAD}
                                     reg_decoded_bbox=True, loss_bbox={LOSSES[loss_type]})),
        test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=50,
                                nms=dict(type='cluster_diou_nms', iou_threshold=0.5,
                                         beta=0.6))))
    """
    out = train_and_predict(tmp_path, FASTER_RCNN, body, size=64)
    _check(out, loss_type, cluster_calls)
    _same_predictions(out['model'], out['model'].roi_head.test_cfg)


# ----------------------------------------------------------------------------- configs
QUICK = {'siou': 'SIoULoss', 'alpha-iou': 'AlphaIoULoss', 'wiou': 'WIoULoss',
         'ciou-clusterdiounms': 'CIoULoss'}


@pytest.mark.parametrize('tag', sorted(QUICK))
def test_quickstart_config_trains_one_step(tag):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'quickstart',
                                   f'retinanet_r18-slim_{tag}_synthetic.py'))
    head = cfg.model.bbox_head
    assert head.loss_bbox.type == 'detloss_plugin.' + QUICK[tag] and head.reg_decoded_bbox
    nms_type = 'cluster_diou_nms' if tag.endswith('clusterdiounms') else 'nms'
    assert cfg.model.test_cfg.nms.type == nms_type
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    sample = two_box_sample()
    losses = model.loss(torch.randn(1, 3, 64, 64), [sample])
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and sum(losses['loss_bbox']) > 0
    total.backward()
    grad = model.bbox_head.retina_reg.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model.predict(torch.randn(1, 3, 64, 64), [sample])
    assert len(out[0].pred_instances.bboxes) <= cfg.model.test_cfg.max_per_img


COCO = [(det, pattern.format(tag), tag)
        for det, pattern in (('retinanet', 'retinanet_r50_fpn_{}_1x_coco.py'),
                             ('faster_rcnn', 'faster-rcnn_r50_fpn_{}_1x_coco.py'))
        for tag in ('siou', 'alpha-iou', 'wiou', 'ciou-clusterdiounms')]


@pytest.mark.parametrize('det,name,tag', COCO, ids=[c[1] for c in COCO])
def test_coco_config_resolves(det, name, tag):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401
    path = osp.join(REPO, 'configs', 'coco', det, name)
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.dataset.type == 'CocoDataset' and cfg.train_cfg.max_epochs == 12
    faster = det == 'faster_rcnn'
    head = cfg.model.roi_head.bbox_head if faster else cfg.model.bbox_head
    test_cfg = cfg.model.test_cfg.rcnn if faster else cfg.model.test_cfg
    assert head.reg_decoded_bbox is True
    if tag == 'ciou-clusterdiounms':
        assert (test_cfg.nms.type, test_cfg.nms.beta) == ('cluster_diou_nms', 1.0)
        return
    assert head.loss_bbox.type == 'detloss_plugin.' + QUICK[tag]
    assert head.loss_bbox.loss_weight == (10.0 if faster else 2.0)
    init_default_scope('mmdet')
    loss = MODELS.build(head.loss_bbox)
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert loss(pred, pred).abs().item() < 1e-5  # zero for a perfect box
