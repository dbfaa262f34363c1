"""The classification losses' functional core (pure torch): hand values, gradcheck,
independent references written as slow loops, and numerical robustness."""
import math

import pytest
import torch
import torch.nn.functional as TF

from detloss_plugin.functional import classification as C
from detloss_plugin.functional import ghm as G

D = torch.float64


def _logits(n=5, c=4, seed=0, scale=2.0, dtype=D):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g, dtype=dtype) * scale)


def _labels(n=5, k=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, k, (n,), generator=g)


def _detection_targets(n=6, c=4, seed=1):
    """One-hot rows, some of them background (all zeros, label c)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c + 1, (n,), generator=g)
    labels[0], labels[1] = c, 0  # at least one background and one positive row
    return C.labels_to_one_hot(labels, c, D), labels


# ------------------------------------------------------------------------ hand values
LN2 = math.log(2)
LN3 = math.log(3)


def test_sigmoid_focal_hand_values():
    # x = 0: p = 0.5, BCE = ln 2, (1 - p_t)^2 = 0.25
    #   t = 1: alpha_t = 0.25 -> 0.25 * 0.25 * ln2 = 0.0433217
    #   t = 0: alpha_t = 0.75 -> 0.75 * 0.25 * ln2 = 0.1299651
    # x = ln 3: p = 0.75; t = 1: BCE = -ln 0.75 = 0.2876821, (0.25)^2 = 0.0625
    #   -> 0.25 * 0.0625 * 0.2876821 = 0.0044950
    x = torch.tensor([[0.0, 0.0, LN3]], dtype=D)
    t = torch.tensor([[1.0, 0.0, 1.0]], dtype=D)
    out = C.sigmoid_focal_loss(x, t)
    expected = torch.tensor([[0.25 * 0.25 * LN2, 0.75 * 0.25 * LN2,
                              0.25 * 0.0625 * -math.log(0.75)]], dtype=D)
    torch.testing.assert_close(out, expected)
    # alpha disabled (-1 or None), gamma 0: plain BCE
    torch.testing.assert_close(C.sigmoid_focal_loss(x, t, alpha=None, gamma=0.0),
                               TF.binary_cross_entropy_with_logits(x, t, reduction='none'))
    # per-class alpha: column c uses alpha_c / 1 - alpha_c
    out = C.sigmoid_focal_loss(x, t, alpha=torch.tensor([0.5, 0.1, 1.0], dtype=D))
    expected = torch.tensor([[0.5 * 0.25 * LN2, 0.9 * 0.25 * LN2,
                              1.0 * 0.0625 * -math.log(0.75)]], dtype=D)
    torch.testing.assert_close(out, expected)


def test_softmax_focal_hand_values():
    # logits (0, ln 3): p = (1/4, 3/4)
    #   label 1: -(1 - 3/4)^2 ln(3/4) = 0.0625 * 0.2876821 = 0.0179801
    #   label 0: -(3/4)^2 ln(1/4) = 0.5625 * 1.3862944 = 0.7797906
    x = torch.tensor([[0.0, LN3], [0.0, LN3]], dtype=D)
    y = torch.tensor([1, 0])
    torch.testing.assert_close(
        C.softmax_focal_loss(x, y),
        torch.tensor([0.0625 * -math.log(0.75), 0.5625 * math.log(4)], dtype=D))
    # per-class alpha (0.3, 2.0): weights by the sample's label
    torch.testing.assert_close(
        C.softmax_focal_loss(x, y, alpha=[0.3, 2.0]),
        torch.tensor([2.0 * 0.0625 * -math.log(0.75), 0.3 * 0.5625 * math.log(4)], dtype=D))
    # ignored rows are zero
    torch.testing.assert_close(C.softmax_focal_loss(x, torch.tensor([-100, 1])),
                               torch.tensor([0.0, 0.0625 * -math.log(0.75)], dtype=D))


def test_anchor_loss_hand_values():
    # p = sigmoid(ln 3, 0) = (0.75, 0.5), true class 0, gamma 0.5, slack 0.05
    # 'neg': q_pos = 0.75 - 0.05 = 0.70
    #   col 0 (true, gamma_pos = 0): -ln 0.75 = 0.2876821
    #   col 1: sqrt(1 + 0.5 - 0.70) * ln 2 = sqrt(0.8) * 0.6931472 = 0.6199702
    # 'pos': q_neg = 0.5 + 0.05 = 0.55
    #   col 0: sqrt(1 - 0.75 + 0.55) * 0.2876821 = sqrt(0.8) * 0.2876821 = 0.2573107
    #   col 1: ln 2
    x = torch.tensor([[LN3, 0.0]], dtype=D)
    t = torch.tensor([[1.0, 0.0]], dtype=D)
    ce0 = -math.log(0.75)
    torch.testing.assert_close(C.sigmoid_anchor_loss(x, t, anchor='neg'),
                               torch.tensor([[ce0, math.sqrt(0.8) * LN2]], dtype=D))
    torch.testing.assert_close(C.sigmoid_anchor_loss(x, t, anchor='pos'),
                               torch.tensor([[math.sqrt(0.8) * ce0, LN2]], dtype=D))
    # background row (detection adaptation): p_true = 1 - max p = 0.25, q_pos = 0.20
    #   col 0: -ln(1 - 0.75) * sqrt(1 + 0.75 - 0.20) = 1.3862944 * 1.2449900 = 1.7259227
    #   col 1: ln 2 * sqrt(1 + 0.5 - 0.20) = 0.6931472 * 1.1401754 = 0.7903077
    bg = C.sigmoid_anchor_loss(x, torch.zeros_like(t), anchor='neg')
    torch.testing.assert_close(
        bg, torch.tensor([[math.log(4) * math.sqrt(1.55), LN2 * math.sqrt(1.3)]], dtype=D))


def test_softmax_anchor_loss_hand_values():
    # logits (0, ln 3): p = (0.25, 0.75), label 1, gamma 0.5, slack 0.05, 'neg':
    #   q_pos = 0.75 - 0.05 = 0.70
    #   true col 1: -ln 0.75 = 0.2876821
    #   false col 0: -sqrt(1 + 0.25 - 0.70) * ln(1 - 0.25) = sqrt(0.55) * 0.2876821
    #   total = 0.2876821 * (1 + 0.7416198) = 0.5010348
    x = torch.tensor([[0.0, LN3]], dtype=D)
    out = C.softmax_anchor_loss(x, torch.tensor([1]))
    torch.testing.assert_close(out, torch.tensor([-math.log(0.75) * (1 + math.sqrt(0.55))],
                                                 dtype=D))


def test_symmetric_ce_hand_values():
    # softmax: logits (0, ln 3), label 1: p_y = 0.75
    #   CE = 0.2876821; RCE = -A (1 - p_y) = 4 * 0.25 = 1
    #   alpha 0.1, beta 1: 0.02876821 + 1 = 1.0287682
    x = torch.tensor([[0.0, LN3]], dtype=D)
    torch.testing.assert_close(C.softmax_symmetric_ce(x, torch.tensor([1])),
                               torch.tensor([0.1 * -math.log(0.75) + 1.0], dtype=D))
    # sigmoid: x = ln 3 (p = 0.75), t = 1: 0.1 * 0.2876821 + 4 * 0.25 = 1.0287682
    #          x = ln 3, t = 0: 0.1 * -ln 0.25 + 4 * 0.75 = 0.1386294 + 3 = 3.1386294
    xs = torch.tensor([[LN3, LN3]], dtype=D)
    ts = torch.tensor([[1.0, 0.0]], dtype=D)
    torch.testing.assert_close(
        C.sigmoid_symmetric_ce(xs, ts),
        torch.tensor([[0.1 * -math.log(0.75) + 1.0, 0.1 * math.log(4) + 3.0]], dtype=D))


def test_seesaw_hand_values():
    # two classes, logits (0, 0), cumulative counts (10, 1), p = 0.8, q = 2
    #   label 0 (frequent): M_01 = (1/10)^0.8 = 0.1584893, C_01 = 1 (scores equal)
    #       loss = ln(1 + 0.1584893) = 0.1471134
    #   label 1 (rare): M_10 = 1 (10 > 1), loss = ln 2
    x = torch.zeros(2, 2, dtype=D)
    cum = torch.tensor([10.0, 1.0], dtype=D)
    out = C.seesaw_ce_loss(x, torch.tensor([0, 1]), cum)
    torch.testing.assert_close(out, torch.tensor([math.log(1 + 0.1 ** 0.8), LN2], dtype=D))
    # compensation: logits (0, ln 3), label 0: sigma = (1/4, 3/4), ratio 3 > 1 -> 3^2 = 9;
    # equal counts (M = 1): loss = -log(1 / (1 + 9 * 3)) = ln 28
    x = torch.tensor([[0.0, LN3]], dtype=D)
    out = C.seesaw_ce_loss(x, torch.tensor([0]), torch.tensor([5.0, 5.0], dtype=D))
    torch.testing.assert_close(out, torch.tensor([math.log(28.0)], dtype=D))


def test_ghmc_hand_values():
    # g = |sigmoid(x) - t| = (0.05, 0.05, 0.05, 0.95): regions 0 and 9, R = (3, 1),
    # n = 2, N = 4, beta = 4 / (2 * 3) = 2/3 and 4 / (2 * 1) = 2.
    # BCE: -ln 0.95 = 0.0512933 (x = ln 19, t = 1) and -ln 0.05 = 2.9957323 (x = -ln 19)
    # loss = (2/3 * 3 * 0.0512933 + 2 * 2.9957323) / 4 = 1.5235128
    #      = mean over regions of the mean BCE in each region.
    x = torch.tensor([[math.log(19)] * 3 + [-math.log(19)]], dtype=D)
    t = torch.ones_like(x)
    valid = torch.ones_like(x, dtype=torch.bool)
    loss, total, acc = G.ghmc_loss(x, t, valid)
    assert acc is None and float(total) == 4.0
    torch.testing.assert_close(loss.sum() / total,
                               torch.tensor((-math.log(0.95) - math.log(0.05)) / 2, dtype=D))
    # momentum 0.75 from zero state: S = 0.25 * (3, 1) -> weights 4x larger, and
    # the second call: S = 0.75 * 0.75 + 0.25 * 3 = 1.3125, 0.75 * 0.25 + 0.25 = 0.4375
    acc0 = torch.zeros(10)
    loss1, total, acc1 = G.ghmc_loss(x, t, valid, momentum=0.75, acc_sum=acc0)
    torch.testing.assert_close(loss1.sum() / total, 4 * loss.sum() / total)
    assert acc1[0].item() == pytest.approx(0.75) and acc1[9].item() == pytest.approx(0.25)
    assert acc1[1:9].abs().sum().item() == 0.0 and acc0.abs().sum().item() == 0.0
    _, _, acc2 = G.ghmc_loss(x, t, valid, momentum=0.75, acc_sum=acc1)
    assert acc2[0].item() == pytest.approx(1.3125) and acc2[9].item() == pytest.approx(0.4375)
    # invalid elements: not counted, weight 0
    valid2 = torch.tensor([[True, True, True, False]])
    loss, total, _ = G.ghmc_loss(x, t, valid2)
    assert float(total) == 3.0 and loss[0, 3].item() == 0.0
    torch.testing.assert_close(loss.sum() / total, torch.tensor(-math.log(0.95), dtype=D))


def test_ghmr_hand_values():
    # d = (0, 1), mu = 0.02: ASL1 = (0, sqrt(1.0004) - 0.02 = 0.9801999)
    # g = (0, 0.9998) -> regions 0 and 9, one each, n = 2, N = 2: beta = 1
    # loss = 0.9801999 / 2 = 0.4900999
    pred = torch.tensor([[0.0, 1.0]], dtype=D)
    target = torch.zeros_like(pred)
    loss, total, _ = G.ghmr_loss(pred, target, torch.ones_like(pred, dtype=torch.bool))
    torch.testing.assert_close(loss.sum() / total,
                               torch.tensor((math.sqrt(1.0004) - 0.02) / 2, dtype=D))


# ------------------------------------------------- independent references (slow loops)
def torchvision_sigmoid_focal_loss(inputs, targets, alpha: float = 0.25, gamma: float = 2,
                                   reduction: str = 'none'):
    """A faithful transcription of ``torchvision.ops.sigmoid_focal_loss`` (torchvision
    0.29.1, torchvision/ops/focal_loss.py), without the API-usage logging.

    torchvision does not import beside the CPU torch 2.13.0 wheel of this environment
    (``operator torchvision::nms does not exist``), so the test compares with this
    transcription instead of the installed package.
    """
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f'Invalid alpha value: {alpha}.')
    p = torch.sigmoid(inputs)
    ce_loss = TF.binary_cross_entropy_with_logits(inputs, targets, reduction='none')
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == 'none':
        pass
    elif reduction == 'mean':
        loss = loss.mean()
    elif reduction == 'sum':
        loss = loss.sum()
    return loss


@pytest.mark.parametrize('alpha,gamma', [(0.25, 2.0), (-1, 2.0), (0.5, 0.0), (0.9, 1.5)])
def test_sigmoid_focal_equals_torchvision(alpha, gamma):
    x = _logits(8, 5, scale=3.0).requires_grad_()
    t, _ = _detection_targets(8, 5)
    ours = C.sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma)
    ref = torchvision_sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    g_ours, = torch.autograd.grad(ours.sum(), x)
    g_ref, = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def hedgefair_softmax_focal_loop(x, y, alpha, gamma):
    """hedgefair/Focal-Loss-Pytorch's formula, one sample at a time:
    -alpha[y] * (1 - p_y)^gamma * log(p_y), p = softmax(x) (alpha None: no weighting,
    which the repository does not offer; its default alpha=0.25 is the per-class
    [0.25, 0.75, ...]: test_hardening.py checks that default)."""
    out = []
    for i in range(x.shape[0]):
        p = torch.softmax(x[i], dim=0)
        py = p[y[i]]
        a = 1.0 if alpha is None else alpha[int(y[i])]
        out.append(-a * (1 - py) ** gamma * torch.log(py))
    return torch.stack(out)


@pytest.mark.parametrize('alpha', [None, [0.25, 0.5, 1.0, 2.0]])
@pytest.mark.parametrize('gamma', [0.0, 2.0, 0.5])
def test_softmax_focal_equals_hedgefair_formula(alpha, gamma):
    x = _logits(7, 4).requires_grad_()
    y = _labels(7, 4)
    ours = C.softmax_focal_loss(x, y, alpha=alpha, gamma=gamma)
    ref = hedgefair_softmax_focal_loop(x, y, alpha, gamma)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0],
                               torch.autograd.grad(ref.sum(), x)[0])
    if gamma == 0.0 and alpha is None:
        torch.testing.assert_close(ours, TF.cross_entropy(x, y, reduction='none'))


def slryou41_anchor_loop(x, y, gamma, slack, anchor):
    """slryou41/AnchorLoss's ``AnchorLoss.forward`` (after warm-up) without its
    reduction, element by element: per sample i and class k,
    loss = mask * (1 - p + pt_neg)^g_pos * bce + (1 - mask) * (1 + p - pt_pos)^g_neg * bce,
    with pt_pos = clamp(p_y - slack, min 0) and pt_neg = clamp(max_{k != y} p_k + slack,
    max 1), both detached."""
    g_pos, g_neg = (gamma, 0.0) if anchor == 'pos' else (0.0, gamma)
    n, c = x.shape
    rows = []
    for i in range(n):
        p = torch.sigmoid(x[i])
        yi = int(y[i])
        pt_pos = torch.clamp(p[yi] - slack, min=0).detach()
        others = [p[k] for k in range(c) if k != yi] + [torch.zeros((), dtype=x.dtype)]
        pt_neg = torch.clamp(torch.stack(others).max() + slack, max=1).detach()
        row = []
        for k in range(c):
            mask = 1.0 if k == yi else 0.0
            bce = -(mask * torch.log(p[k]) + (1 - mask) * torch.log(1 - p[k]))
            if mask:
                row.append((1 - p[k] + pt_neg) ** g_pos * bce)
            else:
                row.append((1 + p[k] - pt_pos) ** g_neg * bce)
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize('anchor', ['neg', 'pos'])
@pytest.mark.parametrize('gamma,slack', [(0.5, 0.05), (2.0, 0.2)])
def test_sigmoid_anchor_equals_reference_formula(anchor, gamma, slack):
    x = _logits(6, 5).requires_grad_()
    y = _labels(6, 5)
    t = C.labels_to_one_hot(y, 5, D)
    ours = C.sigmoid_anchor_loss(x, t, gamma, slack, anchor)
    ref = slryou41_anchor_loop(x, y, gamma, slack, anchor)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0],
                               torch.autograd.grad(ref.sum(), x)[0])
    # the reference's reduction: sum over classes, mean over samples
    torch.testing.assert_close(ours.sum(1).mean(), ref.sum(1).mean())


def hanxunh_sce_loop(x, y, alpha, beta, num_classes):
    """HanxunH/SCELoss-Reproduce's first ``SCELoss.forward`` (commit 53a8df3, October
    2019) per sample, with its clamps: p clamped to [1e-7, 1], the one-hot label clamped
    to [1e-4, 1] in both terms. The current loss.py computes CE exactly:
    test_hardening.py compares with it."""
    out = []
    for i in range(x.shape[0]):
        p = torch.softmax(x[i], dim=0).clamp(min=1e-7, max=1.0)
        q = torch.full((num_classes,), 1e-4, dtype=x.dtype)
        q[int(y[i])] = 1.0
        ce = -(q * torch.log(p)).sum()
        rce = -(p * torch.log(q)).sum()
        out.append(alpha * ce + beta * rce)
    return torch.stack(out)


@pytest.mark.parametrize('alpha,beta', [(0.1, 1.0), (6.0, 0.1)])
def test_softmax_sce_equals_reference_formula(alpha, beta):
    """With A = ln 1e-4 our loss differs from the reference's first version only by
    the label clamp in its CE term, 1e-4 * sum_{k != y} -log p_k."""
    x = _logits(6, 4).requires_grad_()
    y = _labels(6, 4)
    ours = C.softmax_symmetric_ce(x, y, alpha, beta, log_zero=math.log(1e-4))
    logp = torch.log_softmax(x, dim=1)
    others = -(logp * (1 - TF.one_hot(y, 4).to(D))).sum(1)
    ref = hanxunh_sce_loop(x, y, alpha, beta, 4)
    assert (torch.softmax(x, 1) > 1e-7).all()  # the reference's p clamp is inactive here
    torch.testing.assert_close(ours + alpha * 1e-4 * others, ref)
    torch.testing.assert_close(
        torch.autograd.grad((ours + alpha * 1e-4 * others).sum(), x)[0],
        torch.autograd.grad(ref.sum(), x)[0])
    # the RCE term alone is exactly the reference's
    rce_ref = hanxunh_sce_loop(x, y, 0.0, 1.0, 4)
    torch.testing.assert_close(C.softmax_symmetric_ce(x, y, 0.0, 1.0, math.log(1e-4)), rce_ref)


def test_sigmoid_sce_equals_definition():
    """RCE = -[p log t + (1 - p) log(1 - t)] with log 0 = A, element by element."""
    x = _logits(4, 3).requires_grad_()
    t, _ = _detection_targets(4, 3)
    A = -4.0
    p = torch.sigmoid(x)
    log_t = torch.where(t > 0, torch.zeros_like(t), torch.full_like(t, A))
    log_1mt = torch.where(t < 1, torch.zeros_like(t), torch.full_like(t, A))
    rce = -(p * log_t + (1 - p) * log_1mt)
    ref = 0.1 * TF.binary_cross_entropy_with_logits(x, t, reduction='none') + 1.0 * rce
    ours = C.sigmoid_symmetric_ce(x, t)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), x)[0],
                               torch.autograd.grad(ref.sum(), x)[0])


def libuyu_ghm_loop(g, valid, loss_el, bins, last_edge, momentum=0.0, acc_sum=None):
    """libuyu/GHM_Detection's loop over regions (``.sum()`` per region, Python ints);
    returns (sum(beta * loss) / tot, new acc_sum)."""
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] = last_edge
    weights = torch.zeros_like(g)
    tot = max(float(valid.sum()), 1.0)
    acc = None if acc_sum is None else acc_sum.clone()
    n = 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
        num = int(inds.sum())
        if num > 0:
            if momentum > 0:
                acc[i] = momentum * acc[i] + (1 - momentum) * num
                weights[inds] = tot / acc[i]
            else:
                weights[inds] = tot / num
            n += 1
    if n > 0:
        weights = weights / n
    return (loss_el * weights).sum() / tot, acc


@pytest.mark.parametrize('momentum', [0.0, 0.75])
def test_ghmc_equals_reference_loop(momentum):
    acc = torch.zeros(10)
    acc_ref = torch.zeros(10)
    for seed in range(3):  # the moving average evolves over calls
        x = _logits(40, 6, seed=seed, scale=3.0).requires_grad_()
        t, _ = _detection_targets(40, 6, seed=seed)
        valid = torch.rand(40, 6, generator=torch.Generator().manual_seed(seed)) > 0.2
        loss, total, new_acc = G.ghmc_loss(x, t, valid, 10, momentum,
                                           acc if momentum else None)
        ours = loss.sum() / total
        g = (torch.sigmoid(x.detach()) - t).abs()
        bce = TF.binary_cross_entropy_with_logits(x, t, reduction='none')
        ref, acc_ref = libuyu_ghm_loop(g, valid, bce, 10, 1 + 1e-6, momentum,
                                       acc_ref if momentum else None)
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(torch.autograd.grad(ours, x)[0],
                                   torch.autograd.grad(ref, x)[0])
        if momentum:
            torch.testing.assert_close(new_acc, acc_ref)
            acc = new_acc


@pytest.mark.parametrize('bins,momentum', [(10, 0.0), (30, 0.7)])
def test_ghmr_equals_reference_loop(bins, momentum):
    acc = torch.zeros(bins)
    acc_ref = torch.zeros(bins)
    for seed in range(3):
        pred = _logits(30, 4, seed=seed, scale=0.1).requires_grad_()
        target = _logits(30, 4, seed=seed + 10, scale=0.1)
        valid = torch.rand(30, 4, generator=torch.Generator().manual_seed(seed)) > 0.5
        loss, total, new_acc = G.ghmr_loss(pred, target, valid, 0.02, bins, momentum,
                                           acc if momentum else None)
        ours = loss.sum() / total
        diff = pred - target
        g = (diff / torch.sqrt(diff * diff + 0.02 ** 2)).abs().detach()
        asl1 = torch.sqrt(diff * diff + 0.02 ** 2) - 0.02
        ref, acc_ref = libuyu_ghm_loop(g, valid, asl1, bins, 1e3, momentum,
                                       acc_ref if momentum else None)
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(torch.autograd.grad(ours, pred)[0],
                                   torch.autograd.grad(ref, pred)[0])
        if momentum:
            torch.testing.assert_close(new_acc, acc_ref)
            acc = new_acc


def test_ghm_regions_at_exact_edges():
    """g exactly on an edge falls in the region above it (edges[b] <= g < edges[b+1]);
    g = 1 falls in the last region. Edges in float32 as the reference."""
    edges = G.ghm_edges(10, G.GHMC_LAST_EDGE)
    g = torch.cat([edges[:10], torch.tensor([1.0])]).to(D)
    w = G.ghm_weights(g, torch.ones_like(g, dtype=torch.bool), edges)
    # 11 elements in 10 regions: region 9 holds two (0.9 and 1.0), the others one each.
    # beta = N / (n R) = 11 / (10 * R)
    expected = torch.full_like(g, 11 / 10)
    expected[9:] = 11 / 20
    torch.testing.assert_close(w.weight, expected)


# --------------------------------------------------------------------------- gradcheck
def _gc(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize('alpha', [0.25, None, 'per_class'])
@pytest.mark.parametrize('gamma', [0.0, 0.5, 2.0])
def test_gradcheck_sigmoid_focal(alpha, gamma):
    x = _logits(4, 3).requires_grad_()
    t, _ = _detection_targets(4, 3)
    a = torch.tensor([0.2, 0.5, 0.9], dtype=D) if alpha == 'per_class' else alpha
    _gc(lambda v: C.sigmoid_focal_loss(v, t, a, gamma), x)


@pytest.mark.parametrize('alpha', [None, [0.5, 1.0, 2.0, 0.1]])
@pytest.mark.parametrize('gamma', [0.0, 0.5, 2.0])
def test_gradcheck_softmax_focal(alpha, gamma):
    x = _logits(5, 4).requires_grad_()
    y = torch.tensor([0, 3, -100, 1, 2])
    _gc(lambda v: C.softmax_focal_loss(v, y, alpha, gamma), x)


def test_gradcheck_cross_entropy():
    x = _logits(5, 4).requires_grad_()
    t, _ = _detection_targets(5, 4)
    y = torch.tensor([0, 3, -100, 1, 2])
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=D)
    _gc(lambda v: C.sigmoid_cross_entropy(v, t), x)
    _gc(lambda v: C.sigmoid_cross_entropy(v, t, w), x)
    _gc(lambda v: C.softmax_cross_entropy(v, y), x)
    _gc(lambda v: C.softmax_cross_entropy(v, y, w), x)


@pytest.mark.parametrize('anchor', ['neg', 'pos'])
@pytest.mark.parametrize('gamma', [0.5, 2.0])
def test_gradcheck_anchor(anchor, gamma):
    """The anchors are constants of the loss (no gradient, as in the reference): check
    the derivative of the loss for fixed anchors, as computed in the forward."""
    x = _logits(6, 4).requires_grad_()
    t, labels = _detection_targets(6, 4)
    gp, gn = C._anchor_gammas(gamma, anchor)
    q_pos = torch.rand(6, 1, dtype=D, generator=torch.Generator().manual_seed(3)) * 0.9
    q_neg = 0.1 + torch.rand(6, 1, dtype=D, generator=torch.Generator().manual_seed(4)) * 0.9
    _gc(lambda v: C._sigmoid_anchor_terms(v, t, q_pos, q_neg, gp, gn), x)
    # softmax form on 4 + 1 columns (background last)
    xs = _logits(6, 5).requires_grad_()
    onehot = TF.one_hot(labels, 5).to(D)
    _gc(lambda v: C._softmax_anchor_terms(v, onehot, q_pos, q_neg, gp, gn), xs)
    # and the full functions compute exactly that gradient
    for fn, inp, args in ((C.sigmoid_anchor_loss, x, (t,)),
                          (C.softmax_anchor_loss, xs, (labels,))):
        out = fn(inp, *args, gamma=gamma, anchor=anchor)
        assert torch.isfinite(torch.autograd.grad(out.sum(), inp)[0]).all()


def test_gradcheck_symmetric_ce():
    x = _logits(5, 4).requires_grad_()
    t, _ = _detection_targets(5, 4)
    y = torch.tensor([0, 3, -100, 1, 2])
    _gc(lambda v: C.sigmoid_symmetric_ce(v, t), x)
    _gc(lambda v: C.softmax_symmetric_ce(v, y, 6.0, 0.1, math.log(1e-4)), x)


@pytest.mark.parametrize('p,q', [(0.8, 0.0), (0.0, 0.0), (0.8, 2.0)])
def test_gradcheck_seesaw(p, q):
    # With q > 0 the compensation factor (detached scores) is piecewise: it is constant
    # (1) where the true class has the highest score, so take labels = arg-max there.
    x = _logits(6, 4).requires_grad_()
    y = x.detach().argmax(1) if q > 0 else _labels(6, 4)
    cum = torch.tensor([100.0, 3.0, 0.0, 40.0], dtype=D)
    _gc(lambda v: C.seesaw_ce_loss(v, y, cum, p, q), x)


@pytest.mark.parametrize('momentum', [0.0, 0.75])
def test_gradcheck_ghm(momentum):
    x = _logits(6, 3).requires_grad_()
    t, _ = _detection_targets(6, 3)
    valid = torch.ones_like(x, dtype=torch.bool)
    valid[0, 0] = False
    acc = torch.tensor([5.0, 0, 1, 2, 3, 4, 0, 0, 1, 7]) if momentum else None
    _gc(lambda v: G.ghmc_loss(v, t, valid, 10, momentum, acc)[0], x)
    pred = _logits(5, 4, scale=0.05).requires_grad_()
    target = _logits(5, 4, seed=7, scale=0.05)
    valid = torch.ones_like(pred, dtype=torch.bool)
    _gc(lambda v: G.ghmr_loss(v, target, valid, 0.02, 10, momentum, acc)[0], pred)


# ------------------------------------------------------------------------- robustness
SIGMOID_FNS = {
    'bce': lambda x, t: C.sigmoid_cross_entropy(x, t),
    'focal': lambda x, t: C.sigmoid_focal_loss(x, t),
    'focal_g05': lambda x, t: C.sigmoid_focal_loss(x, t, gamma=0.5),
    'anchor_neg': lambda x, t: C.sigmoid_anchor_loss(x, t),
    'anchor_pos': lambda x, t: C.sigmoid_anchor_loss(x, t, anchor='pos'),
    'anchor_slack0': lambda x, t: C.sigmoid_anchor_loss(x, t, slack=0.0),
    'sce': lambda x, t: C.sigmoid_symmetric_ce(x, t),
    'ghmc': lambda x, t: G.ghmc_loss(x, t, torch.ones_like(x, dtype=torch.bool))[0],
}
SOFTMAX_FNS = {
    'ce': lambda x, y: C.softmax_cross_entropy(x, y),
    'focal': lambda x, y: C.softmax_focal_loss(x, y, gamma=0.5),
    'anchor_neg': lambda x, y: C.softmax_anchor_loss(x, y),
    'anchor_pos': lambda x, y: C.softmax_anchor_loss(x, y, anchor='pos'),
    'sce': lambda x, y: C.softmax_symmetric_ce(x, y),
    'seesaw': lambda x, y: C.seesaw_ce_loss(x, y, torch.tensor([1e4, 1.0, 3.0, 0.0])),
}


def _extreme(dtype):
    # every sign combination of +-100 with 0/1 targets, and a background row
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0]] * 3, dtype=dtype)
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0, 0, 0, 0], [0, 1.0, 0, 0]], dtype=dtype)
    y = torch.tensor([0, 1, 3])
    return x, t, y


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, D])
@pytest.mark.parametrize('name', sorted(SIGMOID_FNS))
def test_sigmoid_extreme_logits_finite(name, dtype):
    x, t, _ = _extreme(dtype)
    x.requires_grad_()
    out = SIGMOID_FNS[name](x, t)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.isfinite(out).all()
    grad, = torch.autograd.grad(out.float().sum(), x)
    assert torch.isfinite(grad).all()
    # a confident wrong answer costs about 100 in BCE-like losses, a right one ~0
    if name in ('bce', 'sce'):
        assert out[0, 1].float().item() > 9  # t = 1, x = -100 (SCE: 0.1 * 100 + 4 = 14)
        assert out[0, 0].float().item() < 1e-3 or name == 'sce'


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, D])
@pytest.mark.parametrize('name', sorted(SOFTMAX_FNS))
def test_softmax_extreme_logits_finite(name, dtype):
    x, _, y = _extreme(dtype)
    x.requires_grad_()
    out = SOFTMAX_FNS[name](x, y)
    assert out.dtype == dtype and out.shape == (3,)
    assert torch.isfinite(out).all()
    grad, = torch.autograd.grad(out.float().sum(), x)
    assert torch.isfinite(grad).all()
    # label 1 has logit -100 against +100: loss at least ~200 * (weight of CE)
    if name == 'ce':
        assert out[1].float().item() == pytest.approx(200.0, rel=1e-2)


def test_softmax_anchor_log1m_is_exact_for_saturated_rows():
    """log(1 - p_k) for the arg-max column of a saturated row is -200 (p = 1 - e^-200),
    not -inf (which log1p(-softmax) would give)."""
    x = torch.tensor([[100.0, -100.0]], dtype=D)
    logp = x.log_softmax(-1)
    out = C._log1m_softmax(x, logp)
    torch.testing.assert_close(out, torch.tensor([[-200.0, -math.exp(-200)]], dtype=D))


@pytest.mark.parametrize('name', sorted(SIGMOID_FNS))
def test_sigmoid_empty(name):
    x = torch.zeros(0, 4, requires_grad=True)
    out = SIGMOID_FNS[name](x, torch.zeros(0, 4))
    assert out.shape == (0, 4)
    assert out.sum().item() == 0.0
    out.sum().backward()
    assert x.grad.shape == (0, 4)


@pytest.mark.parametrize('name', sorted(SOFTMAX_FNS))
def test_softmax_empty(name):
    x = torch.zeros(0, 4, requires_grad=True)
    out = SOFTMAX_FNS[name](x, torch.zeros(0, dtype=torch.long))
    assert out.shape == (0,)
    out.sum().backward()
    assert x.grad.shape == (0, 4)


@pytest.mark.parametrize('name', sorted(set(SOFTMAX_FNS) - {'seesaw'}))
def test_softmax_all_ignored_is_zero(name):
    x = _logits(3, 4, dtype=torch.float32).requires_grad_()
    out = SOFTMAX_FNS[name](x, torch.full((3,), -100))
    assert out.abs().sum().item() == 0.0
    grad, = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum().item() == 0.0


def test_ghm_nothing_valid_is_zero_and_connected():
    x = _logits(3, 4, dtype=torch.float32).requires_grad_()
    loss, total, _ = G.ghmc_loss(x, torch.zeros_like(x), torch.zeros_like(x, dtype=torch.bool))
    assert float(total) == 1.0 and loss.abs().sum().item() == 0.0
    loss.sum().backward()
    assert x.grad.abs().sum().item() == 0.0


def test_probs_to_logits_round_trip():
    p = torch.tensor([[0.0, 1e-3, 0.5, 0.999, 1.0]])
    x = C.probs_to_logits(p, use_sigmoid=True)
    assert torch.isfinite(x).all()
    torch.testing.assert_close(torch.sigmoid(x)[:, 1:4], p[:, 1:4])
    ps = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    torch.testing.assert_close(torch.softmax(C.probs_to_logits(ps, use_sigmoid=False), -1), ps)


# ---------------------------------------------------------------------------- errors
def test_argument_errors_name_the_argument():
    x = torch.zeros(2, 3)
    t = torch.zeros(2, 3)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match='gamma'):
        C.sigmoid_focal_loss(x, t, gamma=-1.0)
    with pytest.raises(ValueError, match='alpha'):
        C.sigmoid_focal_loss(x, t, alpha=1.5)
    with pytest.raises(ValueError, match='anchor'):
        C.sigmoid_anchor_loss(x, t, anchor='both')
    with pytest.raises(ValueError, match='slack'):
        C.sigmoid_anchor_loss(x, t, slack=2.0)
    with pytest.raises(ValueError, match='log_zero'):
        C.softmax_symmetric_ce(x, y, log_zero=0.0)
    with pytest.raises(ValueError, match='targets'):
        C.sigmoid_cross_entropy(x, torch.zeros(2, 4))
    with pytest.raises(TypeError, match='labels'):
        C.softmax_cross_entropy(x, torch.zeros(2))
    with pytest.raises(ValueError, match='labels'):
        C.softmax_cross_entropy(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match='logits'):
        C.softmax_cross_entropy(torch.zeros(2, 3, 4), y)
    with pytest.raises(ValueError, match='cum_samples'):
        C.seesaw_ce_loss(x, y, torch.zeros(4))
    with pytest.raises(ValueError, match='bins'):
        G.ghm_edges(0, 1.0)
    with pytest.raises(ValueError, match='momentum'):
        G.ghmc_loss(x, t, t > 0, momentum=1.0, acc_sum=torch.zeros(10))
    with pytest.raises(ValueError, match='acc_sum'):
        G.ghmc_loss(x, t, t > 0, momentum=0.5)
