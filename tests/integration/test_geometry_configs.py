"""The box-geometry configs: each loads, inherits mmdet's base, resolves detloss's costs,
calculators, assigners, NWD loss and NWD-NMS with the intended settings; the tiny-object
quick-start Faster R-CNNs build and train one step."""
import os.path as osp

import pytest
import torch

from _tools_helpers import REPO

pytest.importorskip('mmdet')

QUICK = {tag: osp.join(REPO, 'configs', 'quickstart', f'faster-rcnn_r18-slim_{tag}_tiny.py')
         for tag in ('iou', 'nwd', 'nwd-rka')}
AITOD = {tag: osp.join(REPO, 'configs', 'coco', 'aitod', f'faster-rcnn_r50_fpn_{tag}_aitod.py')
         for tag in ('1x', 'nwd-rpn_1x', 'nwd-rka_1x', 'nwd-nms_1x')}
OTHERS = [osp.join(REPO, 'configs', 'coco', p) for p in (
    'dino/dino-4scale_r50_ciou-cost-loss_12e_coco.py',
    'detr/detr_r50_ciou-cost-loss_150e_coco.py',
    'atss/atss_r50_fpn_nwd-assigner_1x_coco.py',
    'tood/tood_r50_fpn_giou-assigner_1x_coco.py')]


def load(path):
    from mmengine.config import Config
    return Config.fromfile(path)


def _rpn_is_nwd(cfg, rka):
    rpn = cfg.model.rpn_head
    assert rpn.reg_decoded_bbox is True
    assert (rpn.loss_bbox.type, rpn.loss_bbox.loss_weight) == ('detloss_plugin.NWDLoss', 10.0)
    assigner = cfg.model.train_cfg.rpn.assigner
    assert assigner.type == ('detloss_plugin.RankingAssigner' if rka else 'MaxIoUAssigner')
    assert assigner.iou_calculator.mode == 'nwd'
    if rka:
        assert (assigner.topk, assigner.neg_iou_thr) == (2, 0.3)
        assert 'pos_iou_thr' not in assigner
    for nms in (cfg.model.train_cfg.rpn_proposal.nms, cfg.model.test_cfg.rpn.nms):
        assert (nms.type, nms.iou_threshold) == ('nwd_nms', 0.85)


def test_aitod_configs():
    for tag, path in AITOD.items():
        cfg = load(path)
        assert cfg.model.roi_head.bbox_head.num_classes == 8
        assert cfg.test_dataloader.dataset.ann_file == 'annotations/aitod_test_v1.json'
        assert cfg.val_evaluator.proposal_nums[-1] == 1500
        if tag in ('nwd-rpn_1x', 'nwd-rka_1x'):
            _rpn_is_nwd(cfg, rka=tag == 'nwd-rka_1x')
        if tag == 'nwd-nms_1x':
            assert cfg.model.test_cfg.rcnn.nms.type == 'nwd_nms'


def test_detr_family_atss_tood_configs():
    dino, detr, atss, tood = (load(p) for p in OTHERS)
    for cfg in (dino, detr):
        assert cfg.model.bbox_head.loss_iou.type == 'detloss_plugin.CIoULoss'
        cost = cfg.model.train_cfg.assigner.match_costs[-1]
        assert (cost.type, cost.iou_mode, cost.weight) == ('detloss_plugin.IoUCost', 'ciou', 2.0)
        assert len(cfg.model.train_cfg.assigner.match_costs) == 3
    assert atss.model.train_cfg.assigner.iou_calculator.mode == 'nwd'
    for key in ('initial_assigner', 'assigner'):
        calc = tood.model.train_cfg[key].iou_calculator
        assert (calc.mode, calc.normalize) == ('giou', True)


@pytest.mark.parametrize('tag', sorted(QUICK))
def test_tiny_quickstart_builds_and_trains_one_step(tag):
    from mmengine.registry import init_default_scope
    import detloss_plugin  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    cfg = load(QUICK[tag])
    assert cfg.train_dataloader.dataset.data_root == 'data/tiny_coco/'
    assert cfg.model.rpn_head.anchor_generator.strides == [4, 8, 16]
    if tag != 'iou':
        _rpn_is_nwd(cfg, rka=tag == 'nwd-rka')
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                         pad_shape=(64, 64), scale_factor=(1.0, 1.0),
                                         batch_input_shape=(64, 64)))
    # tiny objects: 3 x 4 px and 6 x 6 px
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[10., 10, 13, 14],
                                                            [40, 30, 46, 36]]),
                                       labels=torch.tensor([0, 2]))
    losses = model.loss(torch.randn(1, 3, 64, 64), [sample])
    total, log_vars = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    # the RPN has positives for both tiny boxes under NWD (and regresses them)
    assert log_vars['loss_rpn_bbox'] > 0
