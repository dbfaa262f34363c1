"""Every detloss class that shares a name with an mmdet loss, against mmdet's class, in
every call form that mmdet's own heads use: same value (rel. 1e-5) and the same
gradient with a config that changes only ``type``.

The call forms are those of the heads named in each test (FCOS's centerness, YOLOv3's
batched tensors, Grid R-CNN's heatmaps, SABL's bucket labels, FSAF's flattened weights,
HTC's semantic map, YOLOX's square IoU); the defaults are checked by building both
classes from the same config dict.
"""
import math

import pytest
import torch

import detloss_plugin  # noqa: F401  (registers detloss_plugin.*)
from detloss_plugin.swap import SHARED_NAMES, LossSwapError, loss_positions, swap_losses

mmdet_losses = pytest.importorskip('mmdet.models.losses')

F64 = torch.float64


def build_pair(cfg: dict):
    """``(detloss module, mmdet module)`` built from the same config dict, only the
    ``type`` prefixed."""
    from mmdet.registry import MODELS as MMDET
    from detloss_plugin.registry import MODELS as OURS
    cfg = dict(cfg)
    name = cfg.pop('type')
    ours = OURS.build(dict(type=f'detloss_plugin.{name}', **cfg))
    theirs = MMDET.build(dict(type=f'mmdet.{name}', **cfg))
    assert type(ours).__module__.startswith('detloss_plugin.')
    assert type(theirs).__module__.startswith('mmdet.')
    return ours, theirs


def assert_same(cfg: dict, pred: torch.Tensor, *args, rtol=1e-5, **kwargs):
    """Value and gradient (of the sum, w.r.t. ``pred``) of both classes agree."""
    ours, theirs = build_pair(cfg)
    results = []
    for module in (ours, theirs):
        x = pred.detach().clone().requires_grad_()
        out = module(x, *args, **kwargs)
        if isinstance(out, dict):
            out = sum(out.values())
        out.sum().backward()
        results.append((out.detach(), x.grad))
    (ours_v, ours_g), (theirs_v, theirs_g) = results
    assert ours_v.shape == theirs_v.shape
    torch.testing.assert_close(ours_v.to(theirs_v.dtype), theirs_v, rtol=rtol, atol=1e-8)
    assert torch.isfinite(ours_g).all()
    torch.testing.assert_close(ours_g.to(theirs_g.dtype), theirs_g, rtol=rtol, atol=1e-7)
    return ours_v


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def boxes(n=40, seed=0, overlap=True):
    g = gen(seed)
    ctr = 40 + 40 * torch.rand(n, 2, generator=g, dtype=F64)
    wh = 8 + 40 * torch.rand(n, 2, generator=g, dtype=F64)
    shift = (torch.rand(n, 2, generator=g, dtype=F64) - 0.5) * wh * (0.5 if overlap else 3)
    twh = wh * torch.exp(0.3 * torch.randn(n, 2, generator=g, dtype=F64))
    pred = torch.cat([ctr - wh / 2, ctr + wh / 2], 1)
    target = torch.cat([ctr + shift - twh / 2, ctr + shift + twh / 2], 1)
    return pred, target


def test_every_shared_name_is_covered():
    from mmdet.registry import MODELS as MMDET
    from detloss_plugin.registry import MODELS as OURS
    shared = sorted(n for n in OURS.module_dict if n in MMDET.module_dict
                    and n.endswith(('Loss', 'GHMC', 'GHMR')))
    assert shared == sorted(SHARED_NAMES)


# ------------------------------------------------------------------ IoU family
@pytest.mark.parametrize('cfg', [
    dict(type='IoULoss'),                        # mmdet's default: log, eps 1e-6
    dict(type='IoULoss', mode='linear'),
    dict(type='IoULoss', mode='square'),         # YOLOX
    dict(type='IoULoss', linear=True),           # mmdet's legacy spelling
    dict(type='IoULoss', eps=1e-7, loss_weight=5.0),
    dict(type='GIoULoss'),
    dict(type='GIoULoss', eps=1e-7, loss_weight=2.0),
    dict(type='DIoULoss'),
    dict(type='CIoULoss'),                       # gated like mmdet's
    dict(type='SIoULoss'),                       # mmdet's neg_gamma=False form
    dict(type='SIoULoss', neg_gamma=True),
], ids=lambda c: '-'.join(f'{k}={v}' for k, v in c.items()))
def test_iou_family_defaults_and_options(cfg):
    pred, target = boxes(overlap=True)
    far_pred, far_target = boxes(seed=1, overlap=False)
    pred, target = torch.cat([pred, far_pred]), torch.cat([target, far_target])
    weight = torch.rand(len(pred), generator=gen(2), dtype=F64)
    assert_same(cfg, pred, target, weight, avg_factor=7.0)
    assert_same(cfg, pred, target, weight[:, None].expand(-1, 4).contiguous())
    assert_same(cfg, pred, target, reduction_override='none')
    assert_same(cfg, pred, target, weight, reduction_override='sum')


