"""Rank & Sort loss and aLRP loss against slow float64 transcriptions of the reference
codes (kemaloksuz/RankSortLoss ``RankSort.forward``, kemaloksuz/aLRPLoss
``aLRPLoss.forward`` and the localisation term of ``aLRPLossRetinaHead.loss``): one
Python iteration per positive, as there, with the device hard-coding removed and
float64 instead of float32. Tie-heavy cases (scores rounded to a coarse grid, IoU
targets rounded too), a single positive, no positive, ignored entries; the modules,
the custom operators (opcheck), ``torch.compile``, bad input."""
import math

import pytest
import torch

from detloss_plugin.functional import alrp_loss, rank_sort_loss
from detloss_plugin.functional import rank_sort as RS

D = torch.float64


# ---------------------------------------------------------------- slow transcriptions
def slow_rank_sort(logits, targets, delta=0.5, eps=1e-10):
    """RankSort.forward: flat ``logits``, ``targets`` (IoU > 0 positive, 0 negative,
    else ignored). Returns (ranking, sorting, update)."""
    logits, targets = logits.reshape(-1).double(), targets.reshape(-1).double()
    grads = torch.zeros_like(logits)
    fg = targets > 0
    fg_logits, fg_targets = logits[fg], targets[fg]
    fg_num = len(fg_logits)
    threshold = torch.min(fg_logits) - delta
    bg = (targets == 0) & (logits >= threshold)
    bg_logits = logits[bg]
    bg_grad = torch.zeros(len(bg_logits), dtype=D)
    sorting_error = torch.zeros(fg_num, dtype=D)
    ranking_error = torch.zeros(fg_num, dtype=D)
    fg_grad = torch.zeros(fg_num, dtype=D)
    for ii in torch.argsort(fg_logits):
        fg_rel = torch.clamp((fg_logits - fg_logits[ii]) / (2 * delta) + 0.5, min=0, max=1)
        bg_rel = torch.clamp((bg_logits - fg_logits[ii]) / (2 * delta) + 0.5, min=0, max=1)
        rank_pos = torch.sum(fg_rel)
        fp_num = torch.sum(bg_rel)
        rank = rank_pos + fp_num
        ranking_error[ii] = fp_num / rank
        current = torch.sum(fg_rel * (1 - fg_targets)) / rank_pos
        iou_rel = fg_targets >= fg_targets[ii]
        target_order = iou_rel * fg_rel
        target = torch.sum(target_order * (1 - fg_targets)) / torch.sum(target_order)
        sorting_error[ii] = current - target
        if fp_num > eps:
            fg_grad[ii] -= ranking_error[ii]
            bg_grad += bg_rel * (ranking_error[ii] / fp_num)
        missorted = (~iou_rel) * fg_rel
        denom = torch.sum(missorted)
        if denom > eps:
            fg_grad[ii] -= sorting_error[ii]
            fg_grad += missorted * (sorting_error[ii] / denom)
    grads[fg] = fg_grad / fg_num
    grads[bg] = bg_grad / fg_num
    return ranking_error.mean(), sorting_error.mean(), grads


def slow_alrp(logits, targets, regression_losses, delta=1.0, eps=1e-5):
    """aLRPLoss.forward (flat ``targets`` 1 / 0 / -1) and the head's localisation term
    (``cumsum`` of the positives' losses in descending score over their rank).
    Returns (cls_loss, loc_loss, update)."""
    logits, targets = logits.reshape(-1).double(), targets.reshape(-1)
    regression_losses = regression_losses.double()
    grads = torch.zeros_like(logits)
    fg = targets == 1
    fg_logits = logits[fg]
    fg_num = len(fg_logits)
    threshold = torch.min(fg_logits) - delta
    bg = (targets == 0) & (logits >= threshold)
    bg_logits = logits[bg]
    bg_grad = torch.zeros(len(bg_logits), dtype=D)
    rank = torch.zeros(fg_num, dtype=D)
    prec = torch.zeros(fg_num, dtype=D)
    fg_grad = torch.zeros(fg_num, dtype=D)
    order = torch.argsort(fg_logits)
    for ii in order:
        fg_rel = torch.clamp((fg_logits - fg_logits[ii]) / (2 * delta) + 0.5, min=0, max=1)
        fg_rel[ii] = 0
        bg_rel = torch.clamp((bg_logits - fg_logits[ii]) / (2 * delta) + 0.5, min=0, max=1)
        rank_pos = 1 + torch.sum(fg_rel)
        fp_num = torch.sum(bg_rel)
        rank[ii] = rank_pos + fp_num
        prec[ii] = rank_pos / rank[ii]
        if fp_num > eps:
            fg_grad[ii] = -(torch.sum(fg_rel * regression_losses) + fp_num) / rank[ii]
            bg_grad += bg_rel * (-fg_grad[ii] / fp_num)
    grads[fg] = fg_grad
    grads[bg] = bg_grad
    grads /= fg_num
    cls_loss = 1 - prec.mean()
    ordered = regression_losses[order].flip(dims=[0])
    loc_loss = (torch.cumsum(ordered, dim=0) / rank[order].flip(dims=[0])).mean()
    return cls_loss, loc_loss, grads


