"""DIoU-NMS: both backends against a slow, obviously correct greedy loop, exact
threshold cases worked by hand, NaN and Inf (same boxes kept by both backends), the
``torch.library`` operator (``opcheck``, ``torch.compile``), the checks at the C
kernel's boundary, the fallback without a C compiler, the mmcv adapter and mmcv's
dispatch."""
import importlib
import math

import numpy as np
import pytest
import torch

from detloss_plugin.functional import _kernels, batched_diou_nms, diou_nms
from detloss_plugin.functional import nms as nms_module
from factories import generator, scored_boxes

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


random_boxes = scored_boxes


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
    from detloss_plugin.ops import diou_nms_mmcv
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

    from detloss_plugin.ops import diou_nms_mmcv
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


# ---- the C kernel == the torch path, NaN and Inf included -------------------------------

def clustered_boxes(n, seed):
    """Boxes jittered around a few centres (long suppression chains), exact duplicates,
    and concentric pairs whose IoU is exactly 0.25 with no distance penalty; integer
    coordinates and rounded scores (ties everywhere); a count that is not a multiple
    of the vector width, so both the vectorised body and the tail loop run."""
    g = generator(seed)
    centres = torch.rand(n // 20 + 1, 2, generator=g) * 200
    pick = torch.randint(0, centres.shape[0], (n,), generator=g)
    xy = (centres[pick] + torch.randn(n, 2, generator=g) * 3).round()
    wh = 4 * torch.randint(1, 8, (n, 2), generator=g).float()
    boxes = torch.cat([xy, xy + wh], 1)
    dup = torch.arange(0, n - 1, 7)
    boxes[dup] = boxes[dup + 1]
    # [x, y, x + 4a, y + 4b] holds [x + a, y + b, x + 3a, y + 3b]: IoU = 4ab/16ab = 0.25
    inner = boxes[3::5].clone()
    quarter = (inner[:, 2:] - inner[:, :2]) / 4
    inner = torch.cat([inner[:, :2] + quarter, inner[:, 2:] - quarter], 1)
    boxes = torch.cat([boxes, inner])
    scores = torch.rand(boxes.shape[0], generator=g).round(decimals=2)
    return boxes, scores


@pytest.mark.parametrize('beta,offset', [(1.0, 0), (0.6, 0), (2.0, 1)])
def test_c_kernel_equals_torch_path(beta, offset):
    boxes, scores = clustered_boxes(251, seed=int(beta * 10) + offset)
    for thr in (0.25, 0.5):
        keep_c = diou_nms(boxes, scores, thr, beta=beta, offset=offset, backend='c')
        keep_t = diou_nms(boxes, scores, thr, beta=beta, offset=offset, backend='torch')
        assert keep_c.tolist() == keep_t.tolist()
        assert 0 < keep_c.numel() < boxes.shape[0]


NAN, INF = float('nan'), float('inf')


def nan_inf_boxes(seed):
    """Clustered boxes in which a coordinate of some boxes is NaN, +Inf or -Inf (an
    infinite box overlaps everything; Inf - Inf is NaN), and some scores NaN (sorted
    first by torch.sort)."""
    boxes, scores = clustered_boxes(120, seed)
    g = generator(seed + 50)
    for value in (NAN, INF, -INF):
        rows = torch.randint(0, boxes.shape[0], (6,), generator=g)
        cols = torch.randint(0, 4, (6,), generator=g)
        boxes[rows, cols] = value
    boxes[5] = torch.tensor([-INF, -INF, INF, INF])
    boxes[6] = NAN
    scores[torch.randint(0, boxes.shape[0], (3,), generator=g)] = NAN
    return boxes, scores


@pytest.mark.parametrize('beta,offset', [(1.0, 0), (0.6, 0), (2.0, 1)])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_nan_and_inf_keep_the_same_boxes_in_both_backends(seed, beta, offset):
    boxes, scores = nan_inf_boxes(seed)
    for thr in (0.3, 0.5):
        keep_c = diou_nms(boxes, scores, thr, beta=beta, offset=offset, backend='c')
        keep_t = diou_nms(boxes, scores, thr, beta=beta, offset=offset, backend='torch')
        assert keep_c.tolist() == keep_t.tolist(), (seed, thr)
        assert 0 < keep_c.numel() < boxes.shape[0]


def test_a_nan_box_suppresses_nothing_and_is_kept():
    # box 1 duplicates box 0 (IoU 1: suppressed); box 2 has a NaN coordinate: every
    # pair with it is NaN, and NaN > threshold is false, so it is kept and box 3 (its
    # finite neighbour) is not suppressed by it; an infinite box (4) has IoU 0 with
    # every finite box (inter / inf) and a NaN penalty, so it suppresses nothing either
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.], [20., 20., NAN, 30.],
                          [20., 20., 30., 30.], [-INF, -INF, INF, INF]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    for backend in BACKENDS:
        assert diou_nms(boxes, scores, 0.5, backend=backend).tolist() == [4, 0, 2, 3]


