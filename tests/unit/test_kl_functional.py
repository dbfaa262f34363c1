"""KL loss and variance voting, functional core (He et al., CVPR 2019): hand values,
float64 gradcheck, the Smooth L1 gradient at alpha's initial value, extreme alpha in
float32 and float16, var voting against a slow per-box loop, and bad input."""
import math

import pytest
import torch
from torch.autograd import gradcheck

from detloss_plugin.functional import kl_loss, smooth_l1_loss, var_voting

F64 = torch.float64


# ------------------------------------------------------------------------ kl_loss
def test_kl_loss_hand_values():
    pred = torch.zeros(1, 4, dtype=F64)
    target = torch.tensor([[0.5, 2.0, -3.0, 0.0]], dtype=F64)
    alpha = torch.tensor([[0.0, 1.0, -1.0, 2.0]], dtype=F64)
    # x = 0.5 (quadratic branch), alpha 0: 0.5 * 0.25 = 0.125
    # x = 2 (linear branch), alpha 1: e^-1 * (2 - 0.5) + 0.5 = 0.5518192 + 0.5
    # x = -3, alpha -1: e * (3 - 0.5) - 0.5 = 6.7957045 - 0.5
    # x = 0, alpha 2: 0 + 1
    expected = torch.tensor([[0.125, math.exp(-1) * 1.5 + 0.5, math.e * 2.5 - 0.5, 1.0]],
                            dtype=F64)
    assert torch.allclose(kl_loss(pred, alpha, target), expected, atol=1e-12)
    # beta = 2: x = 2 is still quadratic: 0.5 * 4 / 2 = 1 -> e^-1 * 1 + 0.5
    out = kl_loss(pred, alpha, target, beta=2.0)
    assert out[0, 1].item() == pytest.approx(math.exp(-1) + 0.5, abs=1e-12)
    # beta = 0: L1 -> x = 0.5, alpha 0: 0.5
    assert kl_loss(pred, alpha, target, beta=0.0)[0, 0].item() == pytest.approx(0.5)


def test_kl_loss_hand_gradients():
    # x = target - pred = 2, alpha = 1: dL/dpred = -e^-1 * sign(x) = -e^-1,
    # dL/dalpha = -e^-1 * 1.5 + 0.5
    pred = torch.zeros(1, 1, dtype=F64, requires_grad=True)
    alpha = torch.ones(1, 1, dtype=F64, requires_grad=True)
    kl_loss(pred, alpha, torch.full((1, 1), 2.0, dtype=F64)).sum().backward()
    assert pred.grad.item() == pytest.approx(-math.exp(-1), abs=1e-12)
    assert alpha.grad.item() == pytest.approx(-math.exp(-1) * 1.5 + 0.5, abs=1e-12)


def test_kl_loss_minimum_over_alpha_is_log_2s():
    # dL/dalpha = 0 at alpha = log(2 S): S = SmoothL1(0.5) = 0.125 -> alpha* = log 0.25
    s = 0.125
    target = torch.full((1, 1), 0.5, dtype=F64)
    alphas = torch.linspace(math.log(2 * s) - 1, math.log(2 * s) + 1, 2001, dtype=F64)
    values = kl_loss(torch.zeros(2001, 1, dtype=F64), alphas[:, None], target.expand(2001, 1))
    assert alphas[values.argmin()].item() == pytest.approx(math.log(2 * s), abs=1e-3)


def test_kl_loss_gradcheck():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(6, 4, dtype=F64, generator=g) * 2
    target = torch.randn(6, 4, dtype=F64, generator=g) * 2
    # keep |x| away from the Smooth L1 kink at beta = 1 (finite differences)
    x = target - pred
    target = torch.where((x.abs() - 1).abs() < 0.05, target + 0.2, target)
    alpha = torch.randn(6, 4, dtype=F64, generator=g)
    pred.requires_grad_(True)
    alpha.requires_grad_(True)
    assert gradcheck(lambda p, a: kl_loss(p, a, target), (pred, alpha))
    assert gradcheck(lambda p, a: kl_loss(p, a, target, beta=0.5), (pred, alpha))