def test_ciou_gate_is_the_default_and_the_aaai_form_an_option():
    ours, _ = build_pair(dict(type='CIoULoss'))
    assert ours.alpha_gate and ours.eps == 1e-6
    pred, target = boxes()
    from detloss_plugin.models.losses import CIoULoss
    ungated = CIoULoss(alpha_gate=False, reduction='none')(pred, target)
    assert not torch.allclose(ungated, ours(pred, target, reduction_override='none'))


def test_iou_square_value_by_hand():
    # pred [0, 0, 2, 2], target [1, 0, 3, 2]: IoU = 2 / 6 = 1/3, loss = 1 - 1/9 = 8/9
    from detloss_plugin.models.losses import IoULoss
    loss = IoULoss(mode='square', eps=1e-12)(torch.tensor([[0., 0., 2., 2.]]),
                                             torch.tensor([[1., 0., 3., 2.]]))
    torch.testing.assert_close(loss, torch.tensor(8 / 9))


# ------------------------------------------------------------------ coordinate losses
@pytest.mark.parametrize('name', ['L1Loss', 'SmoothL1Loss', 'MSELoss'])
def test_coordinate_losses_on_batched_tensors(name):
    """YOLOv3 calls MSELoss / CE on ``(B, N, 2)`` tensors with a ``(B, N, 2)`` or a
    ``(B, N, 1)`` weight."""
    g = gen(3)
    pred = torch.randn(2, 30, 2, generator=g, dtype=F64)
    target = torch.randn(2, 30, 2, generator=g, dtype=F64)
    weight = (torch.rand(2, 30, 1, generator=g, dtype=F64) > 0.4).to(F64)
    cfg = dict(type=name, loss_weight=2.0)
    if name == 'SmoothL1Loss':
        cfg['beta'] = 1.0 / 9.0
    assert_same(cfg, pred, target, weight.expand(-1, -1, 2).contiguous(), avg_factor=4.0)
    assert_same(cfg, pred, target, weight)
    assert_same(cfg, pred, target, reduction_override='none')
    assert_same(cfg, pred.reshape(-1, 4), target.reshape(-1, 4),
                torch.rand(30, 4, generator=g, dtype=F64))


# ------------------------------------------------------------------ cross-entropy
def logits(*shape, seed=0):
    """float32 scores: mmdet's sigmoid cross-entropy casts its targets to float32, so
    its value is float32 whatever the score's dtype."""
    return 2 * torch.randn(*shape, generator=gen(seed))


def test_sigmoid_ce_on_a_one_d_score_with_float_targets():
    """FCOS / ATSS / DDOD centerness and IoU branches: ``(n,)`` scores, float targets."""
    cfg = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
    score = logits(170)
    target = torch.rand(170, generator=gen(1))
    assert_same(cfg, score, target, avg_factor=23.5)
    assert_same(cfg, score, target, reduction_override='none')
    assert_same(cfg, score, target, torch.rand(170, generator=gen(2)))


def test_sigmoid_ce_on_batched_scores():
    """YOLOv3: ``(B, N, C)`` class scores with ``(B, N, C)`` float one-hot targets and a
    ``(B, N, 1)`` weight; ``(B, N)`` objectness."""
    cfg = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0,
               reduction='sum')
    score = logits(2, 50, 5)
    labels = torch.randint(0, 5, (2, 50), generator=gen(1))
    target = torch.nn.functional.one_hot(labels, 5).float()
    weight = (torch.rand(2, 50, 1, generator=gen(2)) > 0.5).float()
    assert_same(cfg, score, target, weight)
    assert_same(cfg, score[..., 0], target[..., 0], weight[..., 0])
    assert_same(cfg, score, target, reduction_override='none')


def test_sigmoid_ce_on_heatmaps_and_integer_binary_targets():
    """Grid R-CNN: ``(N, 9, 28, 28)`` heatmaps, float 0/1 targets; SABL: ``(N, 28)``
    scores with integer 0/1 targets of the same shape and a weight."""
    cfg = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=15.0)
    heat = logits(3, 9, 28, 28)
    target = (torch.rand(3, 9, 28, 28, generator=gen(1)) > 0.9).float()
    assert_same(cfg, heat, target)
    sabl = logits(12, 28, seed=4)
    bucket = (torch.rand(12, 28, generator=gen(5)) > 0.7).long()
    weight = torch.rand(12, 28, generator=gen(6))
    assert_same(dict(cfg, loss_weight=1.5), sabl, bucket, weight, avg_factor=12.0)
    assert_same(dict(cfg, loss_weight=1.5), sabl, bucket, reduction_override='none')