def test_overflowing_boxes_follow_torchs_nan_rule():
    # two identical boxes 6e38 wide: in float32 the width overflows to Inf, the union is
    # Inf + Inf - Inf = NaN and so is the IoU, while the penalty is finite (0 / Inf): the
    # torch path keeps both (NaN > threshold is false). The kernel clamps the union as
    # torch does (NaN stays NaN), so it keeps both too; clamping NaN to 1e-12 would give
    # IoU = Inf and suppress the second box.
    boxes = torch.tensor([[-3e38, -3e38, 3e38, 3e38], [-3e38, -3e38, 3e38, 3e38],
                          [0., 0., 10., 10.], [0., 0., 10., 10.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    for beta in (1.0, 0.6):
        for backend in BACKENDS:
            assert diou_nms(boxes, scores, 0.5, beta=beta, backend=backend).tolist() == \
                [0, 1, 2], (backend, beta)


# ---- the torch.library operator --------------------------------------------------------

@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize('backend', ['auto', 'c', 'torch'])
def test_opcheck(backend, dtype):
    if backend == 'c' and dtype == torch.float64:
        pytest.skip("backend='c' refuses float64 (tested below)")
    boxes, scores = clustered_boxes(60, seed=3)
    for beta in (1.0, 0.6):
        args = (boxes.to(dtype), scores, 0.4, beta, 0, backend)
        torch.library.opcheck(torch.ops.detloss.diou_nms.default, args)
    torch.library.opcheck(torch.ops.detloss.diou_nms.default,
                          (torch.zeros(0, 4, dtype=dtype), torch.zeros(0), 0.5, 1.0, 0, backend))


def test_compiles_without_graph_break():
    boxes, scores = clustered_boxes(80, seed=4)

    def kept_scores(b, s):
        keep = diou_nms(b * 2.0, s, 0.4, beta=0.6)
        return s[keep] * 10, keep

    compiled = torch.compile(kept_scores, fullgraph=True, backend='aot_eager')
    got, keep = compiled(boxes, scores)
    want, want_keep = kept_scores(boxes, scores)
    assert torch.equal(keep, want_keep) and torch.equal(got, want)
    # the same compiled graph on another number of boxes
    boxes, scores = clustered_boxes(150, seed=5)
    assert torch.equal(compiled(boxes, scores)[1], kept_scores(boxes, scores)[1])


def test_boundary_checks_of_the_c_kernel():
    boxes, scores = clustered_boxes(40, seed=6)
    with pytest.raises(ValueError, match=r"backend='c' needs float32 or half.*float64"):
        diou_nms(boxes.double(), scores, 0.5, backend='c')
    with pytest.raises(ValueError, match=r"backend='c' needs CPU tensors, got boxes on meta"):
        diou_nms(boxes.to('meta'), scores.to('meta'), 0.5, backend='c')
    with pytest.raises(ValueError, match=r'scores must be on the device of boxes \(cpu\)'):
        diou_nms(boxes, scores.to('meta'), 0.5)
    with pytest.raises(ValueError, match='offset'):
        torch.ops.detloss.diou_nms(boxes, scores, 0.5, 1.0, 2, 'auto')  # checked in the op
    # non-contiguous and half-precision boxes are converted, not misread
    strided = torch.cat([boxes, boxes], 1)[:, ::2]
    assert not strided.is_contiguous()
    ref = diou_nms(strided.contiguous(), scores, 0.5, backend='torch')
    assert torch.equal(diou_nms(strided, scores, 0.5, backend='c'), ref)
    assert torch.equal(diou_nms(boxes.half(), scores, 0.5, backend='c'),
                       diou_nms(boxes.half(), scores, 0.5, backend='torch'))


def test_without_a_c_compiler_the_torch_path_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(nms_module.NMS_KERNEL, '_bound', None)
    monkeypatch.setattr(nms_module.NMS_KERNEL, '_failed', False)
    monkeypatch.setattr(_kernels, '_compiler', lambda: None)
    monkeypatch.setenv('DETLOSS_CACHE_DIR', str(tmp_path))   # nothing built there yet
    boxes, scores = clustered_boxes(100, seed=7)
    with pytest.warns(UserWarning, match='C DIoU-NMS kernel is unavailable'):
        keep = diou_nms(boxes, scores, 0.5, beta=0.6)
    assert nms_module.NMS_KERNEL.load() is None
    assert keep.tolist() == slow_diou_nms(boxes, scores, 0.5, 0.6)
    with pytest.raises(RuntimeError, match="backend='c'"):
        diou_nms(boxes, scores, 0.5, backend='c')
