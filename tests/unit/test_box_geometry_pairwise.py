"""Pairwise and aligned box similarities, NWD and its loss (pure torch)."""
import math

import pytest
import torch

from detloss_plugin.functional import (SIMILARITY_MODES, aligned_similarity, ciou_loss,
                                       giou_loss, nwd, nwd_loss, pairwise_similarity,
                                       wasserstein_sq)
from detloss_plugin.functional.box_geometry import similarity_range


def random_boxes(n, seed=0, scale=20.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * scale
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * scale * 0.5 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def slow_pairwise(b1, b2, mode, **options):
    """An obviously correct loop over all pairs of the aligned form."""
    out = torch.empty(b1.shape[0], b2.shape[0], dtype=b1.dtype)
    for i in range(b1.shape[0]):
        for j in range(b2.shape[0]):
            out[i, j] = aligned_similarity(b1[i:i + 1], b2[j:j + 1], mode, **options)[0]
    return out


def hand_iou(a, b):
    """IoU from the definition, in Python floats."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_pairwise_equals_slow_loop(mode):
    b1, b2 = random_boxes(7, 1), random_boxes(5, 2)
    torch.testing.assert_close(pairwise_similarity(b1, b2, mode),
                               slow_pairwise(b1, b2, mode), rtol=0, atol=1e-12)


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_pairwise_diagonal_equals_aligned(mode):
    b1, b2 = random_boxes(6, 3), random_boxes(6, 4)
    torch.testing.assert_close(pairwise_similarity(b1, b2, mode).diagonal(),
                               aligned_similarity(b1, b2, mode), rtol=0, atol=1e-12)


def test_values_by_hand():
    # a = [0, 0, 10, 10], b = [5, 0, 15, 10]: inter 50, union 150, IoU = 1/3; the
    # enclosing box is 15 x 10 = 150, so GIoU = IoU; centres 5 apart, c^2 = 325, so
    # DIoU = 1/3 - 25/325; same shape: CIoU = DIoU; W2 = 5, NWD = exp(-5 / 12.8).
    a = torch.tensor([[0., 0, 10, 10]], dtype=torch.float64)
    b = torch.tensor([[5., 0, 15, 10]], dtype=torch.float64)
    expect = {'iou': 1 / 3, 'iof': 0.5, 'giou': 1 / 3, 'diou': 1 / 3 - 25 / 325,
              'ciou': 1 / 3 - 25 / 325, 'nwd': math.exp(-5 / 12.8),
              # EIoU: DIoU minus (dw^2 / Cw^2 + dh^2 / Ch^2) = 0 for equal shapes
              'eiou': 1 / 3 - 25 / 325}
    for mode, value in expect.items():
        got = pairwise_similarity(a, b, mode)
        assert got.shape == (1, 1)
        assert got.item() == pytest.approx(value, abs=1e-7), mode
    # W2^2 with different shapes: centres (5, 5) and (6, 7), sizes 10x10 and 4x6:
    # 1 + 4 + (36 + 16) / 4 = 18
    c = torch.tensor([[4., 4, 8, 10]], dtype=torch.float64)
    assert wasserstein_sq(a, c).item() == pytest.approx(18.0)
    assert nwd(a, c, constant=3.0).item() == pytest.approx(math.exp(-math.sqrt(18) / 3))


def test_iou_and_giou_match_hand_iou_and_losses():
    b1, b2 = random_boxes(9, 5), random_boxes(9, 6)
    iou = pairwise_similarity(b1, b2, 'iou')
    for i in range(9):
        for j in range(9):
            assert iou[i, j].item() == pytest.approx(hand_iou(b1[i].tolist(), b2[j].tolist()),
                                                     abs=1e-9)
    torch.testing.assert_close(aligned_similarity(b1, b2, 'giou'),
                               1 - giou_loss(b1, b2))
    torch.testing.assert_close(aligned_similarity(b1, b2, 'ciou', alpha_gate=True),
                               1 - ciou_loss(b1, b2, alpha_gate=True))


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_range_and_normalize(mode):
    b1, b2 = random_boxes(40, 7, scale=50.0), random_boxes(30, 8, scale=50.0)
    low, high = similarity_range(mode)
    raw = pairwise_similarity(b1, b2, mode)
    assert raw.min() >= low and raw.max() <= high + 1e-12
    unit = pairwise_similarity(b1, b2, mode, normalize=True)
    assert unit.min() >= 0 and unit.max() <= 1 + 1e-12
    torch.testing.assert_close(unit, (raw - low) / (1 - low))
    if mode == 'giou':   # the reference's 'normalized_giou'
        torch.testing.assert_close(unit, (1 + raw) / 2)


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_empty(mode):
    b = random_boxes(3)
    assert pairwise_similarity(b[:0], b, mode).shape == (0, 3)
    assert pairwise_similarity(b, b[:0], mode).shape == (3, 0)
    assert aligned_similarity(b[:0], b[:0], mode).shape == (0,)


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_degenerate_boxes_finite_value_and_gradient(mode):
    # zero width, zero area, identical boxes, a box inside another, touching boxes
    b1 = torch.tensor([[0., 0, 0, 5], [2, 2, 2, 2], [1, 1, 4, 4], [0, 0, 10, 10],
                       [0, 0, 1, 1]], dtype=torch.float64, requires_grad=True)
    b2 = torch.tensor([[0., 0, 0, 5], [2, 2, 2, 2], [1, 1, 4, 4], [2, 2, 3, 3],
                       [1, 0, 2, 1]], dtype=torch.float64, requires_grad=True)
    value = pairwise_similarity(b1, b2, mode)
    assert torch.isfinite(value).all()
    value.sum().backward()
    assert torch.isfinite(b1.grad).all() and torch.isfinite(b2.grad).all()


@pytest.mark.parametrize('mode', [m for m in SIMILARITY_MODES if m != 'ciou'])
def test_gradcheck(mode):
    # CIoU's trade-off alpha carries no gradient by design: checked below instead
    b1 = random_boxes(3, 9).requires_grad_()
    b2 = random_boxes(4, 10).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: pairwise_similarity(x, y, mode), (b1, b2))


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_gradient_equals_slow_loop(mode):
    b1 = random_boxes(4, 19).requires_grad_()
    b2 = random_boxes(3, 20).requires_grad_()
    weight = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fast = torch.autograd.grad((pairwise_similarity(b1, b2, mode) * weight).sum(), (b1, b2))
    slow = torch.autograd.grad((slow_pairwise(b1, b2, mode) * weight).sum(), (b1, b2))
    for f, s in zip(fast, slow):
        torch.testing.assert_close(f, s, rtol=0, atol=1e-12)


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_half_precision(mode):
    b1, b2 = random_boxes(5, 11, dtype=torch.float32), random_boxes(6, 12, dtype=torch.float32)
    half = pairwise_similarity(b1.half(), b2.half(), mode)
    assert half.dtype == torch.float16
    full = pairwise_similarity(b1.half().float(), b2.half().float(), mode)
    torch.testing.assert_close(half.float(), full, rtol=0, atol=1e-3)


def test_nan_propagates():
    b = random_boxes(3)
    b[1, 0] = float('nan')
    for mode in SIMILARITY_MODES:
        out = pairwise_similarity(b, random_boxes(2), mode)
        assert out[1].isnan().all() and not out[[0, 2]].isnan().any(), mode


def test_bad_arguments():
    b = random_boxes(3)
    with pytest.raises(ValueError, match='mode'):
        pairwise_similarity(b, b, 'dice')
    with pytest.raises(ValueError, match='boxes2'):
        pairwise_similarity(b, b[:, :3])
    with pytest.raises(TypeError, match='boxes1'):
        pairwise_similarity([[0, 0, 1, 1]], b)
    with pytest.raises(ValueError, match='constant'):
        nwd(b, b, constant=0.0)


# ------------------------------------------------------------------ NWD loss
def test_nwd_loss_modes_by_hand():
    # W2^2 = 18 (test_values_by_hand)
    a = torch.tensor([[0., 0, 10, 10]], dtype=torch.float64)
    c = torch.tensor([[4., 4, 8, 10]], dtype=torch.float64)
    w = math.sqrt(18)
    expect = {'exp': 1 - math.exp(-w / 12.8), 'sqrt': w, 'log': math.log(19.0),
              'norm_sqrt': 1 - 1 / (1 + w), 'w2': 18.0}
    for mode, value in expect.items():
        assert nwd_loss(a, c, mode).item() == pytest.approx(value), mode
    assert nwd_loss(a, c, 'norm_sqrt', gamma=2.0).item() == pytest.approx(1 - 1 / (2 + w))
    assert nwd_loss(a, c, constant=12.7).item() == pytest.approx(1 - math.exp(-w / 12.7))


@pytest.mark.parametrize('mode', ['exp', 'sqrt', 'log', 'norm_sqrt', 'w2'])
def test_nwd_loss_gradcheck_and_identical_boxes(mode):
    p, t = random_boxes(5, 13).requires_grad_(), random_boxes(5, 14)
    assert torch.autograd.gradcheck(lambda x: nwd_loss(x, t, mode), (p,))
    same = t.clone().requires_grad_()
    loss = nwd_loss(same, t, mode)
    loss.sum().backward()
    assert torch.isfinite(same.grad).all()
    assert loss.max().item() == pytest.approx(0.0, abs=1e-3)


def test_nwd_loss_against_reference_formula():
    """The reference's form: eps added to the squared centre distance."""
    p, t = random_boxes(20, 15), random_boxes(20, 16)
    cp, ct = (p[:, :2] + p[:, 2:]) / 2, (t[:, :2] + t[:, 2:]) / 2
    wp, wt = p[:, 2:] - p[:, :2], t[:, 2:] - t[:, :2]
    w2 = ((cp - ct) ** 2).sum(1) + 1e-7 + ((wp - wt) ** 2).sum(1) / 4
    torch.testing.assert_close(nwd_loss(p, t), 1 - torch.exp(-w2.sqrt() / 12.8))


def test_nwd_loss_half_and_bad_mode():
    p, t = random_boxes(4, 17, dtype=torch.float32), random_boxes(4, 18, dtype=torch.float32)
    assert nwd_loss(p.half(), t.half()).dtype == torch.float16
    with pytest.raises(ValueError, match='mode'):
        nwd_loss(p, t, 'kl')
    with pytest.raises(ValueError, match='gamma'):
        nwd_loss(p, t, 'norm_sqrt', gamma=0.0)


@pytest.mark.parametrize('mode', SIMILARITY_MODES)
def test_batched_pairwise(mode):
    b1 = torch.stack([random_boxes(5, 21), random_boxes(5, 22)])
    b2 = torch.stack([random_boxes(3, 23), random_boxes(3, 24)])
    out = pairwise_similarity(b1, b2, mode)
    assert out.shape == (2, 5, 3)
    for i in range(2):
        torch.testing.assert_close(out[i], pairwise_similarity(b1[i], b2[i], mode))
    with pytest.raises(ValueError, match='batch'):
        pairwise_similarity(b1, b2[0:1], mode)
    with pytest.raises(TypeError, match='constnt'):
        pairwise_similarity(b1, b2, mode, constnt=1.0)


@pytest.mark.parametrize('mode', ['exp', 'sqrt', 'log', 'norm_sqrt', 'w2'])
def test_nwd_loss_nan_stays_nan_and_empty(mode):
    p, t = random_boxes(3, 25), random_boxes(3, 26)
    p[1, 2] = float('nan')
    loss = nwd_loss(p, t, mode)
    assert loss[1].isnan() and not loss[[0, 2]].isnan().any()
    empty = p[:0].clone().requires_grad_()
    out = nwd_loss(empty, t[:0], mode)
    assert out.shape == (0,)
    out.sum().backward()
    assert empty.grad.shape == (0, 4)