# -------------------------------------------------------------------------- cases
def _rs_case(n, c, seed, decimals=None, target_decimals=None, p_pos=0.25, p_ign=0.1):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=D) * 1.5
    if decimals is not None:
        logits = logits.round(decimals=decimals)
    u = torch.rand(n, c, generator=g)
    targets = torch.zeros(n, c, dtype=D)
    iou = torch.rand(n, c, generator=g, dtype=D) * 0.9 + 0.05
    if target_decimals is not None:
        iou = iou.round(decimals=target_decimals).clamp_min(0.1)
    targets[u < p_pos] = iou[u < p_pos]
    targets[(u >= p_pos) & (u < p_pos + p_ign)] = -1
    targets.view(-1)[0] = 0.7  # at least one positive
    return logits, targets


def _alrp_case(n, c, seed, decimals=None, p_bg=0.5, p_ign=0.1):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=D) * 1.5
    if decimals is not None:
        logits = logits.round(decimals=decimals)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[torch.rand(n, generator=g) < p_bg] = c
    labels[0] = 0
    weights = (torch.rand(n, generator=g) >= p_ign).to(D)
    weights[0] = 1
    loc = torch.rand(n, generator=g, dtype=D) * 1.5
    return logits, labels, weights, loc


def _flat_alrp_targets(labels, weights, c):
    """The reference's ``vectorize_labels``: 1 positive, 0 negative, -1 ignored."""
    t = torch.zeros(labels.shape[0], c)
    fg = labels < c
    t[fg.nonzero().squeeze(1), labels[fg]] = 1
    t[weights == 0] = -1
    return t.reshape(-1)


def _rs(logits, targets, **kw):
    x = logits.clone().requires_grad_(True)
    rank, sort = rank_sort_loss(x, targets, **kw)
    (rank + sort).backward()
    return rank, sort, x.grad


