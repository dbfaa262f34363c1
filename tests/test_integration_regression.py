"""Stock mmdet RetinaNet and Faster R-CNN configs (``_base_ = 'mmdet::...'``) switch
``loss_bbox`` to each regression loss of detloss by name and ``nms`` to ``diou_nms``;
a few training steps give finite losses and gradients, and predict returns boxes that
went through detloss's DIoU-NMS."""
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
    assert nms_calls and all(c.get('beta') == 0.6 for c in nms_calls)


@pytest.mark.integration
@pytest.mark.parametrize('loss', IOU_FAMILY + COORDINATE)
def test_retinanet_switches_loss_and_nms(tmp_path, nms_calls, loss):
    decoded = loss in IOU_FAMILY
    body = f"""
    model = dict(
        bbox_head=dict(reg_decoded_bbox={decoded}, loss_bbox={loss}),
        test_cfg=dict(score_thr=0.0, nms_pre=200, max_per_img=50,
                      nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6)))
    """
    out = train_and_predict(tmp_path, RETINANET, body)
    _check(out, 'loss_bbox', nms_calls, loss.split("'")[1].split('.')[1])


@pytest.mark.integration
@pytest.mark.parametrize('loss', IOU_FAMILY + COORDINATE)
def test_faster_rcnn_switches_loss_and_nms(tmp_path, nms_calls, loss):
    decoded = loss in IOU_FAMILY
    body = f"""
    model = dict(
        roi_head=dict(bbox_head=dict(reg_decoded_bbox={decoded}, loss_bbox={loss})),
        test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=50,
                                nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6))))
    """
    out = train_and_predict(tmp_path, FASTER_RCNN, body)
    _check(out, 'loss_bbox', nms_calls, loss.split("'")[1].split('.')[1])