@pytest.mark.parametrize('use_sigmoid', [True, False])
@pytest.mark.parametrize('avg_non_ignore', [False, True])
def test_ce_options(use_sigmoid, avg_non_ignore):
    cols = 5 if use_sigmoid else 6
    score = logits(40, cols)
    labels = torch.randint(0, 6, (40,), generator=gen(1))
    labels[:5] = 255
    weight = torch.rand(40, generator=gen(2))
    cfg = dict(type='CrossEntropyLoss', use_sigmoid=use_sigmoid, ignore_index=255,
               avg_non_ignore=avg_non_ignore, loss_weight=0.7)
    assert_same(cfg, score, labels, weight)
    assert_same(cfg, score, labels)
    assert_same(cfg, score, labels, weight, avg_factor=11.0)
    assert_same(cfg, score, labels, reduction_override='none')
    assert_same(dict(cfg, class_weight=[0.5 + 0.1 * i for i in range(cols)]),
                score, labels, weight)
    labels[labels == 255] = 7  # the per-call ignore_index of mmdet's forward
    assert_same(dict(cfg, ignore_index=None), score, labels, weight, ignore_index=7)


def test_softmax_ce_on_a_semantic_map():
    """HTC's semantic head: ``(B, C, H, W)`` scores, ``(B, H, W)`` labels, ignore 255."""
    cfg = dict(type='CrossEntropyLoss', ignore_index=255, loss_weight=0.2)
    score = logits(2, 7, 16, 16)
    labels = torch.randint(0, 7, (2, 16, 16), generator=gen(1))
    labels[:, :3] = 255
    assert_same(cfg, score, labels)
    assert_same(dict(cfg, avg_non_ignore=True), score, labels)
    assert_same(cfg, score, labels, reduction_override='none')


def test_use_mask_is_refused_with_what_to_use():
    from detloss_plugin.models.losses import CrossEntropyLoss
    with pytest.raises(ValueError, match=r"use_mask=True.*keep type='CrossEntropyLoss'"):
        CrossEntropyLoss(use_mask=True)


# ------------------------------------------------------------------ focal
def test_focal_weight_shapes_of_mmdets_heads():
    """RetinaNet: ``(N,)`` weight; FSAF: ``(N * C,)`` flattened weight; ``(N, C)``."""
    cfg = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
    score = logits(30, 4)
    labels = torch.randint(0, 5, (30,), generator=gen(1))
    weight = torch.rand(30, 4, generator=gen(2))
    assert_same(cfg, score, labels, weight[:, 0], avg_factor=6.0)
    assert_same(cfg, score, labels, weight.reshape(-1), avg_factor=6.0)
    assert_same(cfg, score, labels, weight)
    assert_same(cfg, score, labels, reduction_override='none')
    target = torch.nn.functional.one_hot(labels, 5)[:, :4].float()
    assert_same(cfg, score, target, weight)
    assert_same(dict(cfg, gamma=1.5, alpha=0.4, reduction='sum'), score, labels)


def test_focal_activated():
    cfg = dict(type='FocalLoss', use_sigmoid=True, activated=True, loss_weight=2.0)
    probs = torch.sigmoid(logits(30, 4)).clamp(1e-4, 1 - 1e-4)
    labels = torch.randint(0, 5, (30,), generator=gen(1))
    assert_same(cfg, probs, labels, avg_factor=3.0, rtol=1e-4)


# ------------------------------------------------------------------ GHM, seesaw
def test_ghm_defaults_are_mmdets():
    score = logits(60, 4)
    labels = torch.randint(0, 5, (60,), generator=gen(1))
    label_weight = (torch.rand(60, generator=gen(2)) > 0.2).float()
    ours, theirs = build_pair(dict(type='GHMC'))
    assert ours.momentum == theirs.momentum == 0
    assert_same(dict(type='GHMC', bins=30, loss_weight=1.0), score, labels, label_weight)
    pred, target = logits(60, 4, seed=3) * 0.1, logits(60, 4, seed=4) * 0.1
    weight = label_weight[:, None].expand(-1, 4).contiguous()
    assert_same(dict(type='GHMR', mu=0.02, bins=10, loss_weight=10.0), pred, target, weight)


