"""RankingRetinaHead with AP-loss and DR loss inside mmdet.

- The quick-start configs (configs/quickstart/retinanet_r18-slim_{ap-loss,dr-loss}_
  synthetic.py) build, train a few steps on synthetic-like images with finite losses
  and gradients, and predict boxes.
- A stock RetinaNet config (``_base_ = 'mmdet::...'``) switches to the head and the
  losses by name through ``custom_imports`` (and predicts through DIoU-NMS).
- The head hands the ranking loss the scores, labels and weights of every level and
  image *aligned*: with a per-anchor loss swapped in, its sum equals that of mmdet's
  per-level RetinaHead; the box loss equals the stock head's.
- Errors: a ranking loss in a stock head, a per-anchor loss in the ranking head.
"""
import math
import os.path as osp

import pytest
import torch

from _tools_helpers import REPO
from integration_utils import RETINANET, build_detector, demo_batch, write_config


def _toy_head_batch():
    """Two FPN levels of 8-channel features for 2 images of 64 px, their metas and
    3 ground-truth boxes (seeded): the input of a head's ``loss_by_feat``."""
    from mmengine.structures import InstanceData
    torch.manual_seed(0)
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4)]
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64))] * 2
    gts = [InstanceData(bboxes=torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 20.0, 60.0, 44.0]]),
                        labels=torch.tensor([0, 2])),
           InstanceData(bboxes=torch.tensor([[10.0, 12.0, 50.0, 30.0]]),
                        labels=torch.tensor([1]))]
    return feats, metas, gts

QUICK_DIR = osp.join(REPO, 'configs', 'quickstart')
COCO_DIR = osp.join(REPO, 'configs', 'coco', 'retinanet')
QUICK = {'ap-loss': 'APLoss', 'dr-loss': 'DRLoss'}

TINY_RETINANET = """
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    bbox_head=dict(type='detloss_plugin.RankingRetinaHead', in_channels=64,
                   feat_channels=64, stacked_convs=1, loss_cls={loss_cls}),
    test_cfg=dict(nms_pre=100, score_thr=0.0, max_per_img=20,
                  nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6)))
"""
LOSS_CFGS = {
    'APLoss': "dict(_delete_=True, type='detloss_plugin.APLoss', delta=1.0)",
    'DRLoss': "dict(_delete_=True, type='detloss_plugin.DRLoss')",
}


def _train(model, steps, size, num_classes, lr=1e-3):
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    for step in range(steps):
        data = model.data_preprocessor(
            demo_batch(batch_size=2, size=size, num_classes=num_classes, seed=step), True)
        losses = model(**data, mode='loss')
        total, log_vars = model.parse_losses(losses)
        optim.zero_grad()
        total.backward()
        cls_grad = model.bbox_head.retina_cls.weight.grad
        assert cls_grad is not None and torch.isfinite(cls_grad).all()
        assert cls_grad.abs().sum() > 0  # the ranking loss reaches the classifier
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None)
        optim.step()
        history.append({k: float(v) for k, v in log_vars.items()})
    return history


def _predict(model, size, num_classes):
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            demo_batch(batch_size=2, size=size, num_classes=num_classes, seed=100), False)
        return model(**data, mode='predict')


def _check_predictions(results, num_classes):
    assert len(results) == 2
    for r in results:
        inst = r.pred_instances
        assert len(inst) > 0  # boxes come out
        assert inst.bboxes.shape[1] == 4 and torch.isfinite(inst.bboxes).all()
        assert ((inst.scores >= 0) & (inst.scores <= 1)).all()
        assert ((inst.labels >= 0) & (inst.labels < num_classes)).all()


