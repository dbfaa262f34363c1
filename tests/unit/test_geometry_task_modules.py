"""detloss's TASK_UTILS: IoUCost and BboxOverlaps2D against mmdet's own classes where
the modes coincide, every mode against the functional core, the [0, 1] mapping, and
RankingAssigner against a slow loop of the reference's rule."""
import pytest
import torch

pytest.importorskip('mmdet')

from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402
from mmdet.models.task_modules.assigners import BboxOverlaps2D as MMDetOverlaps  # noqa: E402
from mmdet.models.task_modules.assigners.match_cost import IoUCost as MMDetIoUCost  # noqa: E402
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS  # noqa: E402

import detloss_plugin  # noqa: E402,F401
from detloss_plugin.functional import SIMILARITY_MODES, pairwise_similarity  # noqa: E402
from detloss_plugin.models.task_modules import (BboxOverlaps2D, IoUCost,  # noqa: E402
                                                RankingAssigner)


def boxes(n, seed, size=100.0, max_wh=40.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * max_wh + 1
    return torch.cat([xy, xy + wh], 1)


def build(cfg):
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MMDET_TASK_UTILS.build(cfg)


def test_prefixed_names_resolve_from_a_stock_mmdet_scope():
    assert isinstance(build(dict(type='detloss_plugin.IoUCost', iou_mode='ciou')), IoUCost)
    assert isinstance(build(dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd')),
                      BboxOverlaps2D)
    assert isinstance(build(dict(type='detloss_plugin.RankingAssigner')), RankingAssigner)
    # mmdet's own classes are untouched
    assert build(dict(type='IoUCost')).__class__ is MMDetIoUCost
    assert build(dict(type='BboxOverlaps2D')).__class__ is MMDetOverlaps
    with pytest.raises(KeyError, match='did you mean detloss_plugin.IoUCost'):
        build(dict(type='detloss_plugin.IoUCots'))


# ------------------------------------------------------------------ IoUCost
@pytest.mark.parametrize('mode', ['iou', 'giou'])
@pytest.mark.parametrize('weight', [1.0, 2.5])
def test_iou_cost_equals_mmdet(mode, weight):
    pred = InstanceData(bboxes=boxes(30, 1))
    gt = InstanceData(bboxes=boxes(7, 2))
    ours = IoUCost(iou_mode=mode, weight=weight)(pred, gt)
    theirs = MMDetIoUCost(iou_mode=mode, weight=weight)(pred, gt)
    assert ours.shape == (30, 7)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # fp16 predictions: float32 maths, half-precision cost, as mmdet
    half = InstanceData(bboxes=pred.bboxes.half())
    ours16 = IoUCost(iou_mode=mode, weight=weight)(half, gt)
    assert ours16.dtype == torch.float16
    torch.testing.assert_close(ours16.float(),
                               MMDetIoUCost(iou_mode=mode, weight=weight)(half, gt).float(),
                               rtol=0, atol=2e-3)


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_iou_cost_every_mode_is_minus_similarity(mode):
    pred, gt = boxes(12, 3), boxes(4, 4)
    cost = IoUCost(iou_mode=mode, weight=3.0)(InstanceData(bboxes=pred), InstanceData(bboxes=gt))
    torch.testing.assert_close(cost, -3.0 * pairwise_similarity(pred, gt, mode))
    # the best match has the lowest cost: a prediction equal to a ground truth
    exact = IoUCost(iou_mode=mode)(InstanceData(bboxes=gt), InstanceData(bboxes=gt))
    assert torch.equal(exact.argmin(dim=1), torch.arange(4))


def test_iou_cost_bad_mode():
    with pytest.raises(ValueError, match='iou_mode'):
        IoUCost(iou_mode='wasserstein')


# ---------------------------------------------------------- BboxOverlaps2D
@pytest.mark.parametrize('mode', ['iou', 'iof', 'giou'])
def test_calculator_equals_mmdet(mode):
    b1, b2 = boxes(20, 5), boxes(9, 6)
    ours, theirs = BboxOverlaps2D(mode=mode), MMDetOverlaps()
    torch.testing.assert_close(ours(b1, b2), theirs(b1, b2, mode=mode), rtol=0, atol=1e-5)
    torch.testing.assert_close(ours(b1, b1.flip(0), is_aligned=True),
                               theirs(b1, b1.flip(0), mode=mode, is_aligned=True),
                               rtol=0, atol=1e-5)
    # the call's mode overrides (MaxIoUAssigner passes mode='iof' for ignored boxes)
    torch.testing.assert_close(BboxOverlaps2D(mode='nwd')(b1, b2, mode=mode),
                               theirs(b1, b2, mode=mode), rtol=0, atol=1e-5)
    # a score column is dropped; fp16 storage gives float32 on the CPU, as mmdet
    scored = torch.cat([b1, torch.rand(20, 1)], 1)
    torch.testing.assert_close(ours(scored, b2), theirs(b1, b2, mode=mode), rtol=0, atol=1e-5)
    fp16 = BboxOverlaps2D(mode=mode, scale=4.0, dtype='fp16')(b1, b2)
    assert fp16.dtype == torch.float32
    torch.testing.assert_close(
        fp16, MMDetOverlaps(scale=4.0, dtype='fp16')(b1, b2, mode=mode), rtol=0, atol=2e-3)


def test_calculator_empty_and_box_structures():
    from mmdet.structures.bbox import HorizontalBoxes
    calc = BboxOverlaps2D(mode='giou')
    assert calc(boxes(3, 0), torch.zeros(0, 4)).shape == (3, 0)
    assert calc(torch.zeros(0, 4), boxes(3, 0)).shape == (0, 3)
    assert calc(torch.zeros(0, 4), torch.zeros(0)).shape == (0, 0)
    b1, b2 = boxes(5, 1), boxes(4, 2)
    torch.testing.assert_close(calc(HorizontalBoxes(b1), HorizontalBoxes(b2)), calc(b1, b2))


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_calculator_normalized_in_unit_interval(mode):
    b1, b2 = boxes(40, 7, size=300.0), boxes(30, 8, size=300.0)
    unit = BboxOverlaps2D(mode=mode, normalize=True)(b1, b2)
    assert unit.min() >= 0 and unit.max() <= 1
    raw = BboxOverlaps2D(mode=mode)(b1, b2)
    # order preserved
    assert torch.equal(unit.argsort(dim=1), raw.argsort(dim=1))
    if mode in ('giou', 'diou'):
        torch.testing.assert_close(unit, (1 + raw) / 2)


def test_calculator_nwd_is_scale_free_with_fp16_storage():
    b1, b2 = boxes(10, 9), boxes(6, 10)
    plain = BboxOverlaps2D(mode='nwd')(b1, b2)
    scaled = BboxOverlaps2D(mode='nwd', scale=8.0, dtype='fp16')(b1, b2)
    torch.testing.assert_close(scaled, plain, rtol=0, atol=2e-3)


# --------------------------------------------------------- RankingAssigner
def slow_ranking(overlaps, topk, neg_thr):
    """The reference's rule, one ground truth at a time; on a conflict the prior goes to
    the ground truth it is most similar to."""
    num_gts, num_priors = overlaps.shape
    gt_inds = [-1] * num_priors
    for p in range(num_priors):
        if max(overlaps[:, p].tolist()) < neg_thr:
            gt_inds[p] = 0
    best = [None] * num_priors
    for g in range(num_gts):
        row = overlaps[g].tolist()
        kth = sorted(row, reverse=True)[min(topk, num_priors) - 1]
        for p in range(num_priors):
            if row[p] >= kth and (best[p] is None or row[p] > best[p][0]):
                best[p] = (row[p], g)
    for p in range(num_priors):
        if best[p] is not None:
            gt_inds[p] = best[p][1] + 1
    return gt_inds


@pytest.mark.parametrize('topk', [1, 2, 5])
def test_ranking_assigner_matches_slow_loop(topk):
    priors = boxes(200, 11, size=200.0, max_wh=20.0)
    gts = boxes(6, 12, size=200.0, max_wh=16.0)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    assigner = RankingAssigner(topk=topk)
    result = assigner.assign(InstanceData(priors=priors),
                             InstanceData(bboxes=gts, labels=labels))
    overlaps = pairwise_similarity(gts, priors, 'nwd')
    expected = slow_ranking(overlaps, topk, 0.3)
    assert result.gt_inds.tolist() == expected
    pos = result.gt_inds > 0
    assert torch.equal(result.labels[pos], labels[result.gt_inds[pos] - 1])
    assert (result.labels[~pos] == -1).all()
    # every ground truth gets at least topk positives (no ties here)
    counts = torch.bincount(result.gt_inds[pos] - 1, minlength=6)
    assert counts.sum() <= 6 * topk and (counts >= 1).all()
    torch.testing.assert_close(result.max_overlaps, overlaps.max(dim=0).values)


def test_ranking_assigner_by_hand_and_edge_cases():
    assigner = RankingAssigner(topk=2, neg_iou_thr=0.3)
    overlaps = torch.tensor([[0.9, 0.8, 0.7, 0.1, 0.35],
                             [0.2, 0.85, 0.6, 0.05, 0.4]])
    labels = torch.tensor([3, 5])
    result = assigner.assign_wrt_ranking(overlaps, labels)
    # gt 0's top 2: priors 0, 1; gt 1's: priors 1, 2. Prior 1 goes to gt 1 (0.85 > 0.8).
    # prior 3's best 0.1 < 0.3: negative; prior 4's best 0.4: ignored.
    assert result.gt_inds.tolist() == [1, 2, 2, 0, -1]
    assert result.labels.tolist() == [3, 5, 5, -1, -1]
    # ties at the k-th value are all positive, as the reference
    tie = assigner.assign_wrt_ranking(torch.tensor([[0.5, 0.9, 0.5, 0.5]]), labels[:1])
    assert tie.gt_inds.tolist() == [1, 1, 1, 1]
    # no ground truth: all negative; no prior: empty
    none = assigner.assign(InstanceData(priors=boxes(4, 0)),
                           InstanceData(bboxes=torch.zeros(0, 4),
                                        labels=torch.zeros(0, dtype=torch.long)))
    assert none.gt_inds.tolist() == [0, 0, 0, 0] and none.num_gts == 0
    empty = assigner.assign(InstanceData(priors=torch.zeros(0, 4)),
                            InstanceData(bboxes=boxes(2, 1), labels=labels))
    assert empty.gt_inds.shape == (0,)
    # fewer priors than topk
    few = assigner.assign_wrt_ranking(torch.tensor([[0.2]]), labels[:1])
    assert few.gt_inds.tolist() == [1]
    with pytest.raises(ValueError, match='topk'):
        RankingAssigner(topk=0)


def test_ranking_assigner_ignores_boxes():
    priors = torch.tensor([[0., 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]])
    gts = InstanceData(bboxes=torch.tensor([[1., 1, 11, 11]]), labels=torch.tensor([0]))
    ignore = InstanceData(bboxes=torch.tensor([[49., 49, 61, 61]]))
    assigner = RankingAssigner(topk=2, ignore_iof_thr=0.5)
    result = assigner.assign(InstanceData(priors=priors), gts, ignore)
    # prior 1 lies inside an ignored box: never positive, never negative
    assert result.gt_inds.tolist() == [1, -1, 1]


# --------------------------------- stock assigners with detloss's calculator
def _assign(assigner_cfg, priors, gts, labels, **pred):
    assigner = build(assigner_cfg)
    return assigner.assign(InstanceData(priors=priors, **pred),
                           InstanceData(bboxes=gts, labels=labels))


def test_stock_assigners_with_iou_mode_equal_mmdet_calculator():
    priors = boxes(300, 21, size=150.0, max_wh=30.0)
    gts, labels = boxes(5, 22, size=150.0), torch.tensor([0, 1, 2, 0, 1])
    ours = dict(type='detloss_plugin.BboxOverlaps2D', mode='iou')
    pred, gt = InstanceData(priors=priors), InstanceData(bboxes=gts, labels=labels)
    cfg = dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0)
    ra = build(dict(cfg, iou_calculator=ours)).assign(pred, gt)
    rb = build(cfg).assign(pred, gt)
    assert torch.equal(ra.gt_inds, rb.gt_inds) and (ra.gt_inds > 0).any()
    cfg = dict(type='ATSSAssigner', topk=9)
    ra = build(dict(cfg, iou_calculator=ours)).assign(pred, [200, 100], gt)
    rb = build(cfg).assign(pred, [200, 100], gt)
    assert torch.equal(ra.gt_inds, rb.gt_inds) and (ra.gt_inds > 0).any()
    # TaskAligned: predicted boxes and scores
    scores = torch.rand(300, 3, generator=torch.Generator().manual_seed(0))
    cfg = dict(type='TaskAlignedAssigner', topk=13)
    ra = build(dict(cfg, iou_calculator=ours)).assign(
        InstanceData(priors=priors, bboxes=priors + 1, scores=scores),
        InstanceData(bboxes=gts, labels=labels))
    rb = build(cfg).assign(InstanceData(priors=priors, bboxes=priors + 1, scores=scores),
                           InstanceData(bboxes=gts, labels=labels))
    assert torch.equal(ra.gt_inds, rb.gt_inds)
    # NWD gives every tiny ground truth positives where IoU gives none
    tiny = torch.tensor([[10., 10, 13, 13], [80, 40, 84, 45]])
    iou_result = _assign(dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                              min_pos_iou=0.3), priors, tiny, labels[:2])
    nwd_result = _assign(dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                              min_pos_iou=0.3,
                              iou_calculator=dict(type='detloss_plugin.BboxOverlaps2D',
                                                  mode='nwd')), priors, tiny, labels[:2])
    assert (nwd_result.gt_inds > 0).sum() >= (iou_result.gt_inds > 0).sum()
    assert set(nwd_result.gt_inds[nwd_result.gt_inds > 0].tolist()) == {1, 2}
