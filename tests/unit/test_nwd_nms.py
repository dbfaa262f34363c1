"""NWD-NMS against a slow greedy loop in Python floats, exact threshold cases by hand,
the mmcv adapter and mmcv's ``batched_nms`` dispatch; the registered NWDLoss."""
import importlib
import math

import numpy as np
import pytest
import torch

from detloss_plugin.functional import nwd_loss, nwd_nms


def slow_nwd_nms(boxes, scores, thr, constant=12.8):
    """Greedy NMS with NWD, one pair at a time."""
    boxes = boxes.tolist()
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    keep, removed = [], set()
    for a, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        x1, y1, x2, y2 = boxes[i]
        for j in order[a + 1:]:
            u1, v1, u2, v2 = boxes[j]
            w2 = (((x1 + x2) - (u1 + u2)) / 2) ** 2 + (((y1 + y2) - (v1 + v2)) / 2) ** 2 \
                + (((x2 - x1) - (u2 - u1)) ** 2 + ((y2 - y1) - (v2 - v1)) ** 2) / 4
            if math.exp(-math.sqrt(max(w2, 1e-7)) / constant) > thr:
                removed.add(j)
    return keep


def tiny_boxes(n, seed, size=200.0, max_wh=16.0, clusters=40, jitter=1.5):
    """Tiny boxes in clusters (detections of the same objects): sizes 2 to 18 px."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(clusters, 2, generator=g) * size
    sizes = torch.rand(clusters, 2, generator=g) * max_wh + 2
    member = torch.randint(0, clusters, (n,), generator=g)
    c = centres[member] + torch.randn(n, 2, generator=g) * jitter
    wh = (sizes[member] + torch.randn(n, 2, generator=g) * jitter).clamp(min=0.5)
    return torch.cat([c - wh / 2, c + wh / 2], 1), torch.rand(n, generator=g)


@pytest.mark.parametrize('thr', [0.5, 0.7, 0.85, 0.9])
@pytest.mark.parametrize('constant', [6.0, 12.8])
def test_matches_slow_greedy(thr, constant):
    boxes, scores = tiny_boxes(300, seed=int(thr * 100 + constant))
    keep = nwd_nms(boxes, scores, thr, constant)
    expected = slow_nwd_nms(boxes.double(), scores, thr, constant)
    assert keep.tolist() == expected
    assert 0 < len(expected) < 300   # the case suppresses something and keeps something


def test_exactly_at_threshold_and_by_hand():
    # same shape, centres 5 px apart: NWD = exp(-5 / 12.8) = 0.6766; suppression needs
    # NWD > thr strictly. float64 so the threshold comparison is exact.
    boxes = torch.tensor([[0., 0, 10, 10], [5, 0, 15, 10]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    nwd_value = math.exp(-5 / 12.8)
    assert nwd_nms(boxes, scores, nwd_value).tolist() == [0, 1]
    assert nwd_nms(boxes, scores, nwd_value - 1e-9).tolist() == [0]
    # disjoint tiny boxes (IoU 0) can still suppress each other: centres 7 px apart,
    # NWD = exp(-7 / 12.8) = 0.579
    boxes = torch.tensor([[0., 0, 4, 4], [7, 0, 11, 4]])
    assert nwd_nms(boxes, scores.float(), 0.5).tolist() == [0]
    assert nwd_nms(boxes, scores.float(), 0.6).tolist() == [0, 1]


def test_chain_needs_greedy_not_fast_nms():
    # A suppresses B, B would suppress C, but B is gone so C survives (greedy);
    # Fast NMS (one matrix pass) would drop C as well.
    boxes = torch.tensor([[0., 0, 4, 4], [3, 0, 7, 4], [6, 0, 10, 4]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # NWD(A, B) = NWD(B, C) = exp(-3/12.8) = 0.791, NWD(A, C) = exp(-6/12.8) = 0.626
    assert nwd_nms(boxes, scores, 0.7).tolist() == [0, 2]


def test_degenerate_empty_half_and_ties():
    boxes = torch.tensor([[1., 1, 5, 5], [1, 1, 5, 5], [50, 50, 50, 50], [50, 50, 50, 50]])
    scores = torch.tensor([0.5, 0.9, 0.3, 0.2])
    assert nwd_nms(boxes, scores, 0.85).tolist() == [1, 2]
    empty = nwd_nms(torch.zeros(0, 4), torch.zeros(0), 0.85)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    b, s = tiny_boxes(100, seed=3)
    assert nwd_nms(b.half(), s.half(), 0.85).tolist() == slow_nwd_nms(
        b.half().double(), s.half(), 0.85)


@pytest.mark.parametrize('kwargs, exc, match', [
    (dict(iou_threshold=1.5), ValueError, 'iou_threshold'),
    (dict(iou_threshold='0.5'), TypeError, 'iou_threshold'),
    (dict(constant=0.0), ValueError, 'constant'),
])
def test_bad_arguments(kwargs, exc, match):
    boxes, scores = tiny_boxes(5, seed=0)
    args = dict(iou_threshold=0.85)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        nwd_nms(boxes, scores, **args)
    with pytest.raises(ValueError, match='boxes'):
        nwd_nms(boxes[:, :3], scores, 0.5)
    with pytest.raises(ValueError, match='scores'):
        nwd_nms(boxes, scores[:2], 0.5)


def test_mmcv_adapter_and_batched_nms_dispatch():
    pytest.importorskip('mmcv.ops')
    import detloss_plugin  # noqa: F401  (registers nwd_nms with mmcv)
    from mmcv.ops import batched_nms
    from detloss_plugin.ops import nwd_nms_mmcv
    boxes, scores = tiny_boxes(300, seed=8)
    dets, keep = nwd_nms_mmcv(boxes, scores, 0.85)
    assert keep.tolist() == slow_nwd_nms(boxes.double(), scores, 0.85)
    assert torch.equal(dets[:, :4], boxes[keep]) and torch.all(dets[:-1, 4] >= dets[1:, 4])
    dets_np, keep_np = nwd_nms_mmcv(boxes.numpy(), scores.numpy(), 0.85)
    assert isinstance(dets_np, np.ndarray) and keep_np.tolist() == keep.tolist()
    nms_module = importlib.import_module('mmcv.ops.nms')
    assert nms_module.nwd_nms is nwd_nms_mmcv
    idxs = torch.randint(0, 3, (300,), generator=torch.Generator().manual_seed(1))
    dets, keep = batched_nms(boxes, scores, idxs, dict(type='nwd_nms', iou_threshold=0.85))
    expected = []
    for c in range(3):
        members = (idxs == c).nonzero().squeeze(1)
        expected += members[slow_nwd_nms(boxes[members].double(), scores[members], 0.85)].tolist()
    assert sorted(keep.tolist()) == sorted(expected)
    assert torch.all(dets[:-1, 4] >= dets[1:, 4])


# ------------------------------------------------------------ registered loss
def test_nwd_loss_module_contract():
    from detloss_plugin.models.losses import NWDLoss
    from detloss_plugin.registry import MODELS
    module = MODELS.build(dict(type='detloss_plugin.NWDLoss', mode='exp', constant=12.8, loss_weight=2.0))
    assert isinstance(module, NWDLoss)
    pred, _ = tiny_boxes(6, seed=1)
    target, _ = tiny_boxes(6, seed=2)
    per_box = nwd_loss(pred, target)
    torch.testing.assert_close(module(pred, target, reduction_override='none'), 2 * per_box)
    torch.testing.assert_close(module(pred, target), 2 * per_box.mean())
    weight = torch.tensor([1., 0, 1, 0, 1, 0])
    torch.testing.assert_close(module(pred, target, weight, avg_factor=3.0),
                               2 * (per_box * weight).sum() / 3.0)
    torch.testing.assert_close(module(pred, target, weight[:, None].expand(6, 4)),
                               2 * (per_box * weight).mean())
    half = module(pred.half(), target.half())
    assert half.dtype == torch.float32
    empty = pred[:0].clone().requires_grad_()
    out = module(empty, target[:0])
    assert out.item() == 0 and out.requires_grad
    for mode in ('sqrt', 'log', 'norm_sqrt', 'w2'):
        torch.testing.assert_close(NWDLoss(mode=mode)(pred, target, reduction_override='none'),
                                   nwd_loss(pred, target, mode))
    with pytest.raises(ValueError, match='mode'):
        NWDLoss(mode='kl')
    with pytest.raises(TypeError, match='constnt'):
        NWDLoss(constnt=12.8)


def test_sparse_pairs_in_small_chunks_and_many_boxes(monkeypatch):
    """The near-pair search in chunks of a few pairs gives the same result, and a larger
    set (800 boxes, some in long chains) matches the slow loop."""
    import detloss_plugin.functional.wasserstein as W
    boxes, scores = tiny_boxes(800, seed=31, size=300.0, clusters=60)
    expected = slow_nwd_nms(boxes.double(), scores, 0.8)
    assert nwd_nms(boxes, scores, 0.8).tolist() == expected
    monkeypatch.setattr(W, '_BLOCK_ELEMENTS', 7)
    assert nwd_nms(boxes, scores, 0.8).tolist() == expected


def test_thresholds_zero_and_one_and_nan():
    boxes, scores = tiny_boxes(50, seed=2)
    # NWD > 0 always: the best box suppresses everything; NWD > 1 never
    assert nwd_nms(boxes, scores, 0.0).tolist() == [int(scores.argmax())]
    assert sorted(nwd_nms(boxes, scores, 1.0).tolist()) == list(range(50))
    bad = boxes.clone()
    bad[3] = float('nan')
    keep = nwd_nms(bad, scores, 0.85)
    assert 3 in keep.tolist()   # a NaN box suppresses nothing and is not suppressed
    assert keep.tolist() == [k for k in slow_nwd_nms(bad.double(), scores, 0.85)]