@pytest.mark.integration
@pytest.mark.parametrize('tag', sorted(QUICK))
def test_quickstart_ranking_config_trains_and_predicts(tag):
    from detloss_plugin.models.dense_heads import RankingRetinaHead
    path = osp.join(QUICK_DIR, f'retinanet_r18-slim_{tag}_synthetic.py')
    cfg, model = build_detector(path)
    head = model.bbox_head
    assert type(head) is RankingRetinaHead
    assert type(head.loss_cls).__name__ == QUICK[tag]
    assert head.cls_out_channels == 4
    # the prior probability of each reference: 0.01 (AP-loss), 0.5 (DR loss)
    prior = torch.sigmoid(head.retina_cls.bias).mean().item()
    assert prior == pytest.approx(0.01 if tag == 'ap-loss' else 0.5, rel=1e-4)
    history = _train(model, steps=3, size=128, num_classes=4, lr=1e-3)
    for step in history:
        assert all(torch.isfinite(torch.tensor(v)) for v in step.values())
        assert step['loss_cls'] > 0 and step['loss_bbox'] > 0
    if tag == 'dr-loss':
        model.test_cfg.score_thr = 0.0  # 3 steps from scratch: scores may sit below 0.2
    _check_predictions(_predict(model, 128, 4), 4)


@pytest.mark.integration
@pytest.mark.parametrize('name', sorted(LOSS_CFGS))
def test_stock_retinanet_switches_to_ranking_head_by_name(tmp_path, name):
    body = TINY_RETINANET.format(loss_cls=LOSS_CFGS[name])
    cfg, model = build_detector(write_config(tmp_path, RETINANET, body))
    head = model.bbox_head
    assert type(head).__name__ == 'RankingRetinaHead'
    assert type(head).__module__.startswith('detloss_plugin')
    assert type(head.loss_cls).__name__ == name
    assert head.cls_out_channels == 80
    history = _train(model, steps=2, size=64, num_classes=80, lr=1e-3)
    assert all(step['loss_cls'] > 0 for step in history)
    _check_predictions(_predict(model, 64, 80), 80)


@pytest.mark.parametrize('path', [
    osp.join(COCO_DIR, 'retinanet_r50_fpn_ap-loss_1x_coco.py'),
    osp.join(COCO_DIR, 'retinanet_r50_fpn_dr-loss_1x_coco.py')], ids=osp.basename)
def test_coco_configs_build_the_ranking_head(path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['detloss_plugin']
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    head = MODELS.build(cfg.model.bbox_head)
    assert type(head).__name__ == 'RankingRetinaHead'
    if 'ap-loss' in path:
        assert type(head.loss_cls).__name__ == 'APLoss'
        assert head.num_base_priors == 6  # 2 scales per octave x 3 ratios
        assert cfg.train_cfg.max_epochs == 100
    else:
        assert type(head.loss_cls).__name__ == 'DRLoss'
        assert cfg.model.train_cfg.assigner.neg_iou_thr == 0.5
        assert cfg.model.test_cfg.score_thr == 0.2


# ------------------------------------------------------------------ alignment of inputs
def _heads(loss_cls, loss_bbox=None, reg_decoded_bbox=False):
    """A RankingRetinaHead and a stock RetinaHead with the same weights."""
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    common = dict(
        num_classes=3, in_channels=8, stacked_convs=1, feat_channels=8,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2,
                              scales_per_octave=2, ratios=[0.5, 1.0, 2.0], strides=[8, 16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                        target_stds=[1.0] * 4),
        loss_bbox=loss_bbox or dict(type='L1Loss', loss_weight=1.0),
        reg_decoded_bbox=reg_decoded_bbox,
        train_cfg=ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5,
                                           neg_iou_thr=0.4, min_pos_iou=0,
                                           ignore_iof_thr=-1),
                             sampler=dict(type='PseudoSampler'), allowed_border=-1,
                             pos_weight=-1, debug=False))
    ranking = MODELS.build(dict(type='detloss_plugin.RankingRetinaHead',
                                loss_cls=dict(type='detloss_plugin.APLoss'), **common))
    stock = MODELS.build(dict(type='RetinaHead', loss_cls=loss_cls, **common))
    stock.load_state_dict(ranking.state_dict())
    return ranking, stock