# ------------------------------------------------------------------ Rank & Sort loss
@pytest.mark.parametrize('cpu_kernel', [False, True], ids=['torch', 'C'])
@pytest.mark.parametrize('seed', range(5))
@pytest.mark.parametrize('ties', [False, True], ids=['random', 'ties'])
def test_rank_sort_matches_the_reference(seed, ties, cpu_kernel):
    kw = dict(decimals=0, target_decimals=1) if ties else {}
    logits, targets = _rs_case(14, 4, seed, **kw)
    rank, sort, grad = _rs(logits, targets, cpu_kernel=cpu_kernel)
    ref_rank, ref_sort, ref_grad = slow_rank_sort(logits, targets)
    assert rank.item() == pytest.approx(ref_rank.item(), abs=1e-12)
    assert sort.item() == pytest.approx(ref_sort.item(), abs=1e-12)
    torch.testing.assert_close(grad.reshape(-1), ref_grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize('delta', [0.1, 2.0])
def test_rank_sort_delta_and_chunks(delta, monkeypatch):
    logits, targets = _rs_case(20, 3, 7, decimals=1, target_decimals=1)
    ref = slow_rank_sort(logits, targets, delta=delta)
    monkeypatch.setattr(RS.core, 'CHUNK_ELEMENTS', 5)  # blocks of rows, many chunks
    rank, sort, grad = _rs(logits, targets, delta=delta, cpu_kernel=False)
    assert rank.item() == pytest.approx(ref[0].item(), abs=1e-12)
    assert sort.item() == pytest.approx(ref[1].item(), abs=1e-12)
    torch.testing.assert_close(grad.reshape(-1), ref[2], atol=1e-12, rtol=0)


def test_rank_sort_hand_value():
    # positives A (score 1, IoU 0.9) and B (score 0, IoU 0.5), a negative at 0.25,
    # delta 0.5 (H(x) = clip(x + 1/2)). For A: H(B - A) = H(-1) = 0, rank+ = 1/2,
    # FP = H(-0.75) = 0: ranking 0; sorting: current 0.5 * 0.1 / 0.5 = 0.1, target
    # (only IoU >= 0.9: A) 0.1: 0. For B: H(A - B) = 1, rank+ = 1.5, FP = H(0.25) =
    # 0.75: ranking 0.75 / 2.25 = 1/3; current (1 * 0.1 + 0.5 * 0.5) / 1.5 = 0.35 / 1.5,
    # target (IoU >= 0.5: A and B) the same: 0. Means: 1/6 and 0.
    logits = torch.tensor([1.0, 0.0, 0.25], dtype=D)
    targets = torch.tensor([0.9, 0.5, 0.0], dtype=D)
    rank, sort, grad = _rs(logits, targets)
    assert rank.item() == pytest.approx(1 / 6, abs=1e-15)
    assert sort.item() == pytest.approx(0.0, abs=1e-15)
    # update / 2 positives: B -1/3, the negative H / rank(B) = 0.75 / 2.25 = 1/3; no
    # missorted positives (A has the higher IoU and the higher score)
    torch.testing.assert_close(grad, torch.tensor([0.0, -1 / 6, 1 / 6], dtype=D),
                               atol=1e-15, rtol=0)


def test_rank_sort_split_of_the_update():
    logits, targets = _rs_case(12, 3, 3)
    x = logits.clone().requires_grad_(True)
    rank, sort = rank_sort_loss(x, targets)
    g_rank, = torch.autograd.grad(rank, x, retain_graph=True)
    g_sort, = torch.autograd.grad(sort, x)
    torch.testing.assert_close(g_rank + g_sort, slow_rank_sort(logits, targets)[2]
                               .reshape(logits.shape), atol=1e-12, rtol=0)
    assert g_sort[targets == 0].abs().max().item() == 0.0  # sorting moves positives only
    assert g_rank.abs().sum() > 0 and g_sort.abs().sum() > 0


def test_rank_sort_no_positive_and_ignored():
    logits = torch.randn(5, 3, dtype=D)
    for t in (torch.zeros(5, 3, dtype=D), -torch.ones(5, 3, dtype=D)):
        rank, sort, grad = _rs(logits, t)
        assert rank.item() == 0.0 and sort.item() == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))
    # an ignored entry changes nothing and gets nothing
    logits, targets = _rs_case(10, 3, 4)
    targets[3, 1] = -1
    rank, sort, grad = _rs(logits, targets)
    keep = targets.reshape(-1) != -1
    ref = slow_rank_sort(logits.reshape(-1)[keep], targets.reshape(-1)[keep])
    assert rank.item() == pytest.approx(ref[0].item(), abs=1e-12)
    assert grad[3, 1].item() == 0.0


def test_rank_sort_nan_and_bad_input():
    logits, targets = _rs_case(6, 3, 0)
    x = logits.clone()
    x[2, 2] = math.nan
    assert all(math.isnan(v.item()) for v in rank_sort_loss(x, targets))
    for bad in (math.nan, 1.5):
        t = targets.clone()
        t[1, 1] = bad
        with pytest.raises(ValueError, match='targets must hold IoUs'):
            rank_sort_loss(logits, t)
    with pytest.raises(ValueError, match='targets must have the shape'):
        rank_sort_loss(logits, targets[:3])
    with pytest.raises(ValueError, match='delta must be a finite number'):
        rank_sort_loss(logits, targets, delta=math.inf)
    with pytest.raises(ValueError, match='delta must be > 0'):
        rank_sort_loss(logits, targets, delta=0.0)


# ------------------------------------------------------------------------ aLRP loss
def _alrp(logits, labels, weights, loc, **kw):
    x = logits.clone().requires_grad_(True)
    lx = loc.clone().requires_grad_(True)
    cls, loc_loss = alrp_loss(x, labels, lx, weights, **kw)
    (cls + loc_loss).backward()
    return cls, loc_loss, x.grad, lx.grad


