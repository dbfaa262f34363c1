"""KLBBoxHead in a stock mmdet Faster R-CNN: the quick-start configs (which inherit
mmdet's faster-rcnn_r50_fpn_1x_coco.py and only swap the RoI box head) build, train a
few steps with finite KL losses, and predict boxes with per-coordinate standard
deviations, with var voting off and on; the head's pieces (initialisation, the loss's
normalisation, the delta-to-image std mapping, NMS as mmdet's) are checked on their own."""
import math
import os.path as osp

import pytest
import torch

from _tools_helpers import REPO
from integration_utils import two_box_sample

pytestmark = pytest.mark.integration

QUICK_DIR = osp.join(REPO, 'configs', 'quickstart')
COCO_DIR = osp.join(REPO, 'configs', 'coco', 'faster_rcnn')
KL = osp.join(QUICK_DIR, 'faster-rcnn_r18-slim_kl_synthetic.py')
KL_VOTE = osp.join(QUICK_DIR, 'faster-rcnn_r18-slim_kl-varvote_synthetic.py')
SMOOTH_L1 = osp.join(QUICK_DIR, 'faster-rcnn_r18-slim_smoothl1_synthetic.py')


def _build(path, **test_cfg):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401
    from mmdet.registry import MODELS

    cfg = Config.fromfile(path)
    cfg.model.test_cfg.rcnn.update(test_cfg)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def _head(**kwargs):
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401
    from mmdet.registry import MODELS

    init_default_scope('mmdet')
    cfg = dict(type='detloss_plugin.KLBBoxHead', in_channels=4, fc_out_channels=16,
               roi_feat_size=2, num_classes=3)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_configs():
    from mmengine.config import Config

    kl, vote, sl1 = (Config.fromfile(p) for p in (KL, KL_VOTE, SMOOTH_L1))
    for cfg in (kl, vote, sl1):
        assert cfg.model.type == 'FasterRCNN'
        assert cfg.custom_imports.imports == ['detloss_plugin']
    assert kl.model.roi_head.bbox_head.type == 'detloss_plugin.KLBBoxHead'
    assert dict(kl.model.roi_head.bbox_head.loss_bbox) == dict(
        type='detloss_plugin.KLLoss', beta=1.0, loss_weight=1.0)
    assert dict(sl1.model.roi_head.bbox_head.loss_bbox) == dict(
        type='detloss_plugin.SmoothL1Loss', beta=1.0, loss_weight=1.0)
    assert sl1.model.roi_head.bbox_head.type == 'Shared2FCBBoxHead'
    assert 'var_voting' not in kl.model.test_cfg.rcnn
    assert vote.model.test_cfg.rcnn.var_voting == dict(sigma_t=0.01)
    # the same training in the two KL configs (only the test-time voting differs)
    assert vote.model.roi_head == kl.model.roi_head and vote.model.train_cfg == kl.model.train_cfg
    coco = Config.fromfile(osp.join(COCO_DIR, 'faster-rcnn_r50_fpn_kl_1x_coco.py'))
    coco_vote = Config.fromfile(osp.join(COCO_DIR, 'faster-rcnn_r50_fpn_kl-varvote_1x_coco.py'))
    assert coco.model.roi_head.bbox_head.type == 'detloss_plugin.KLBBoxHead'
    assert coco.model.roi_head.bbox_head.num_classes == 80
    assert coco_vote.model.test_cfg.rcnn.nms.type == 'soft_nms'
    assert coco_vote.model.test_cfg.rcnn.var_voting.sigma_t == 0.01


def test_head_init_and_layout():
    head = _head()
    head.init_weights()
    w, b = head.fc_log_var.weight, head.fc_log_var.bias
    assert w.shape == (12, 16)                   # 4 per class, as fc_reg
    assert head.fc_reg.out_features == 12
    assert 0.5e-4 < w.std().item() < 2e-4 and torch.equal(b, torch.zeros_like(b))
    x = torch.randn(5, 4, 2, 2)
    cls_score, bbox_pred = head(x)
    assert cls_score.shape == (5, 4) and bbox_pred.shape == (5, 24)
    deltas, log_var = head.split_bbox_pred(bbox_pred)
    assert log_var.abs().max() < 1e-2             # alpha ~ 0 at init: the loss ~ Smooth L1
    agnostic = _head(reg_class_agnostic=True)
    assert agnostic.fc_log_var.out_features == 4 and agnostic(x)[1].shape == (5, 8)