@pytest.mark.parametrize('decoded', [False, True], ids=['l1-deltas', 'giou-decoded'])
def test_head_passes_aligned_scores_labels_and_weights(decoded):

    from detloss_plugin.models.losses import FocalLoss
    focal_cfg = dict(type='detloss_plugin.FocalLoss', use_sigmoid=True, gamma=2.0,
                     alpha=0.25, loss_weight=1.0)
    if decoded:  # boxes decoded from every level's anchors, an IoU loss on them
        ranking, stock = _heads(focal_cfg, dict(type='detloss_plugin.GIoULoss',
                                                loss_weight=2.0), reg_decoded_bbox=True)
    else:
        ranking, stock = _heads(focal_cfg)
    # a per-anchor loss in the ranking head's place: a misaligned gather changes its sum
    captured = {}

    class PerAnchor(FocalLoss):
        def forward(self, cls_score, labels, label_weights):
            captured['args'] = (cls_score, labels, label_weights)
            return super().forward(cls_score, labels, label_weights, avg_factor=1.0)

    ranking.loss_cls = PerAnchor(use_sigmoid=True, gamma=2.0, alpha=0.25)
    feats, metas, gts = _toy_head_batch()
    outs = ranking(feats)
    ours = ranking.loss_by_feat(*outs, gts, metas)
    theirs = stock.loss_by_feat(*outs, gts, metas)
    # stock: per level sum / avg_factor (avg_factor = number of positives here)
    _, labels, weights = captured['args']
    num_pos = int(((labels < 3) & (weights > 0)).sum())
    assert num_pos > 0 and (weights == 0).any()  # positives and ignored anchors present
    stock_cls = sum(theirs['loss_cls']) * num_pos
    assert ours['loss_cls'].item() == pytest.approx(stock_cls.item(), rel=1e-5)
    assert ours['loss_bbox'].item() == pytest.approx(sum(theirs['loss_bbox']).item(), rel=1e-5)


# ---------------------------------------------------------------------------- errors
def test_ranking_loss_in_a_stock_head_names_the_head_to_use(tmp_path):
    body = """
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=1,
                   loss_cls=dict(_delete_=True, type='detloss_plugin.APLoss', use_sigmoid=True)))
"""
    cfg, model = build_detector(write_config(tmp_path, RETINANET, body))
    assert model.bbox_head.loss_cls.attached_to is None  # a stock head attaches nothing
    data = model.data_preprocessor(demo_batch(batch_size=1, size=64, num_classes=80), True)
    with pytest.raises(ValueError, match=r"no head declared.*detloss_plugin.RankingRetinaHead"):
        model(**data, mode='loss')


def test_ranking_head_attaches_its_loss(tmp_path):
    cfg, model = build_detector(write_config(tmp_path, RETINANET,
                                             TINY_RETINANET.format(loss_cls=LOSS_CFGS['APLoss'])))
    assert model.bbox_head.loss_cls.attached_to == 'RankingRetinaHead'


def test_per_anchor_loss_in_the_ranking_head_is_refused(tmp_path):
    body = TINY_RETINANET.format(
        loss_cls="dict(_delete_=True, type='detloss_plugin.FocalLoss', use_sigmoid=True)")
    with pytest.raises(ValueError, match='RankingRetinaHead needs a ranking loss_cls'):
        build_detector(write_config(tmp_path, RETINANET, body))


# ------------------------------------------------ Rank & Sort ATSS, aLRP RetinaNet
NEW_QUICK = {
    'atss_r18-slim_rank-sort_synthetic.py': ('RankSortATSSHead', 'atss_cls',
                                             {'loss_rank', 'loss_sort', 'loss_bbox'}),
    'atss_r18-slim_focal_synthetic.py': ('ATSSHead', 'atss_cls',
                                         {'loss_cls', 'loss_bbox', 'loss_centerness'}),
    'retinanet_r18-slim_alrp-loss_synthetic.py': ('ALRPRetinaHead', 'retina_cls',
                                                  {'loss_cls', 'loss_bbox'}),
    'faster-rcnn_r18-slim_rank-sort_synthetic.py': (
        'RankSortBBoxHead', 'fc_cls', {'rpn_loss_rank', 'rpn_loss_sort', 'rpn_loss_bbox',
                                       'loss_rank', 'loss_sort', 'loss_bbox'}),
}