@pytest.mark.parametrize('cpu_kernel', [False, True], ids=['torch', 'C'])
@pytest.mark.parametrize('seed', range(5))
@pytest.mark.parametrize('decimals', [None, 0], ids=['random', 'ties'])
def test_alrp_classification_matches_the_reference(seed, decimals, cpu_kernel):
    logits, labels, weights, loc = _alrp_case(14, 4, seed, decimals=decimals)
    cls, loc_loss, grad, _ = _alrp(logits, labels, weights, loc, cpu_kernel=cpu_kernel)
    fg = (labels < 4) & (weights > 0)
    ref_cls, ref_loc, ref_grad = slow_alrp(logits, _flat_alrp_targets(labels, weights, 4),
                                           loc[fg])
    assert cls.item() == pytest.approx(ref_cls.item(), abs=1e-12)
    torch.testing.assert_close(grad.reshape(-1), ref_grad, atol=1e-12, rtol=0)
    if decimals is None:  # distinct scores: the reference's localisation term exactly
        assert loc_loss.item() == pytest.approx(ref_loc.item(), abs=1e-12)


def test_alrp_localisation_ties_average_the_orders():
    # two positives tied at score 0, losses 0.2 and 0.6, no negative: rank = 1 + 1/2
    # each. The reference's cumsum gives (0.2 + 0.8) / 1.5 / 2 or (0.6 + 0.8) / 1.5 / 2
    # depending on the order; ties count 1/2: ((0.2 + 0.3) + (0.6 + 0.1)) / 1.5 / 2 = 0.4
    logits = torch.zeros(2, 1, dtype=D)
    labels = torch.tensor([0, 0])
    loc = torch.tensor([0.2, 0.6], dtype=D)
    cls, loc_loss, _, loc_grad = _alrp(logits, labels, None, loc)
    assert loc_loss.item() == pytest.approx(0.4, abs=1e-15)
    assert cls.item() == pytest.approx(0.0, abs=1e-15)
    # d/dl_k: (1 / rank_k + 1/2 / rank_i) / 2 = (2/3 + 1/3) / 2 = 1/2
    torch.testing.assert_close(loc_grad, torch.tensor([0.5, 0.5], dtype=D), atol=1e-15,
                               rtol=0)


def test_alrp_localisation_gradient_is_its_derivative():
    logits, labels, weights, loc = _alrp_case(12, 3, 5)
    fn = lambda lx: alrp_loss(logits, labels, lx, weights)[1]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (loc.clone().requires_grad_(True),))


def test_alrp_no_positive_nan_and_bad_input():
    logits, labels, weights, loc = _alrp_case(8, 3, 2)
    cls, loc_loss, grad, loc_grad = _alrp(logits, torch.full_like(labels, 3), weights, loc)
    assert cls.item() == 0.0 and loc_loss.item() == 0.0
    assert torch.equal(grad, torch.zeros_like(grad))
    assert torch.equal(loc_grad, torch.zeros_like(loc_grad))
    bad = loc.clone()
    bad[0] = math.nan  # a positive's localisation loss
    assert all(math.isnan(v.item()) for v in alrp_loss(logits, labels, bad, weights))
    with pytest.raises(ValueError, match='loc_losses must have shape'):
        alrp_loss(logits, labels, loc[:3], weights)
    with pytest.raises(ValueError, match='labels must lie'):
        alrp_loss(logits, labels + 5, loc, weights)


# ------------------------------------------------------------ operators and compile
def test_operators_pass_opcheck():
    logits, targets = _rs_case(10, 3, 1)
    torch.library.opcheck(torch.ops.detloss.rank_sort_loss.default,
                          (logits.clone().requires_grad_(True), targets, 0.5, 0))
    logits, labels, weights, loc = _alrp_case(10, 3, 1)
    torch.library.opcheck(torch.ops.detloss.alrp_loss.default,
                          (logits.clone().requires_grad_(True), labels, weights > 0,
                           loc.clone().requires_grad_(True), 1.0, 0))


def test_double_backward_is_refused():
    logits, targets = _rs_case(10, 3, 1)
    x = logits.clone().requires_grad_(True)
    with pytest.raises(RuntimeError, match='Rank & Sort loss is not twice differentiable'):
        torch.autograd.grad(sum(rank_sort_loss(x, targets)), x, create_graph=True)