def test_seesaw_defaults_are_mmdets():
    score = logits(40, 12)
    labels = torch.randint(0, 11, (40,), generator=gen(1))
    assert_same(dict(type='SeesawLoss', num_classes=10, loss_weight=1.0), score, labels)


# ------------------------------------------------------------------ option rules
@pytest.mark.parametrize('name', ['IoULoss', 'GIoULoss', 'CIoULoss', 'SIoULoss', 'L1Loss',
                                  'MSELoss', 'SmoothL1Loss', 'FocalLoss', 'CrossEntropyLoss',
                                  'GHMC', 'GHMR', 'WIoULoss', 'AlphaIoULoss',
                                  'EfficientIoULoss', 'FocalEIoULoss', 'AnchorLoss',
                                  'SymmetricCELoss', 'KLLoss'])
def test_one_loss_weight_rule_for_every_module(name):
    from detloss_plugin.registry import MODELS
    for bad in (-1.0, float('nan'), float('inf')):
        with pytest.raises(ValueError, match=r'loss_weight must be a finite number >= 0'):
            MODELS.build(dict(type=f'detloss_plugin.{name}', loss_weight=bad))
    for bad in ('1', True, None):
        with pytest.raises(TypeError, match='loss_weight must be a number'):
            MODELS.build(dict(type=f'detloss_plugin.{name}', loss_weight=bad))
    assert MODELS.build(dict(type=f'detloss_plugin.{name}', loss_weight=0)).loss_weight == 0.0


# ------------------------------------------------------------------ swap_losses
def test_swap_losses_changes_only_the_type():
    cfg = dict(type='FasterRCNN', rpn_head=dict(
        type='RPNHead', loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True),
        loss_bbox=dict(type='mmdet.L1Loss', loss_weight=1.0)),
        roi_head=dict(type='StandardRoIHead', bbox_head=[
            dict(type='Shared2FCBBoxHead', loss_bbox=dict(type='GIoULoss', loss_weight=10.0),
                 loss_cls=dict(type='BalancedL1Loss'))],
            mask_head=dict(loss_mask=dict(type='CrossEntropyLoss', use_mask=True))))
    assert loss_positions(cfg) == ['rpn_head.loss_cls', 'rpn_head.loss_bbox',
                                   'roi_head.bbox_head.0.loss_bbox']
    changed = swap_losses(cfg)
    assert cfg['rpn_head']['loss_cls'] == dict(type='detloss_plugin.CrossEntropyLoss',
                                               use_sigmoid=True)
    assert cfg['rpn_head']['loss_bbox']['type'] == 'detloss_plugin.L1Loss'
    assert cfg['roi_head']['bbox_head'][0]['loss_bbox'] == dict(
        type='detloss_plugin.GIoULoss', loss_weight=10.0)
    assert cfg['roi_head']['bbox_head'][0]['loss_cls']['type'] == 'BalancedL1Loss'
    assert cfg['roi_head']['mask_head']['loss_mask']['type'] == 'CrossEntropyLoss'
    assert changed == ['rpn_head.loss_cls', 'rpn_head.loss_bbox',
                       'roi_head.bbox_head.0.loss_bbox']


def test_swap_losses_refuses_dynamic_rcnn_with_the_reason():
    cfg = dict(roi_head=dict(type='DynamicRoIHead', bbox_head=dict(
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0))))
    with pytest.raises(LossSwapError, match=r"DynamicRoIHead.*asserts.*mmdet's SmoothL1Loss"
                                            r".*keep type='SmoothL1Loss'"):
        swap_losses(cfg)
    assert cfg['roi_head']['bbox_head']['loss_bbox']['type'] == 'SmoothL1Loss'
    # the other losses can still be swapped
    assert swap_losses(cfg, names=('CrossEntropyLoss',)) == []
    assert math.isclose(cfg['roi_head']['bbox_head']['loss_bbox']['beta'], 1.0)


def test_ce_class_weight_as_detr_head_writes_it():
    """``DETRHead`` turns ``class_weight=1.0, bg_cls_weight=0.1`` into a tensor of
    ``num_classes + 1`` values in the loss config."""
    class_weight = torch.ones(6)
    class_weight[5] = 0.1
    score = logits(30, 6)
    labels = torch.randint(0, 6, (30,), generator=gen(1))
    assert_same(dict(type='CrossEntropyLoss', class_weight=class_weight), score, labels,
                avg_factor=4.0)
    from detloss_plugin.models.losses import CrossEntropyLoss
    with pytest.raises(ValueError, match='class_weight must hold finite values >= 0'):
        CrossEntropyLoss(class_weight=[1.0, -1.0])