@pytest.mark.integration
@pytest.mark.parametrize('name', sorted(NEW_QUICK))
def test_rank_sort_and_alrp_quickstart_configs_train_and_predict(name):
    head_type, cls_layer, keys = NEW_QUICK[name]
    cfg, model = build_detector(osp.join(QUICK_DIR, name))
    two_stage = head_type == 'RankSortBBoxHead'
    head = model.roi_head.bbox_head if two_stage else model.bbox_head
    assert type(head).__name__ == head_type
    assert (head.fc_cls.out_features if two_stage else head.cls_out_channels) == 4
    if two_stage:
        assert type(model.rpn_head).__name__ == 'RankSortRPNHead'
        assert model.rpn_head.loss_cls.attached_to == 'RankSortRPNHead'
        assert model.rpn_head.rpn_cls.weight.grad is None
    assert not hasattr(head, 'atss_centerness') or head_type == 'ATSSHead'
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(3):
        data = model.data_preprocessor(
            demo_batch(batch_size=2, size=128, num_classes=4, seed=step), True)
        losses = model(**data, mode='loss')
        assert set(losses) == keys
        total, log_vars = model.parse_losses(losses)
        optim.zero_grad()
        total.backward()
        grad = getattr(head, cls_layer).weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        assert all(torch.isfinite(p.grad).all() for p in model.parameters()
                   if p.grad is not None)
        assert all(math.isfinite(float(v)) for v in log_vars.values())
        if two_stage:  # the RPN's ranking loss reaches its classifier
            assert model.rpn_head.rpn_cls.weight.grad.abs().sum() > 0
        optim.step()
    if head_type in ('RankSortATSSHead', 'RankSortBBoxHead'):
        # the box loss is rescaled to the ranking losses' value
        assert float(losses['loss_bbox']) == pytest.approx(
            float(losses['loss_rank'] + losses['loss_sort']), rel=1e-5)
    if head_type == 'ALRPRetinaHead':
        assert head.sb_weight.item() == 50.0  # updated by the hook only
        assert any(h['type'] == 'detloss_plugin.ALRPSelfBalanceHook'
                   for h in cfg.custom_hooks)
    if two_stage:
        model.test_cfg.rcnn.score_thr = 0.0
    else:
        model.test_cfg.score_thr = 0.0
    _check_predictions(_predict(model, 128, 4), 4)


@pytest.mark.parametrize('path', [
    osp.join(REPO, 'configs', 'coco', 'atss', 'atss_r50_fpn_rank-sort_1x_coco.py'),
    osp.join(REPO, 'configs', 'coco', 'faster_rcnn', 'faster-rcnn_r50_fpn_rank-sort_1x_coco.py'),
    osp.join(COCO_DIR, 'retinanet_r50_fpn_alrp-loss_1x_coco.py')], ids=osp.basename)
