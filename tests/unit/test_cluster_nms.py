"""Cluster-DIoU-NMS: the same kept boxes as greedy DIoU-NMS on every case of
tests/unit/test_diou_nms.py (against its slow loop and against ``diou_nms``), where Fast NMS
(the first iteration alone) differs; the weighted variant against a slow loop and by
hand; the mmcv adapter and ``batched_nms`` dispatch."""
import importlib

import pytest
import torch

from detloss_plugin.functional import cluster_diou_nms, diou_nms, weighted_cluster_diou_nms
from detloss_plugin.functional.cluster_nms import _suppression_matrix
from test_diou_nms import random_boxes, slow_diou_nms


def _both(boxes, scores, thr, **kw):
    """cluster_diou_nms and weighted_cluster_diou_nms's kept indices."""
    keep = cluster_diou_nms(boxes, scores, thr, **kw)
    keep_w, merged = weighted_cluster_diou_nms(boxes, scores, thr, **kw)
    assert torch.equal(keep, keep_w) and merged.shape == (len(keep), 4)
    return keep


@pytest.mark.parametrize('beta', [0.6, 1.0, 2.0])
@pytest.mark.parametrize('thr', [0.3, 0.5, 0.7])
def test_matches_greedy_reference(beta, thr):
    boxes, scores = random_boxes(300, seed=int(beta * 10 + thr * 100))
    keep = _both(boxes, scores, thr, beta=beta)
    assert keep.tolist() == slow_diou_nms(boxes, scores, thr, beta)
    assert torch.equal(keep, diou_nms(boxes, scores, thr, beta=beta))


def test_offset_one_matches_reference():
    boxes, scores = random_boxes(200, seed=5)
    keep = _both(boxes, scores, 0.4, beta=1.0, offset=1)
    assert keep.tolist() == slow_diou_nms(boxes, scores, 0.4, 1.0, offset=1.0)


def test_exactly_at_threshold_and_penalty_by_hand():
    # concentric: IoU = 4/16 = 0.25 exactly; suppression needs DIoU > thr strictly
    boxes = torch.tensor([[0., 0., 4., 4.], [1., 1., 3., 3.]])
    scores = torch.tensor([0.9, 0.8])
    assert _both(boxes, scores, 0.25).tolist() == [0, 1]
    assert _both(boxes, scores, 0.2499).tolist() == [0]
    # A = [0,0,4,4], B = [2,0,6,4]: IoU 1/3, rho^2/c^2 = 4/52: DIoU = 1/3 - 1/13
    boxes = torch.tensor([[0., 0., 4., 4.], [2., 0., 6., 4.]])
    assert _both(boxes, scores, 1 / 3 - 1 / 13 - 1e-4).tolist() == [0]
    assert _both(boxes, scores, 1 / 3 - 1 / 13 + 1e-4).tolist() == [0, 1]
    # the reference's beta 0.9 differs from the default 1.0 on this pair:
    # (1/13)^0.9 = 0.0995 > 1/13 = 0.0769, so DIoU is 0.2338 instead of 0.2564
    assert _both(boxes, scores, 0.245, beta=0.9).tolist() == [0, 1]
    assert _both(boxes, scores, 0.245).tolist() == [0]


