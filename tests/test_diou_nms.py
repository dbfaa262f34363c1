"""DIoU-NMS: both backends against a slow, obviously correct greedy loop, exact
threshold cases worked by hand, the mmcv adapter and mmcv's dispatch."""
import importlib
import math

import numpy as np
import pytest
import torch

from detloss_plugin.functional import batched_diou_nms, diou_nms
from detloss_plugin.ops import diou_nms_mmcv

BACKENDS = ['c', 'torch']


def slow_diou_nms(boxes, scores, thr, beta=1.0, offset=0.0):
    """Greedy DIoU-NMS in plain Python floats, one pair at a time."""
    boxes = boxes.tolist()
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    keep, removed = [], set()
    for a, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        x1, y1, x2, y2 = boxes[i]
        for j in order[a + 1:]:
            if j in removed:
                continue
            u1, v1, u2, v2 = boxes[j]
            iw = max(min(x2, u2) - max(x1, u1) + offset, 0.0)
            ih = max(min(y2, v2) - max(y1, v1) + offset, 0.0)
            inter = iw * ih
            union = (x2 - x1 + offset) * (y2 - y1 + offset) + (u2 - u1 + offset) * (v2 - v1 + offset) - inter
            iou = inter / max(union, 1e-12)
            rho2 = ((x1 + x2) / 2 - (u1 + u2) / 2) ** 2 + ((y1 + y2) / 2 - (v1 + v2) / 2) ** 2
            c2 = (max(x2, u2) - min(x1, u1) + offset) ** 2 + (max(y2, v2) - min(y1, v1) + offset) ** 2
            penalty = (rho2 / max(c2, 1e-12)) ** beta
            if iou - penalty > thr:
                removed.add(j)
    return keep


def random_boxes(n, seed, size=300.0, max_wh=60.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * max_wh + 1
    scores = torch.rand(n, generator=g)
    return torch.cat([xy, xy + wh], 1), scores


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('beta', [0.6, 1.0, 2.0])
@pytest.mark.parametrize('thr', [0.3, 0.5, 0.7])
def test_matches_slow_reference(backend, beta, thr):
    boxes, scores = random_boxes(300, seed=int(beta * 10 + thr * 100))
    keep = diou_nms(boxes, scores, thr, beta=beta, backend=backend)
    assert keep.tolist() == slow_diou_nms(boxes, scores, thr, beta)


@pytest.mark.parametrize('backend', BACKENDS)
def test_offset_one_matches_reference(backend):
    boxes, scores = random_boxes(200, seed=5)
    keep = diou_nms(boxes, scores, 0.4, beta=1.0, offset=1, backend=backend)
    assert keep.tolist() == slow_diou_nms(boxes, scores, 0.4, 1.0, offset=1.0)


@pytest.mark.parametrize('backend', BACKENDS)
def test_exactly_at_threshold_is_kept(backend):
    # Concentric boxes: rho = 0, so DIoU = IoU. [0,0,4,4] (area 16) holds [1,1,3,3]
    # (area 4): IoU = 4 / 16 = 0.25 exactly. Suppression needs DIoU > thr strictly.
    boxes = torch.tensor([[0., 0., 4., 4.], [1., 1., 3., 3.]])
    scores = torch.tensor([0.9, 0.8])
    assert diou_nms(boxes, scores, 0.25, backend=backend).tolist() == [0, 1]
    assert diou_nms(boxes, scores, 0.2499, backend=backend).tolist() == [0]


@pytest.mark.parametrize('backend', BACKENDS)
def test_distance_penalty_and_beta_by_hand(backend):
    # A = [0,0,4,4], B = [2,0,6,4]: inter 8, union 24, IoU = 1/3. Centres (2,2), (4,2):
    # rho^2 = 4; enclosing box [0,0,6,4]: c^2 = 36 + 16 = 52, rho^2/c^2 = 1/13.
    # beta = 1: DIoU = 1/3 - 1/13 = 0.2564...; beta = 0.5: 1/3 - sqrt(1/13) = 0.0560...
    boxes = torch.tensor([[0., 0., 4., 4.], [2., 0., 6., 4.]])
    scores = torch.tensor([0.9, 0.8])
    diou_beta1 = 1 / 3 - 1 / 13
    diou_beta_half = 1 / 3 - math.sqrt(1 / 13)
    assert diou_nms(boxes, scores, diou_beta1 - 1e-4, backend=backend).tolist() == [0]
    assert diou_nms(boxes, scores, diou_beta1 + 1e-4, backend=backend).tolist() == [0, 1]
    # plain NMS at threshold 0.3 would suppress B (IoU 0.333); DIoU-NMS keeps it
    assert diou_nms(boxes, scores, 0.3, backend=backend).tolist() == [0, 1]
    assert diou_nms(boxes, scores, diou_beta_half - 1e-4, beta=0.5, backend=backend).tolist() == [0]
    assert diou_nms(boxes, scores, diou_beta_half + 1e-4, beta=0.5, backend=backend).tolist() == [0, 1]


@pytest.mark.parametrize('backend', BACKENDS)
def test_degenerate_boxes(backend):
    # identical boxes: IoU 1, rho 0 -> the lower score is suppressed; zero-area points
    # at the same place: union 0 and c 0 are clamped, DIoU = 0 -> both kept at thr 0.5.
    boxes = torch.tensor([[1., 1., 5., 5.], [1., 1., 5., 5.], [7., 7., 7., 7.], [7., 7., 7., 7.]])
    scores = torch.tensor([0.5, 0.9, 0.3, 0.2])
    assert diou_nms(boxes, scores, 0.5, backend=backend).tolist() == [1, 2, 3]


@pytest.mark.parametrize('backend', BACKENDS)
def test_empty_and_single(backend):
    empty = diou_nms(torch.zeros(0, 4), torch.zeros(0), 0.5, backend=backend)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    assert diou_nms(torch.tensor([[0., 0., 1., 1.]]), torch.tensor([0.3]), 0.5,
                    backend=backend).tolist() == [0]


def test_backends_agree_on_many_boxes_and_half_precision():
    boxes, scores = random_boxes(3000, seed=11, size=600.0, max_wh=120.0)
    ref = diou_nms(boxes, scores, 0.5, beta=0.6, backend='torch')
    assert torch.equal(diou_nms(boxes, scores, 0.5, beta=0.6, backend='c'), ref)
    # a long suppression chain: boxes shifted by 1 px, each overlapping the next
    chain = torch.tensor([[float(i), 0., i + 10., 10.] for i in range(200)])
    chain_scores = torch.linspace(1, 0, 200)
    assert torch.equal(diou_nms(chain, chain_scores, 0.5, backend='torch'),
                       diou_nms(chain, chain_scores, 0.5, backend='c'))
    assert diou_nms(chain, chain_scores, 0.5, backend='c').tolist() == \
        slow_diou_nms(chain, chain_scores, 0.5)
    half = boxes.half()
    assert torch.equal(diou_nms(half, scores, 0.5, backend='c'),
                       diou_nms(half, scores, 0.5, backend='torch'))


def test_batched_only_suppresses_within_class():
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.], [1., 1., 10., 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    idxs = torch.tensor([0, 1, 0])
    # box 1 is identical to box 0 but of another class; box 2 (IoU 0.81) is suppressed
    assert batched_diou_nms(boxes, scores, idxs, 0.5).tolist() == [0, 1]
    boxes, scores = random_boxes(400, seed=3)
    idxs = torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(0))
    keep = batched_diou_nms(boxes, scores, idxs, 0.5, beta=0.6)
    expected = []
    for c in range(4):
        members = (idxs == c).nonzero().squeeze(1)
        expected += members[slow_diou_nms(boxes[members], scores[members], 0.5, 0.6)].tolist()
    assert sorted(keep.tolist()) == sorted(expected)
    assert torch.all(scores[keep][:-1] >= scores[keep][1:])


