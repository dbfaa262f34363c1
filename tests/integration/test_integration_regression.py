"""Stock mmdet RetinaNet and Faster R-CNN configs (``_base_ = 'mmdet::...'``) switch
``loss_bbox`` to each regression loss of detloss by name and ``nms`` to ``diou_nms``;
a few training steps give finite losses and gradients, and predict returns boxes that
went through detloss's DIoU-NMS.

One loss per detector runs the stock ResNet-50 FPN architecture; the others shrink it
for CPU CI (ResNet-18, 64-channel FPN and heads, 64 px images), which changes nothing on
the loss's side of the head."""
import importlib

import pytest
import torch

from integration_utils import FASTER_RCNN, RETINANET, train_and_predict

IOU_FAMILY = [
    "dict(type='detloss_plugin.IoULoss', mode='linear', loss_weight=1.0)",
    "dict(type='detloss_plugin.IoULoss', mode='log', loss_weight=1.0)",
    "dict(type='detloss_plugin.GIoULoss', loss_weight=2.0)",
    "dict(type='detloss_plugin.DIoULoss', loss_weight=2.0)",
    "dict(type='detloss_plugin.CIoULoss', loss_weight=2.0)",
    "dict(type='detloss_plugin.CIoULoss', alpha_gate=True, authors_gradient=True)",
    "dict(type='detloss_plugin.EfficientIoULoss', loss_weight=2.0)",
    "dict(type='detloss_plugin.FocalEIoULoss', gamma=0.5, loss_weight=2.0)",
]
COORDINATE = [
    "dict(type='detloss_plugin.L1Loss', loss_weight=1.0)",
    "dict(type='detloss_plugin.MSELoss', loss_weight=1.0)",
    "dict(type='detloss_plugin.SmoothL1Loss', beta=0.11, loss_weight=1.0)",
    "dict(type='detloss_plugin.FocalL1Loss', loss_weight=1.0)",
]


@pytest.fixture
def nms_calls(monkeypatch):
    """Count the calls mmcv's batched_nms makes to detloss's diou_nms."""
    nms_module = importlib.import_module('mmcv.ops.nms')
    import detloss_plugin  # noqa: F401
    real = nms_module.diou_nms
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(nms_module, 'diou_nms', counting)
    return calls


def _check(out, loss_key, nms_calls, loss_type):
    history = out['history']
    for step in history:
        assert all(torch.isfinite(torch.tensor(v)) for k, v in step.items() if k != 'grads_finite')
        assert step['grads_finite']
    # the regression loss really is the plugin's and it contributes
    assert any(type(m).__name__ == loss_type and type(m).__module__.startswith('detloss_plugin')
               for m in out['model'].modules())
    assert any(step[loss_key] > 0 for step in history)
    results = out['results']
    assert len(results) == 2
    assert sum(len(r.pred_instances.bboxes) for r in results) > 0
    assert nms_calls and any(c.get('beta') == 0.6 for c in nms_calls)


STOCK_LOSS = IOU_FAMILY[4]  # CIoU runs on the unmodified ResNet-50 FPN detectors
SLIM_RETINANET = """
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),"""
SLIM_RETINANET_HEAD = "in_channels=64, feat_channels=64, stacked_convs=1,"
SLIM_FASTER_RCNN = """
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),"""
SLIM_FASTER_RCNN_ROI = "bbox_roi_extractor=dict(out_channels=64),"
SLIM_FASTER_RCNN_HEAD = "in_channels=64, fc_out_channels=128,"


@pytest.mark.integration
@pytest.mark.parametrize('loss', IOU_FAMILY + COORDINATE)
def test_retinanet_switches_loss_and_nms(tmp_path, nms_calls, loss):
    decoded = loss in IOU_FAMILY
    slim = loss != STOCK_LOSS
    body = f"""
    model = dict({SLIM_RETINANET if slim else ''}
        bbox_head=dict({SLIM_RETINANET_HEAD if slim else ''}
                       reg_decoded_bbox={decoded}, loss_bbox={loss}),
        test_cfg=dict(score_thr=0.0, nms_pre=200, max_per_img=50,
                      nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6)))
    """
    out = train_and_predict(tmp_path, RETINANET, body, size=64 if slim else 96)
    _check(out, 'loss_bbox', nms_calls, loss.split("'")[1].split('.')[1])


@pytest.mark.integration
@pytest.mark.parametrize('loss', IOU_FAMILY + COORDINATE)
def test_faster_rcnn_switches_loss_and_nms(tmp_path, nms_calls, loss):
    decoded = loss in IOU_FAMILY
    slim = loss != STOCK_LOSS
    body = f"""
    model = dict({SLIM_FASTER_RCNN if slim else ''}
        roi_head=dict({SLIM_FASTER_RCNN_ROI if slim else ''}
                      bbox_head=dict({SLIM_FASTER_RCNN_HEAD if slim else ''}
                                     reg_decoded_bbox={decoded}, loss_bbox={loss})),
        test_cfg=dict(rpn=dict(nms=dict(type='diou_nms', iou_threshold=0.7, beta=1.0)),
                      rcnn=dict(score_thr=0.0, max_per_img=50,
                                nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6))))
    """
    out = train_and_predict(tmp_path, FASTER_RCNN, body, size=64 if slim else 96)
    _check(out, 'loss_bbox', nms_calls, loss.split("'")[1].split('.')[1])