@pytest.mark.parametrize('alpha0', [0.0, 0.3, -0.7])
def test_kl_gradient_is_smooth_l1_times_exp_minus_alpha(alpha0):
    """With a constant alpha (0 at the paper's initialisation) the box gradient is Smooth
    L1's times exp(-alpha), and alpha's is 1/2 - exp(-alpha) * Smooth L1."""
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(8, 4, dtype=F64, generator=g).requires_grad_(True)
    target = torch.randn(8, 4, dtype=F64, generator=g) * 2
    alpha = torch.full((8, 4), alpha0, dtype=F64, requires_grad=True)
    kl_loss(pred, alpha, target).sum().backward()
    pred_sl1 = pred.detach().clone().requires_grad_(True)
    sl1 = smooth_l1_loss(pred_sl1, target)
    sl1.sum().backward()
    assert torch.allclose(pred.grad, math.exp(-alpha0) * pred_sl1.grad, atol=1e-12)
    assert torch.allclose(alpha.grad, 0.5 - math.exp(-alpha0) * sl1.detach(), atol=1e-12)
    if alpha0 == 0.0:
        assert torch.allclose(kl_loss(pred, alpha, target), sl1, atol=1e-12)


def test_kl_gradients_equal_the_references_three_blobs():
    """yihui-he/KL-Loss: loss_bbox = SmoothL1Loss op with exp(-alpha) as outside weight
    (gradient to the box only), mulw = exp(-alpha) * StopGradient(SmoothL1) (to alpha
    only), logw = alpha / 2. Same gradients as detloss's single term; the reference's
    summed value counts exp(-alpha) * SmoothL1 twice."""
    g = torch.Generator().manual_seed(2)
    target = torch.randn(7, 4, dtype=F64, generator=g) * 2
    p0 = torch.randn(7, 4, dtype=F64, generator=g)
    a0 = torch.randn(7, 4, dtype=F64, generator=g)
    p, a = p0.clone().requires_grad_(True), a0.clone().requires_grad_(True)
    ours = kl_loss(p, a, target).sum()
    ours.backward()
    pr, ar = p0.clone().requires_grad_(True), a0.clone().requires_grad_(True)
    sl1 = smooth_l1_loss(pr, target)
    loss_bbox = (torch.exp(-ar).detach() * sl1).sum()
    mulw = (torch.exp(-ar) * sl1.detach()).sum()
    logw = 0.5 * ar.sum()
    (loss_bbox + mulw + logw).backward()
    assert torch.allclose(p.grad, pr.grad, atol=1e-12)
    assert torch.allclose(a.grad, ar.grad, atol=1e-12)
    assert (loss_bbox + mulw + logw).item() == pytest.approx(ours.item() + loss_bbox.item())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('alpha0', [30.0, -30.0])
def test_kl_loss_extreme_alpha_finite(dtype, alpha0):
    pred = torch.tensor([[0.0, 0.5, 2.0, -3.0]], dtype=dtype, requires_grad=True)
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0]], dtype=dtype)
    alpha = torch.full((1, 4), alpha0, dtype=dtype, requires_grad=True)
    loss = kl_loss(pred, alpha, target)
    assert loss.dtype == dtype
    assert torch.isfinite(loss).all()
    loss.float().sum().backward()
    assert torch.isfinite(pred.grad).all() and torch.isfinite(alpha.grad).all()
    # value: alpha = +30 -> ~alpha / 2 = 15; alpha = -30 -> exp(30) * S (saturated in fp16)
    if alpha0 > 0:
        assert torch.allclose(loss.float(), torch.full((1, 4), 15.0), atol=1e-2)
    else:
        assert loss[0, 0].item() == pytest.approx(-15.0)
        big = torch.finfo(dtype).max
        expect = min(math.exp(30) * 0.125 - 15, big)
        assert loss[0, 1].item() == pytest.approx(expect, rel=1e-3)
        assert pred.grad[0, 2].item() == pytest.approx(min(math.exp(30), big), rel=1e-3)