def test_degenerate_empty_single_and_negative_threshold():
    boxes = torch.tensor([[1., 1., 5., 5.], [1., 1., 5., 5.], [7., 7., 7., 7.], [7., 7., 7., 7.]])
    scores = torch.tensor([0.5, 0.9, 0.3, 0.2])
    assert _both(boxes, scores, 0.5).tolist() == [1, 2, 3]
    empty = cluster_diou_nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    keep, merged = weighted_cluster_diou_nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and merged.shape == (0, 4)
    assert _both(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    boxes, scores = random_boxes(120, seed=9)
    assert _both(boxes, scores, -0.2).tolist() == slow_diou_nms(boxes, scores, -0.2)


def test_long_chain_needs_the_iterations():
    """Boxes shifted by 1 px, each suppressing the next: greedy keeps every other box.
    Fast NMS (the first iteration) keeps only the first; the fixed point is greedy's."""
    chain = torch.tensor([[float(i), 0., i + 10., 10.] for i in range(200)])
    scores = torch.linspace(1, 0, 200)
    greedy = slow_diou_nms(chain, scores, 0.5)
    assert len(greedy) > 10
    assert _both(chain, scores, 0.5).tolist() == greedy
    fast_nms = (~_suppression_matrix(chain, 0.5, 1.0, 0).any(0)).nonzero().squeeze(1)
    assert fast_nms.tolist() != greedy


def test_many_boxes_half_precision_and_float64():
    boxes, scores = random_boxes(3000, seed=11, size=600.0, max_wh=120.0)
    ref = diou_nms(boxes, scores, 0.5, beta=0.6)
    assert torch.equal(cluster_diou_nms(boxes, scores, 0.5, beta=0.6), ref)
    half = boxes.half()
    assert torch.equal(cluster_diou_nms(half, scores, 0.5),
                       diou_nms(half, scores, 0.5, backend='torch'))
    assert torch.equal(cluster_diou_nms(boxes.double(), scores, 0.5),
                       diou_nms(boxes.double(), scores, 0.5))


def slow_weighted(boxes, scores, thr, beta=1.0, wthr=0.8):
    """Greedy DIoU-NMS, then each kept box averaged with every lower-scoring box of
    IoU > wthr, weights s_j IoU_ij (itself: s_i), in plain Python floats."""
    keep = slow_diou_nms(boxes, scores, thr, beta)
    b, s = boxes.tolist(), scores.tolist()
    order = sorted(range(len(b)), key=lambda i: -s[i])
    rank = {i: r for r, i in enumerate(order)}
    out = []
    for i in keep:
        x1, y1, x2, y2 = b[i]
        acc, total = [s[i] * c for c in b[i]], s[i]
        for j in order[rank[i] + 1:]:
            u1, v1, u2, v2 = b[j]
            inter = max(min(x2, u2) - max(x1, u1), 0) * max(min(y2, v2) - max(y1, v1), 0)
            iou = inter / ((x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter)
            if iou > wthr:
                acc = [a + s[j] * iou * c for a, c in zip(acc, b[j])]
                total += s[j] * iou
        out.append([a / total for a in acc])
    return keep, torch.tensor(out)


@pytest.mark.parametrize('wthr', [0.8, 0.5])
def test_weighted_against_slow_loop(wthr):
    boxes, scores = random_boxes(400, seed=17, size=200.0)
    keep, merged = weighted_cluster_diou_nms(boxes, scores, 0.5, weight_threshold=wthr)
    ref_keep, ref_merged = slow_weighted(boxes, scores, 0.5, wthr=wthr)
    assert keep.tolist() == ref_keep
    torch.testing.assert_close(merged, ref_merged, rtol=1e-5, atol=1e-4)
    assert (merged != boxes[keep]).any(dim=1).sum() > 5  # some boxes really moved


def test_weighted_by_hand():
    # A = [0,0,10,10] (0.9), B = [1,0,11,10] (0.6): IoU = 90/110 = 9/11 > 0.8, DIoU > 0.5:
    # B is suppressed and joins A's average with weight 0.6 * 9/11; C far away is alone.
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.6, 0.5])
    keep, merged = weighted_cluster_diou_nms(boxes, scores, 0.5)
    assert keep.tolist() == [0, 2]
    w = 0.6 * 9 / 11
    x1, x2 = w * 1 / (0.9 + w), (0.9 * 10 + w * 11) / (0.9 + w)
    torch.testing.assert_close(merged, torch.tensor([[x1, 0., x2, 10.], [50., 50., 60., 60.]]))
    # above the weight threshold only: at 0.85, B no longer joins
    _, merged = weighted_cluster_diou_nms(boxes, scores, 0.5, weight_threshold=0.85)
    torch.testing.assert_close(merged, boxes[[0, 2]])


def test_errors_name_the_argument():
    good = dict(boxes=torch.zeros(3, 4), scores=torch.zeros(3), iou_threshold=0.5)
    for fn in (cluster_diou_nms, weighted_cluster_diou_nms):
        with pytest.raises(ValueError, match='boxes'):
            fn(**{**good, 'boxes': torch.zeros(3, 5)})
        with pytest.raises(ValueError, match='scores'):
            fn(**{**good, 'scores': torch.zeros(4)})
        with pytest.raises(ValueError, match='beta'):
            fn(**good, beta=0.0)
        with pytest.raises(ValueError, match='offset'):
            fn(**good, offset=2)
    with pytest.raises(ValueError, match='weight_threshold'):
        weighted_cluster_diou_nms(**good, weight_threshold=1.5)


# ------------------------------------------------------------------------------ mmcv
def test_mmcv_adapter_and_batched_nms_dispatch():
    import detloss_plugin  # noqa: F401  (registers cluster_diou_nms with mmcv)
    from mmcv.ops import batched_nms

    from detloss_plugin.functional import batched_diou_nms
    from detloss_plugin.ops import cluster_diou_nms_mmcv
    nms_module = importlib.import_module('mmcv.ops.nms')
    assert nms_module.cluster_diou_nms is cluster_diou_nms_mmcv
    boxes, scores = random_boxes(500, seed=21)
    dets, keep = cluster_diou_nms_mmcv(boxes, scores, 0.5, beta=0.6, max_num=20)
    assert keep.tolist() == slow_diou_nms(boxes, scores, 0.5, 0.6)[:20]
    assert torch.equal(dets[:, 4], scores[keep])
    idxs = torch.randint(0, 3, (500,), generator=torch.Generator().manual_seed(1))
    _, keep = batched_nms(boxes, scores, idxs,
                          dict(type='cluster_diou_nms', iou_threshold=0.5, beta=0.6))
    # mmcv shifts the classes apart by another offset than batched_diou_nms: same sets
    assert sorted(keep.tolist()) == sorted(batched_diou_nms(boxes, scores, idxs, 0.5, 0.6).tolist())
    with pytest.raises(ValueError, match='weighted'):
        batched_nms(boxes, scores, idxs,
                    dict(type='cluster_diou_nms', iou_threshold=0.5, weighted=True))