def test_head_rejects_bad_configs():
    with pytest.raises(TypeError, match='loss_bbox'):
        _head(loss_bbox=dict(type='L1Loss', loss_weight=1.0))
    with pytest.raises(ValueError, match='reg_decoded_bbox'):
        _head(reg_decoded_bbox=True)
    head = _head()
    with pytest.raises(ValueError, match='bbox_pred'):
        head.split_bbox_pred(torch.zeros(2, 12))


def test_delta_std_to_box_std_is_the_decoders_first_order_propagation():
    """Against finite differences through mmdet's own decoder."""
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder

    from detloss_plugin.models.roi_heads import delta_std_to_box_std

    coder = DeltaXYWHBBoxCoder(target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2])
    g = torch.Generator().manual_seed(0)
    rois = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 8.0, 30.0]], dtype=torch.float64)
    deltas = torch.randn(2, 4, generator=g, dtype=torch.float64)
    delta_std = torch.rand(2, 4, generator=g, dtype=torch.float64) + 0.1
    h = 1e-6
    jac = torch.stack([(coder.decode(rois, deltas + h * e) - coder.decode(rois, deltas - h * e))
                       / (2 * h) for e in torch.eye(4, dtype=torch.float64)], dim=-1)
    expected = (jac.square() * delta_std[:, None, :].square()).sum(-1).sqrt()
    got = delta_std_to_box_std(rois, deltas, delta_std, coder.stds)
    assert torch.allclose(got, expected, rtol=1e-6)


def test_loss_is_kl_on_positive_rois_normalised_by_sampled_rois():
    from detloss_plugin.functional import kl_loss

    head = _head()
    torch.manual_seed(0)
    n = 6
    cls_score = torch.randn(n, 4)
    bbox_pred = torch.randn(n, 24, requires_grad=True)
    labels = torch.tensor([0, 3, 2, 3, 1, 3])    # 3 = background
    bbox_targets = torch.randn(n, 4)
    bbox_weights = torch.zeros(n, 4)
    bbox_weights[labels < 3] = 1.0
    losses = head.loss(cls_score, bbox_pred, torch.zeros(n, 5), labels, torch.ones(n),
                       bbox_targets, bbox_weights)
    pos = torch.tensor([0, 2, 4])
    deltas = bbox_pred.detach()[:, :12].view(n, 3, 4)[pos, labels[pos]]
    log_var = bbox_pred.detach()[:, 12:].view(n, 3, 4)[pos, labels[pos]]
    expected = kl_loss(deltas, log_var, bbox_targets[pos]).sum() / n
    assert losses['loss_bbox'].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses['log_var'].item() == pytest.approx(log_var.mean().item(), rel=1e-6)
    losses['loss_bbox'].backward()
    grad = bbox_pred.grad.view(n, 2, 3, 4)
    # gradient only on the positives' own class, for both deltas and alpha
    assert grad[[1, 3, 5]].abs().sum() == 0
    assert (grad[0, :, 0].abs() > 0).all() and grad[0, :, 1:].abs().sum() == 0
    # no positive: zero, graph kept
    none = head.loss(cls_score, bbox_pred, torch.zeros(n, 5), torch.full((n,), 3),
                     torch.ones(n), bbox_targets, torch.zeros(n, 4))
    assert none['loss_bbox'].item() == 0.0 and none['loss_bbox'].requires_grad