def test_kl_loss_bad_input():
    p = torch.zeros(3, 4)
    with pytest.raises(ValueError, match='pred_log_var'):
        kl_loss(p, torch.zeros(3, 1), p)
    with pytest.raises(ValueError, match='pred_log_var'):
        kl_loss(p, torch.zeros(4, 4), p)
    with pytest.raises(ValueError, match='target'):
        kl_loss(p, p, torch.zeros(3, 2))
    with pytest.raises(TypeError, match='pred_log_var'):
        kl_loss(p, torch.zeros(3, 4, dtype=torch.long), p)
    with pytest.raises(ValueError, match='beta'):
        kl_loss(p, p, p, beta=-1.0)


def test_kl_loss_empty():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = kl_loss(pred, torch.zeros(0, 4), torch.zeros(0, 4))
    assert loss.shape == (0, 4)
    loss.sum().backward()
    assert pred.grad.shape == (0, 4)


# --------------------------------------------------------------------- var_voting
def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def slow_var_voting(boxes, variances, keep, sigma_t, idxs=None):
    """Algorithm 1 of the paper, one kept box and one candidate at a time."""
    out = []
    for k in keep.tolist():
        b = boxes[k].tolist()
        num = [0.0] * 4
        den = [0.0] * 4
        for i in range(boxes.shape[0]):
            if idxs is not None and idxs[i] != idxs[k]:
                continue
            iou = _iou(b, boxes[i].tolist())
            if iou <= 0 and i != k:
                continue
            p = math.exp(-(1 - iou) ** 2 / sigma_t)
            for c in range(4):
                w = p / variances[i, c].item()
                num[c] += w * boxes[i, c].item()
                den[c] += w
        out.append([num[c] / den[c] for c in range(4)])
    return torch.tensor(out, dtype=F64)


def random_candidates(n, seed, groups=1):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g, dtype=F64) * 60
    size = torch.rand(n, 2, generator=g, dtype=F64) * 30 + 5
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
    variances = torch.rand(n, 4, generator=g, dtype=F64) * 4 + 0.05
    scores = torch.rand(n, generator=g, dtype=F64)
    idxs = torch.randint(0, groups, (n,), generator=g)
    return boxes, scores, variances, idxs


@pytest.mark.parametrize('sigma_t', [0.01, 0.05, 1.0])
def test_var_voting_matches_slow_loop(sigma_t):
    boxes, scores, variances, idxs = random_candidates(40, seed=3, groups=3)
    keep = torch.tensor([5, 0, 17, 33, 2])
    dets = var_voting(boxes, scores, variances, keep, sigma_t=sigma_t, idxs=idxs)
    expected = slow_var_voting(boxes, variances, keep, sigma_t, idxs)
    assert dets.shape == (5, 5)
    assert torch.allclose(dets[:, :4], expected, atol=1e-9, rtol=1e-9)
    assert torch.equal(dets[:, 4], scores[keep])
    # without groups: everyone votes
    dets = var_voting(boxes, scores, variances, keep, sigma_t=sigma_t)
    assert torch.allclose(dets[:, :4], slow_var_voting(boxes, variances, keep, sigma_t),
                          atol=1e-9, rtol=1e-9)


def test_var_voting_batched_over_images_and_classes_equals_separate_calls():
    boxes, scores, variances, idxs = random_candidates(60, seed=4, groups=6)
    keep = torch.arange(0, 60, 7)
    together = var_voting(boxes, scores, variances, keep, idxs=idxs)
    for g in range(6):
        members = (idxs == g).nonzero().squeeze(1)
        local = {int(m): j for j, m in enumerate(members.tolist())}
        rows = [r for r, k in enumerate(keep.tolist()) if int(idxs[k]) == g]
        if not rows:
            continue
        local_keep = torch.tensor([local[int(keep[r])] for r in rows])
        alone = var_voting(boxes[members], scores[members], variances[members], local_keep)
        assert torch.allclose(together[rows], alone, atol=1e-12)


