"""The box geometry in every stage of stock mmdet detectors (``_base_ = 'mmdet::...'``):
DINO and DETR whose Hungarian matching cost and loss are both CIoU; MaxIoU (RetinaNet,
Faster R-CNN RPN and R-CNN), ATSS and TaskAligned (TOOD) assigners with detloss's
calculator; RKA in the RPN; NWD loss; NWD-NMS at test time. A few training steps each
give finite losses and gradients, and the plugin's classes are really called."""
import importlib

import pytest
import torch

from integration_utils import FASTER_RCNN, RETINANET, train_and_predict

pytestmark = pytest.mark.integration

DINO = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
DETR = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
ATSS = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
TOOD = 'mmdet::tood/tood_r50_fpn_1x_coco.py'
SLIM_FPN = """
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),"""


@pytest.fixture
def calls(monkeypatch):
    """Count the calls of detloss's cost, calculator, assigner and NMS."""
    import detloss_plugin  # noqa: F401
    from detloss_plugin.models import task_modules as T
    counts = {}

    def wrap(owner, name, key):
        real = getattr(owner, name)

        def counting(*args, **kwargs):
            counts[key] = counts.get(key, 0) + 1
            return real(*args, **kwargs)
        monkeypatch.setattr(owner, name, counting)

    wrap(T.IoUCost, '__call__', 'cost')
    wrap(T.BboxOverlaps2D, '__call__', 'calculator')
    wrap(T.RankingAssigner, 'assign', 'rka')
    wrap(importlib.import_module('mmcv.ops.nms'), 'nwd_nms', 'nwd_nms')
    return counts


def _finite(out):
    for step in out['history']:
        assert all(torch.isfinite(torch.tensor(v)) for k, v in step.items()
                   if k != 'grads_finite'), step
        assert step['grads_finite']
    assert len(out['results']) == 2


def _ciou_matching(body_head: str) -> str:
    return f"""
    model = dict(
        {body_head}
        bbox_head=dict(loss_iou=dict(type='detloss_plugin.CIoULoss', loss_weight=2.0)),
        train_cfg=dict(assigner=dict(match_costs=[
            COST0,
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='detloss_plugin.IoUCost', iou_mode='ciou', weight=2.0)])))
    """


def test_dino_ciou_cost_and_loss(tmp_path, calls):
    body = _ciou_matching("num_queries=100,").replace(
        'COST0', "dict(type='FocalLossCost', weight=2.0)")
    # 96 px: 193 encoder tokens on the 4 levels, more than the 100 queries
    out = train_and_predict(tmp_path, DINO, body, steps=2, size=96)
    _finite(out)
    assert calls.get('cost', 0) > 0
    assert any(type(m).__name__ == 'CIoULoss' and type(m).__module__.startswith('detloss')
               for m in out['model'].modules())
    assert any(k.endswith('loss_iou') and v > 0 for k, v in out['history'][0].items())


def test_detr_ciou_cost_and_loss(tmp_path, calls):
    body = _ciou_matching("").replace('COST0', "dict(type='ClassificationCost', weight=1.0)")
    out = train_and_predict(tmp_path, DETR, body, steps=2, size=64)
    _finite(out)
    assert calls.get('cost', 0) > 0


@pytest.mark.parametrize('mode', ['nwd', 'giou'])
def test_retinanet_max_iou_with_calculator_and_nwd_nms(tmp_path, calls, mode):
    body = f"""
    model = dict({SLIM_FPN}
        bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=1),
        train_cfg=dict(assigner=dict(iou_calculator=dict(
            type='detloss_plugin.BboxOverlaps2D', mode='{mode}', normalize=True))),
        test_cfg=dict(score_thr=0.0, nms_pre=200, max_per_img=50,
                      nms=dict(type='nwd_nms', iou_threshold=0.85)))
    """
    out = train_and_predict(tmp_path, RETINANET, body, size=64)
    _finite(out)
    assert calls.get('calculator', 0) > 0 and calls.get('nwd_nms', 0) > 0


def test_faster_rcnn_rka_rpn_nwd_rcnn_nwd_loss_and_nms(tmp_path, calls):
    """The reference's NWD-RKA Faster R-CNN: RKA with NWD in the RPN, NWD in the
    R-CNN's MaxIoU assigner, the NWD loss in the RPN, NWD-NMS in both stages."""
    nwd = "dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd')"
    body = f"""
    model = dict({SLIM_FPN}
        rpn_head=dict(in_channels=64, feat_channels=64, reg_decoded_bbox=True,
                      loss_bbox=dict(type='detloss_plugin.NWDLoss', loss_weight=10.0)),
        roi_head=dict(bbox_roi_extractor=dict(out_channels=64),
                      bbox_head=dict(in_channels=64, fc_out_channels=128)),
        train_cfg=dict(
            rpn=dict(assigner=dict(_delete_=True, type='detloss_plugin.RankingAssigner',
                                   topk=2, neg_iou_thr=0.3, iou_calculator={nwd})),
            rpn_proposal=dict(nms_pre=200, max_per_img=100,
                              nms=dict(type='nwd_nms', iou_threshold=0.85)),
            rcnn=dict(assigner=dict(iou_calculator={nwd}), sampler=dict(num=64))),
        test_cfg=dict(rpn=dict(nms=dict(type='nwd_nms', iou_threshold=0.85)),
                      rcnn=dict(score_thr=0.0, max_per_img=50,
                                nms=dict(type='nwd_nms', iou_threshold=0.85))))
    """
    out = train_and_predict(tmp_path, FASTER_RCNN, body, size=64)
    _finite(out)
    assert calls.get('rka', 0) > 0 and calls.get('calculator', 0) > 0
    assert calls.get('nwd_nms', 0) > 0
    assert all(step['loss_rpn_bbox'] > 0 for step in out['history'])


def test_atss_with_normalized_diou_calculator(tmp_path, calls):
    body = f"""
    model = dict({SLIM_FPN}
        bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=1),
        train_cfg=dict(assigner=dict(iou_calculator=dict(
            type='detloss_plugin.BboxOverlaps2D', mode='diou', normalize=True))))
    """
    out = train_and_predict(tmp_path, ATSS, body, size=64)
    _finite(out)
    assert calls.get('calculator', 0) > 0


@pytest.mark.parametrize('initial_epoch', [0, 4])
def test_tood_task_aligned_with_normalized_ciou_calculator(tmp_path, calls, initial_epoch):
    """Epoch 0 < initial_epoch = 4: TOOD's initial ATSS assigner; initial_epoch = 0:
    the TaskAligned assigner (overlap ** 6, hence the [0, 1] mapping)."""
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('epoch', 0)   # the Runner's hook does it
    calc = "dict(type='detloss_plugin.BboxOverlaps2D', mode='ciou', normalize=True)"
    body = f"""
    model = dict({SLIM_FPN}
        bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=2),
        train_cfg=dict(initial_epoch={initial_epoch},
                       initial_assigner=dict(iou_calculator={calc}),
                       assigner=dict(iou_calculator={calc})))
    """
    out = train_and_predict(tmp_path, TOOD, body, size=64)
    _finite(out)
    assert calls.get('calculator', 0) > 0