def test_predict_without_voting_is_mmdets_multiclass_nms():
    from mmengine.config import ConfigDict
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead

    head = _head()
    stock = Shared2FCBBoxHead(in_channels=4, fc_out_channels=16, roi_feat_size=2,
                              num_classes=3)
    torch.manual_seed(1)
    n = 30
    xy = torch.rand(n, 2) * 40
    roi = torch.cat([torch.zeros(n, 1), xy, xy + 10 + torch.rand(n, 2) * 20], dim=1)
    cls_score = torch.randn(n, 4) * 2
    bbox_pred = torch.cat([torch.randn(n, 12) * 0.5, torch.randn(n, 12)], dim=1)
    meta = dict(img_shape=(80, 80), scale_factor=(2.0, 0.5))
    cfg = ConfigDict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20)
    ours = head._predict_by_feat_single(roi, cls_score, bbox_pred, meta, True, cfg)
    theirs = stock._predict_by_feat_single(roi, cls_score, bbox_pred[:, :12].contiguous(), meta,
                                           True, cfg)
    assert len(ours) == len(theirs) > 0
    assert torch.allclose(ours.bboxes, theirs.bboxes)
    assert torch.equal(ours.labels, theirs.labels)
    assert torch.allclose(ours.scores, theirs.scores)
    assert ours.bboxes_std.shape == ours.bboxes.shape
    assert torch.isfinite(ours.bboxes_std).all() and (ours.bboxes_std > 0).all()
    # rescaled like the boxes: x by 1/2, y by 1/0.5
    plain = head._predict_by_feat_single(roi, cls_score, bbox_pred, meta, False, cfg)
    assert torch.allclose(plain.bboxes_std[:, 0] / 2, ours.bboxes_std[:, 0])
    assert torch.allclose(plain.bboxes_std[:, 1] * 2, ours.bboxes_std[:, 1])
    # with voting: same detections (scores, labels), refined boxes (a large sigma_t so
    # that these random, loosely overlapping boxes move visibly)
    voted = head._predict_by_feat_single(roi, cls_score, bbox_pred, meta, True,
                                         ConfigDict(cfg, var_voting=dict(sigma_t=1.0)))
    assert torch.equal(voted.labels, ours.labels) and torch.equal(voted.scores, ours.scores)
    assert torch.isfinite(voted.bboxes).all()
    assert not torch.allclose(voted.bboxes, ours.bboxes)
    # test-time augmentation path (no test cfg): raw per-class boxes with their std
    raw = head._predict_by_feat_single(roi, cls_score, bbox_pred, meta, False, None)
    assert raw.bboxes_std.shape == raw.bboxes.shape == (n, 12)


@pytest.mark.parametrize('voting', [False, True], ids=['nms', 'var-voting'])
def test_quickstart_kl_trains_and_predicts_with_std(voting):
    cfg, model = _build(KL_VOTE if voting else KL, score_thr=0.0)
    head = model.roi_head.bbox_head
    assert type(head).__name__ == 'KLBBoxHead'
    assert (cfg.model.test_cfg.rcnn.get('var_voting') is not None) == voting
    calls = []
    head.loss_bbox.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append((args, kwargs)), with_kwargs=True)
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    torch.manual_seed(0)
    inputs = torch.randn(1, 3, 64, 64)
    for _ in range(3):
        losses = model.loss(inputs, [two_box_sample()])
        total, log_vars = model.parse_losses(losses)
        assert torch.isfinite(total) and losses['loss_bbox'] > 0
        optim.zero_grad()
        total.backward()
        grad = head.fc_log_var.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        optim.step()
    assert 'log_var' in log_vars and math.isfinite(log_vars['log_var'])
    (pred, log_var, target, weight), kwargs = calls[-1]
    assert pred.shape == log_var.shape == target.shape
    assert kwargs['avg_factor'] == cfg.model.train_cfg.rcnn.sampler.num or \
        kwargs['avg_factor'] > pred.shape[0]     # number of sampled RoIs, not positives
    model.eval()
    with torch.no_grad():
        out = model.predict(inputs, [two_box_sample()])
    pred = out[0].pred_instances
    assert len(pred.bboxes) > 0
    assert pred.bboxes_std.shape == pred.bboxes.shape
    assert torch.isfinite(pred.bboxes_std).all() and (pred.bboxes_std > 0).all()
    assert (pred.labels >= 0).all() and (pred.labels < 4).all()


def test_stock_r50_faster_rcnn_with_kl_head(tmp_path):
    """mmdet's own faster-rcnn_r50_fpn_1x_coco.py (R50, 80 classes) with only the box head
    and its loss swapped by name, var voting on: trains with finite losses, predicts stds."""
    from integration_utils import FASTER_RCNN, train_and_predict

    body = """
    model = dict(
        roi_head=dict(bbox_head=dict(
            type='detloss_plugin.KLBBoxHead',
            loss_bbox=dict(_delete_=True, type='detloss_plugin.KLLoss', beta=1.0))),
        test_cfg=dict(rcnn=dict(score_thr=0.0, var_voting=dict(sigma_t=0.01))))
    """
    out = train_and_predict(tmp_path, FASTER_RCNN, body, steps=2)
    assert type(out['model'].roi_head.bbox_head).__name__ == 'KLBBoxHead'
    for record in out['history']:
        assert record['grads_finite'] and math.isfinite(record['loss_bbox'])
    for sample in out['results']:
        pred = sample.pred_instances
        assert len(pred.bboxes) > 0 and pred.bboxes_std.shape == pred.bboxes.shape
        assert torch.isfinite(pred.bboxes).all() and (pred.bboxes_std > 0).all()