def test_var_voting_high_variance_pulled_toward_low_variance():
    # Two boxes of one object: A (kept) is uncertain (variance 100), B certain (0.01).
    # inter (x 1..10, y 0..9) = 81, union 100 + 90 - 81 = 109, IoU = 0.743,
    # p = exp(-(1 - 0.743)^2 / 0.05) = 0.267: weights 1/100 for A, 26.7 for B.
    a = [0.0, 0.0, 10.0, 10.0]
    b = [1.0, 0.0, 11.0, 9.0]
    boxes = torch.tensor([a, b], dtype=F64)
    scores = torch.tensor([0.9, 0.8], dtype=F64)
    variances = torch.tensor([[100.0] * 4, [0.01] * 4], dtype=F64)
    iou = 81 / 109
    p = math.exp(-(1 - iou) ** 2 / 0.05)
    w_a, w_b = 1 / 100, p / 0.01
    expected_x1 = (w_a * 0 + w_b * 1) / (w_a + w_b)
    dets = var_voting(boxes, scores, variances, torch.tensor([0]), sigma_t=0.05)
    assert dets[0, 0].item() == pytest.approx(expected_x1, rel=1e-9)  # eps 1e-7 in the union
    # A moves almost onto B
    assert torch.allclose(dets[0, :4], boxes[1], atol=0.01)
    # the other way: B kept, A barely moves it
    dets_b = var_voting(boxes, scores, variances, torch.tensor([1]), sigma_t=0.05)
    assert torch.allclose(dets_b[0, :4], boxes[1], atol=1e-3)
    assert (dets_b[0, :4] - boxes[1]).abs().max() < 1e-2 * (dets[0, :4] - boxes[0]).abs().max()


def test_var_voting_disjoint_and_degenerate():
    # a box with no overlapping candidate stays where it is; a zero-area kept box
    # votes for itself (IoU 0 with itself) and stays finite
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [5, 5, 5, 5]])
    scores = torch.ones(3)
    variances = torch.ones(3, 4)
    dets = var_voting(boxes, scores, variances, torch.tensor([1, 2]))
    assert torch.equal(dets[:, :4], boxes[[1, 2]])
    # zero variance: finite, the certain candidate wins
    variances = torch.tensor([[0.0] * 4, [1.0] * 4, [1.0] * 4])
    boxes2 = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10.5, 10], [100, 100, 101, 101]])
    dets = var_voting(boxes2, scores, variances, torch.tensor([1]))
    assert torch.isfinite(dets).all()
    assert torch.allclose(dets[0, :4], boxes2[0])


def test_var_voting_half_precision_and_empty():
    boxes, scores, variances, idxs = random_candidates(30, seed=5, groups=2)
    keep = torch.tensor([1, 4, 9])
    ref = var_voting(boxes, scores, variances, keep, idxs=idxs)
    half = var_voting(boxes.half(), scores.half(), variances.half(), keep, idxs=idxs)
    assert half.dtype == torch.float16
    assert torch.allclose(half.double(), ref, atol=0.1)
    empty = var_voting(boxes, scores, variances, torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0, 5)


def test_var_voting_bad_input():
    boxes, scores, variances, _ = random_candidates(5, seed=6)
    keep = torch.tensor([0])
    for bad in (0.0, -0.01):
        with pytest.raises(ValueError, match='sigma_t'):
            var_voting(boxes, scores, variances, keep, sigma_t=bad)
    with pytest.raises(ValueError, match='variances'):
        var_voting(boxes, scores, variances[:, :2], keep)
    with pytest.raises(ValueError, match='scores'):
        var_voting(boxes, scores[:3], variances, keep)
    with pytest.raises(ValueError, match='keep'):
        var_voting(boxes, scores, variances, torch.tensor([0.0]))
    with pytest.raises(ValueError, match='idxs'):
        var_voting(boxes, scores, variances, keep, idxs=torch.zeros(3))
    with pytest.raises(ValueError, match='boxes'):
        var_voting(boxes[:, :3], scores, variances, keep)


def test_var_voting_gradcheck():
    # inference-only in the head, but differentiable in boxes and variances
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 9], [2, 1, 12, 11.0]], dtype=F64,
                         requires_grad=True)
    g = torch.Generator().manual_seed(7)
    variances = (torch.rand(3, 4, generator=g, dtype=F64) + 0.5).requires_grad_(True)
    scores = torch.ones(3, dtype=F64)
    assert gradcheck(lambda b, v: var_voting(b, scores, v, torch.tensor([0, 2]), 0.5)[:, :4],
                     (boxes, variances))