def test_coco_rank_sort_and_alrp_configs_build(path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    cfg = Config.fromfile(path)
    init_default_scope('mmdet')
    if 'faster' in path:
        rpn = MODELS.build(dict(cfg.model.rpn_head, train_cfg=cfg.model.train_cfg.rpn))
        roi = MODELS.build(cfg.model.roi_head.bbox_head)
        assert type(rpn).__name__ == 'RankSortRPNHead' and rpn.head_weight == 0.2
        assert type(roi).__name__ == 'RankSortBBoxHead' and roi.fc_cls.out_features == 80
        assert cfg.model.test_cfg.rcnn.score_thr == 0.4
        return
    head = MODELS.build(cfg.model.bbox_head)
    if 'rank-sort' in path:
        assert type(head).__name__ == 'RankSortATSSHead'
        assert type(head.loss_cls).__name__ == 'RankSortLoss' and head.loss_cls.delta == 0.5
        assert head.num_base_priors == 3 and cfg.optim_wrapper.optimizer.lr == 0.008
    else:
        assert type(head).__name__ == 'ALRPRetinaHead'
        assert type(head.loss_cls).__name__ == 'ALRPLoss' and head.sb_weight.item() == 50.0
        assert cfg.custom_hooks == [dict(type='detloss_plugin.ALRPSelfBalanceHook')]
        assert cfg.train_cfg.max_epochs == 100


def test_self_balance_hook_updates_once_per_epoch():
    """The weight becomes (mean cls + mean loc) / mean loc of the epoch's iterations,
    every len(train_dataloader) iterations."""
    from types import SimpleNamespace

    from detloss_plugin.models.dense_heads import ALRPRetinaHead, ALRPSelfBalanceHook
    head = _heads(dict(type='detloss_plugin.FocalLoss', use_sigmoid=True))[0]
    alrp = ALRPRetinaHead.__new__(ALRPRetinaHead)
    torch.nn.Module.__init__(alrp)
    alrp.register_buffer('sb_weight', torch.tensor(50.0))
    alrp.register_buffer('sb_sums', torch.zeros(2), persistent=False)
    model = torch.nn.ModuleDict(dict(other=head, bbox_head=alrp))
    runner = SimpleNamespace(model=model, train_dataloader=[None] * 3, iter=0)
    hook = ALRPSelfBalanceHook()
    hook.before_train(runner)
    assert hook.period == 3
    for it, (cls, loc) in enumerate([(0.9, 0.1), (0.8, 0.3), (0.7, 0.2), (0.5, 0.5)]):
        alrp.sb_sums += torch.tensor([cls, loc])
        runner.iter = it
        hook.after_train_iter(runner, it)
        if it == 2:  # (2.4 + 0.6) / 0.6 = 5
            assert alrp.sb_weight.item() == pytest.approx(5.0, rel=1e-6)
    assert alrp.sb_sums.tolist() == pytest.approx([0.5, 0.5])  # the new epoch's sums
    with pytest.raises(ValueError, match='period'):
        ALRPSelfBalanceHook(period=0)


def test_rank_sort_atss_head_passes_aligned_targets():
    """The gathered scores and IoU targets of RankSortATSSHead are those of every
    level and image of mmdet's ATSS targets, entry by entry (a per-level loop here)."""
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    from mmdet.structures.bbox import bbox_overlaps
    init_default_scope('mmdet')
    head = MODELS.build(dict(
        type='detloss_plugin.RankSortATSSHead', num_classes=3, in_channels=8,
        stacked_convs=1, feat_channels=8, norm_cfg=None,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                              scales_per_octave=3, strides=[8, 16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_bbox=dict(type='detloss_plugin.GIoULoss', loss_weight=1.0),
        train_cfg=ConfigDict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                             pos_weight=-1, debug=False)))
    captured = {}
    real = head.loss_cls.forward

    def capture(logits, targets):
        captured['args'] = (logits, targets)
        return real(logits, targets)
    head.loss_cls.forward = capture
    feats, metas, gts = _toy_head_batch()
    cls_scores, bbox_preds = head(feats)
    losses = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    logits, targets = captured['args']
    anchors, valid = head.get_anchors([f.shape[-2:] for f in cls_scores], metas,
                                     device='cpu')
    anchors_l, labels_l, weights_l, boxes_l = head.get_targets(anchors, valid, gts, metas)[:4]
    row = 0
    for i in range(2):
        for lvl in range(2):
            score = cls_scores[lvl][i].permute(1, 2, 0).reshape(-1, 3)
            delta = bbox_preds[lvl][i].permute(1, 2, 0).reshape(-1, 4)
            k = score.shape[0]
            torch.testing.assert_close(logits[row:row + k], score, atol=0, rtol=0)
            expected = torch.zeros(k, 3)
            expected[weights_l[lvl][i] == 0] = -1
            fg = (labels_l[lvl][i] < 3).nonzero().squeeze(1)
            pred = head.bbox_coder.decode(anchors_l[lvl][i][fg], delta[fg].detach())
            expected[fg, labels_l[lvl][i][fg]] = bbox_overlaps(pred, boxes_l[lvl][i][fg],
                                                               is_aligned=True)
            torch.testing.assert_close(targets[row:row + k], expected, atol=1e-6, rtol=0)
            row += k
    assert row == logits.shape[0] and (targets > 0).sum() > 0
    assert set(losses) == {'loss_rank', 'loss_sort', 'loss_bbox'}
    # ranking='image': the mean over the images of each image's own ranking
    from detloss_plugin.functional import rank_sort_loss
    per_image = [rank_sort_loss(lg, tg) for lg, tg in zip(logits.chunk(2), targets.chunk(2))]
    head.ranking = 'image'
    by_image = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    assert by_image['loss_rank'].item() == pytest.approx(
        sum(r for r, _ in per_image).item() / 2, rel=1e-6)
    assert by_image['loss_sort'].item() == pytest.approx(
        sum(s for _, s in per_image).item() / 2, rel=1e-6)
    # not the batch's value (each image's negatives only)
    assert abs(by_image['loss_rank'].item() - losses['loss_rank'].item()) > 1e-5


def test_alrp_head_losses_equal_the_function_on_the_gathered_batch():
    """ALRPRetinaHead: loss_cls and loss_bbox / 50 are alrp_loss on the batch gathered
    as RankingRetinaHead gathers it, with mmdet's own GIoULoss per positive."""
    from mmengine.config import ConfigDict
    from mmengine.registry import init_default_scope

    from mmdet.models.losses import GIoULoss
    from mmdet.registry import MODELS

    from detloss_plugin.functional import alrp_loss
    init_default_scope('mmdet')
    head = MODELS.build(dict(
        type='detloss_plugin.ALRPRetinaHead', num_classes=3, in_channels=8, stacked_convs=1,
        feat_channels=8,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2,
                              scales_per_octave=2, ratios=[0.5, 1.0, 2.0], strides=[8, 16]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_bbox=dict(type='detloss_plugin.GIoULoss', loss_weight=1.0),
        train_cfg=ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5,
                                           neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
                             sampler=dict(type='PseudoSampler'), allowed_border=-1,
                             pos_weight=-1, debug=False)))
    feats, metas, gts = _toy_head_batch()
    outs = head(feats)
    head.train()
    losses = head.loss_by_feat(*outs, gts, metas)
    b = head.gather_batch(*outs, gts, metas)
    pos = (b.labels < 3) & (b.label_weights > 0)
    pred = head.bbox_coder.decode(b.anchors[pos], b.bbox_pred[pos])
    target = head.bbox_coder.decode(b.anchors[pos], b.bbox_targets[pos])
    loc = torch.zeros(b.labels.shape[0])
    loc[pos] = GIoULoss(reduction='none')(pred, target)
    cls, loc_loss = alrp_loss(b.cls_score, b.labels, loc, b.label_weights)
    assert pos.sum() > 0
    assert losses['loss_cls'].item() == pytest.approx(cls.item(), rel=1e-6)
    assert losses['loss_bbox'].item() == pytest.approx(50.0 * loc_loss.item(), rel=1e-6)
    assert head.sb_sums.tolist() == pytest.approx([cls.item(), loc_loss.item()], rel=1e-6)
    head.update_self_balance()
    assert head.sb_weight.item() == pytest.approx((cls + loc_loss).item() / loc_loss.item(),
                                                  rel=1e-6)


@pytest.mark.parametrize('head, loss, match', [
    ('RankingRetinaHead', 'ALRPLoss', "ALRPLoss is called by bbox_head=dict.*ALRPRetinaHead"),
    ('RankingRetinaHead', 'RankSortLoss', 'RankSortATSSHead'),
    ('ALRPRetinaHead', 'APLoss', 'ALRPRetinaHead needs loss_cls detloss_plugin.ALRPLoss'),
])
def test_ranking_heads_refuse_the_other_ranking_losses(tmp_path, head, loss, match):
    body = TINY_RETINANET.replace('RankingRetinaHead', head).format(
        loss_cls=f"dict(_delete_=True, type='detloss_plugin.{loss}')")
    with pytest.raises(ValueError, match=match):
        build_detector(write_config(tmp_path, RETINANET, body))