@pytest.mark.parametrize('kwargs, match', [
    (dict(boxes=torch.zeros(3, 5)), 'boxes'),
    (dict(scores=torch.zeros(4)), 'scores'),
    (dict(beta=0.0), 'beta'),
    (dict(offset=2), 'offset'),
    (dict(backend='cuda'), 'backend'),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    args = dict(boxes=torch.zeros(3, 4), scores=torch.zeros(3), iou_threshold=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        diou_nms(**args)
    with pytest.raises(TypeError, match='boxes'):
        diou_nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5)


def test_mmcv_adapter_contract():
    boxes, scores = random_boxes(200, seed=8)
    dets, keep = diou_nms_mmcv(boxes, scores, 0.5, beta=0.6)
    assert keep.tolist() == slow_diou_nms(boxes, scores, 0.5, 0.6)
    assert torch.equal(dets[:, :4], boxes[keep]) and torch.equal(dets[:, 4], scores[keep])
    assert torch.all(dets[:-1, 4] >= dets[1:, 4])
    dets5, keep5 = diou_nms_mmcv(boxes, scores, 0.5, beta=0.6, max_num=5)
    assert torch.equal(keep5, keep[:5])
    dets_t, keep_t = diou_nms_mmcv(boxes, scores, 0.5, beta=0.6, score_threshold=0.5)
    expected = [i for i in slow_diou_nms(boxes, scores, 0.5, 0.6) if scores[i] > 0.5]
    # dropping low scores first cannot change the decisions among the high scores
    assert keep_t.tolist() == expected
    dets_np, keep_np = diou_nms_mmcv(boxes.numpy(), scores.numpy(), 0.5, beta=0.6)
    assert isinstance(dets_np, np.ndarray) and keep_np.tolist() == keep.tolist()


def test_mmcv_batched_nms_dispatches_diou_nms():
    import detloss_plugin  # noqa: F401  (registers diou_nms with mmcv)
    from mmcv.ops import batched_nms
    nms_module = importlib.import_module('mmcv.ops.nms')
    assert nms_module.diou_nms is diou_nms_mmcv
    assert callable(nms_module.nms)  # mmcv's own nms is untouched
    boxes, scores = random_boxes(500, seed=21)
    idxs = torch.randint(0, 3, (500,), generator=torch.Generator().manual_seed(1))
    dets, keep = batched_nms(boxes, scores, idxs, dict(type='diou_nms', iou_threshold=0.5, beta=0.6))
    assert sorted(keep.tolist()) == sorted(batched_diou_nms(boxes, scores, idxs, 0.5, 0.6).tolist())
    assert torch.all(dets[:-1, 4] >= dets[1:, 4])
    # beta large -> penalty ~ 0 -> DIoU-NMS approaches plain NMS; compare with mmcv's nms
    _, keep_plain = batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=0.5))
    _, keep_diou = batched_nms(boxes, scores, idxs, dict(type='diou_nms', iou_threshold=0.5, beta=50.0))
    assert sorted(keep_plain.tolist()) == sorted(keep_diou.tolist())
    # above split_thr mmcv runs one call per class
    big_boxes, big_scores = random_boxes(12000, seed=4, size=3000.0)
    big_idxs = torch.randint(0, 2, (12000,), generator=torch.Generator().manual_seed(2))
    _, keep_split = batched_nms(big_boxes, big_scores, big_idxs,
                                dict(type='diou_nms', iou_threshold=0.5))
    assert sorted(keep_split.tolist()) == sorted(
        batched_diou_nms(big_boxes, big_scores, big_idxs, 0.5).tolist())
