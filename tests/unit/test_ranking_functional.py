"""AP-loss and DR loss, functional core and registered modules (pure torch, no mmdet).

AP-loss: value and update against a slow, loop-by-loop transcription of the paper's
Algorithm 1 (with the interpolated precision of the TPAMI version and the reference
code), on small random cases with ties, a single positive, no positive and ignored
anchors. DR loss: value and gradient against a direct transcription of the paper's
formulas, and gradcheck."""
import math

import pytest
import torch
import torch.nn.functional as TF

from detloss_plugin.functional import ranking as R
from detloss_plugin.functional import ranking_core
from detloss_plugin.models.losses import APLoss, DRLoss

D = torch.float64


def _case(n, c, seed, scale=2.0, decimals=None, p_bg=0.6, p_ignored=0.15, dtype=D):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=dtype) * scale
    if decimals is not None:  # coarse rounding makes many exact ties
        logits = logits.round(decimals=decimals)
    labels = torch.randint(0, c, (n,), generator=g)
    labels[torch.rand(n, generator=g) < p_bg] = c
    weights = (torch.rand(n, generator=g) >= p_ignored).to(dtype)
    return logits, labels, weights


# --------------------------------------------------------------- AP-loss slow reference
def _step(x, delta):
    """The paper's piecewise-linear step H(x)."""
    return min(max(x / (2 * delta) + 0.5, 0.0), 1.0)


def slow_ap_loss(logits, labels, weights, delta=1.0, norm=None):
    """Algorithm 1, one positive and one entry at a time, in Python floats.

    Returns (loss, update) with update a list of lists like logits."""
    n, c = logits.shape
    s = logits.tolist()
    pos, neg = [], []
    for r in range(n):
        if weights is not None and float(weights[r]) <= 0:
            continue  # ignored anchor: neither positive nor negative
        for col in range(c):
            (pos if int(labels[r]) == col else neg).append((r, col))
    update = [[0.0] * c for _ in range(n)]
    if norm is None:
        norm = max(len(pos), 1)
    if not pos:
        return 0.0, update
    # precision of every positive: rank among positives / rank among all entries
    prec = {}
    for i in pos:
        si = s[i[0]][i[1]]
        rank_pos = 1.0 + sum(_step(s[k[0]][k[1]] - si, delta) for k in pos if k != i)
        rank_all = rank_pos + sum(_step(s[j[0]][j[1]] - si, delta) for j in neg)
        prec[i] = rank_pos / rank_all
    loss = 0.0
    for i in pos:
        si = s[i[0]][i[1]]
        # interpolated precision: the best precision among positives scored <= s_i
        p_int = max(prec[k] for k in pos if s[k[0]][k[1]] <= si)
        loss += (1.0 - p_int) / norm
        rank_pos = 1.0 + sum(_step(s[k[0]][k[1]] - si, delta) for k in pos if k != i)
        rank_all = rank_pos + sum(_step(s[j[0]][j[1]] - si, delta) for j in neg)
        # L_ij = H(x_ij) / rank(i), rescaled so that row i sums to 1 - p_int
        scale = 1.0 if prec[i] >= p_int else (1.0 - p_int) / (1.0 - prec[i])
        for j in neg:
            l_ij = _step(s[j[0]][j[1]] - si, delta) / rank_all * scale
            update[j[0]][j[1]] += l_ij / norm       # negatives: + sum_i L_ij
        update[i[0]][i[1]] -= (1.0 - p_int) / norm  # positive: - sum_j L_ij
    return loss, update


def _ap(logits, labels, weights, **kw):
    x = logits.clone().requires_grad_(True)
    loss = R.ap_loss(x, labels, weights, **kw)
    loss.backward()
    return loss, x.grad


@pytest.mark.parametrize('cpu_kernel', [False, True], ids=['torch', 'C'])
@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('decimals', [None, 0])
def test_ap_loss_matches_algorithm_1(seed, decimals, cpu_kernel):
    logits, labels, weights = _case(9, 4, seed, decimals=decimals)
    loss, grad = _ap(logits, labels, weights, cpu_kernel=cpu_kernel)
    ref_loss, ref_update = slow_ap_loss(logits, labels, weights)
    assert loss.item() == pytest.approx(ref_loss, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor(ref_update, dtype=D), atol=1e-12, rtol=0)


@pytest.mark.parametrize('cpu_kernel', [False, True], ids=['torch', 'C'])
def test_ap_loss_ties_everywhere(cpu_kernel):
    # every score equal: H = 1/2 for every pair. One image, 3 anchors x 2 classes,
    # positives (0, 0) and (1, 1), 4 negatives: rank_pos = 1 + 1/2, rank_all = 1.5 + 2
    # = 3.5, precision 3/7 for both, loss 1 - 3/7 = 4/7; each L_ij = 0.5 / 3.5 = 1/7,
    # a negative gets 2 * (1/7) / 2 = 1/7, a positive -(4/7) / 2 = -2/7.
    logits = torch.zeros(3, 2, dtype=D)
    labels = torch.tensor([0, 1, 2])
    loss, grad = _ap(logits, labels, None, cpu_kernel=cpu_kernel)
    assert loss.item() == pytest.approx(4 / 7, abs=1e-14)
    expected = torch.tensor([[-2 / 7, 1 / 7], [1 / 7, -2 / 7], [1 / 7, 1 / 7]], dtype=D)
    torch.testing.assert_close(grad, expected, atol=1e-14, rtol=0)


def test_ap_loss_single_positive():
    # one positive at 0; negatives at 2 (H = 1), 0.5 (H = 0.75), -3 (H = 0):
    # rank = 1 + 1.75 = 2.75, precision 1/2.75, loss 1.75/2.75
    logits = torch.tensor([[0.0, 2.0], [0.5, -3.0]], dtype=D)
    labels = torch.tensor([0, 2])
    loss, grad = _ap(logits, labels, None)
    assert loss.item() == pytest.approx(1.75 / 2.75, abs=1e-14)
    expected = torch.tensor([[-1.75 / 2.75, 1 / 2.75], [0.75 / 2.75, 0.0]], dtype=D)
    torch.testing.assert_close(grad, expected, atol=1e-14, rtol=0)


@pytest.mark.parametrize('cpu_kernel', [False, True], ids=['torch', 'C'])
def test_ap_loss_no_positive_and_all_ignored(cpu_kernel):
    logits, labels, weights = _case(7, 3, 0)
    for lab, w in ((torch.full_like(labels, 3), weights), (labels, torch.zeros_like(weights))):
        loss, grad = _ap(logits, lab, w, cpu_kernel=cpu_kernel)
        assert loss.item() == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))
    loss, grad = _ap(torch.zeros(0, 3, dtype=D), torch.zeros(0, dtype=torch.long), None)
    assert loss.item() == 0.0 and grad.shape == (0, 3)


def test_ap_loss_ignored_anchor_gets_no_update_and_changes_nothing():
    logits, labels, weights = _case(10, 3, 4)
    weights[:] = 1
    weights[2] = 0
    loss, grad = _ap(logits, labels, weights)
    keep = torch.arange(10) != 2
    loss_k, grad_k = _ap(logits[keep], labels[keep], None)
    assert grad[2].abs().max().item() == 0.0
    assert loss.item() == pytest.approx(loss_k.item(), abs=1e-14)
    torch.testing.assert_close(grad[keep], grad_k, atol=1e-14, rtol=0)


def test_ap_loss_far_negatives_skipped_exactly():
    # the reference drops negatives below min(positive) - delta: they must get 0 and not
    # change anything else
    logits, labels, weights = _case(12, 3, 5)
    far = logits.clone()
    far[labels == 3] -= 50.0  # background anchors far below every positive
    loss, grad = _ap(far, labels, weights)
    ref_loss, ref_update = slow_ap_loss(far, labels, weights)
    assert loss.item() == pytest.approx(ref_loss, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor(ref_update, dtype=D), atol=1e-12, rtol=0)
    assert grad[labels == 3].abs().max().item() == 0.0


@pytest.mark.parametrize('delta', [0.25, 3.0])
def test_ap_loss_delta_and_avg_factor(delta):
    logits, labels, weights = _case(8, 3, 7)
    loss, grad = _ap(logits, labels, weights, delta=delta, avg_factor=2.5)
    ref_loss, ref_update = slow_ap_loss(logits, labels, weights, delta=delta, norm=2.5)
    assert loss.item() == pytest.approx(ref_loss, abs=1e-12)
    torch.testing.assert_close(grad, torch.tensor(ref_update, dtype=D), atol=1e-12, rtol=0)
    # avg_factor = number of positives is the default normalisation again
    num_pos = int(((labels < 3) & (weights > 0)).sum())
    l1, g1 = _ap(logits, labels, weights, delta=delta)
    l2, g2 = _ap(logits, labels, weights, delta=delta, avg_factor=torch.tensor(num_pos))
    assert l1.item() == pytest.approx(l2.item(), abs=1e-14)
    torch.testing.assert_close(g1, g2, atol=1e-14, rtol=0)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_ap_loss_c_kernel_equals_torch_path(dtype):
    # a larger case, many entries per interval, far negatives (the kernel's shortcut)
    logits, labels, weights = _case(3000, 7, 11, scale=2.5, dtype=dtype)
    logits[:500] -= 20.0
    l_t, g_t = _ap(logits, labels, weights, cpu_kernel=False)
    l_c, g_c = _ap(logits, labels, weights, cpu_kernel=True)
    assert l_c.item() == pytest.approx(l_t.item(), rel=1e-12)
    tol = 1e-7 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(g_c, g_t, atol=tol * g_t.abs().max().item(), rtol=0)


def test_ap_loss_chunks_give_the_same_result(monkeypatch):
    logits, labels, weights = _case(40, 5, 9)
    whole = _ap(logits, labels, weights, cpu_kernel=False)
    monkeypatch.setattr(ranking_core, 'CHUNK_ELEMENTS', 7)  # 1 row per chunk
    chunked = _ap(logits, labels, weights, cpu_kernel=False)
    assert whole[0].item() == chunked[0].item()
    torch.testing.assert_close(whole[1], chunked[1], atol=1e-15, rtol=0)


def test_ap_loss_backward_scales_with_upstream_gradient():
    logits, labels, weights = _case(8, 3, 2)
    _, grad = _ap(logits, labels, weights)
    x = logits.clone().requires_grad_(True)
    (3.0 * R.ap_loss(x, labels, weights)).backward()
    torch.testing.assert_close(x.grad, 3.0 * grad, atol=1e-14, rtol=0)


def test_ap_loss_float32_and_half_are_finite_and_close():
    logits, labels, weights = _case(30, 4, 3, scale=3.0)
    ref_loss, ref_grad = _ap(logits, labels, weights)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float16, 2e-3)):
        x = logits.to(dtype).requires_grad_(True)
        loss = R.ap_loss(x, labels, weights)
        loss.backward()
        assert loss.dtype == torch.float32 and x.grad.dtype == dtype
        assert torch.isfinite(x.grad).all()
        assert loss.item() == pytest.approx(ref_loss.item(), abs=tol * 10)
        torch.testing.assert_close(x.grad.double(), ref_grad, atol=tol * 10, rtol=0)
    # extreme logits in float16: no NaN / Inf
    x = torch.tensor([[60000.0, -60000.0], [-60000.0, 60000.0]], dtype=torch.float16,
                     requires_grad=True)
    R.ap_loss(x, torch.tensor([0, 2])).backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------- DR loss
def direct_dr_loss(logits, labels, weights, pos_lambda=1.0, neg_lambda=0.1 / math.log(3.5),
                   L=6.0, tau=4.0, margin=0.5):
    """The paper's formulas with the reference's label convention translated: the
    reference's targets are labels + 1 for foreground, 0 for background, -1 ignored."""
    n, c = logits.shape
    t = torch.where(labels < c, labels + 1, torch.zeros_like(labels))
    if weights is not None:
        t = torch.where(weights > 0, t, torch.full_like(t, -1))
    cls = torch.arange(1, c + 1).unsqueeze(0)
    pos_mask = t.unsqueeze(1) == cls
    neg_mask = (t.unsqueeze(1) != cls) & (t.unsqueeze(1) >= 0)
    p_pos = torch.sigmoid(logits[pos_mask])
    p_neg = torch.sigmoid(logits[neg_mask])
    q_neg = torch.exp(p_neg / neg_lambda) / torch.exp(p_neg / neg_lambda).sum()
    neg_dist = (q_neg * p_neg).sum()
    if p_pos.numel():
        q_pos = torch.exp(-p_pos / pos_lambda) / torch.exp(-p_pos / pos_lambda).sum()
        pos_dist = (q_pos * p_pos).sum()
    else:
        pos_dist = 1.0
    return tau / L * torch.log(1 + torch.exp(L * (neg_dist - pos_dist + margin)))


@pytest.mark.parametrize('seed', range(4))
def test_dr_loss_matches_formulas(seed):
    logits, labels, weights = _case(12, 4, seed)
    x1 = logits.clone().requires_grad_(True)
    x2 = logits.clone().requires_grad_(True)
    ours = R.dr_loss(x1, labels, weights)
    ref = direct_dr_loss(x2, labels, weights)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), abs=1e-13)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-13, rtol=0)
    assert x1.grad[weights == 0].abs().max().item() == 0.0


def test_dr_loss_hand_value():
    # every probability 1/2: both distributions average to 1/2, so the loss is
    # tau / L * ln(1 + e^(L * margin)) = 4/6 * ln(1 + e^3) = 2.0324...
    loss = R.dr_loss(torch.zeros(3, 2, dtype=D), torch.tensor([0, 2, 1]))
    assert loss.item() == pytest.approx(4 / 6 * math.log1p(math.exp(3.0)), abs=1e-14)


def test_dr_loss_no_positive_no_negative_all_ignored():
    logits, labels, weights = _case(6, 3, 1)
    bg = torch.full_like(labels, 3)
    ours = R.dr_loss(logits, bg, weights)
    assert ours.item() == pytest.approx(direct_dr_loss(logits, bg, weights).item(), abs=1e-13)
    # one class, every anchor positive: no negative, neg_dist = 0
    one = torch.zeros(4, dtype=torch.long)
    x = torch.randn(4, 1, dtype=D)
    assert R.dr_loss(x, one).item() == pytest.approx(_no_neg(x), abs=1e-13)
    # every anchor ignored: pos_dist = 1, neg_dist = 0, zero gradient, no NaN
    x = logits.clone().requires_grad_(True)
    loss = R.dr_loss(x, labels, torch.zeros_like(weights))
    loss.backward()
    assert loss.item() == pytest.approx(4 / 6 * math.log1p(math.exp(6 * (0 - 1 + 0.5))),
                                        abs=1e-14)
    assert torch.equal(x.grad, torch.zeros_like(x.grad))


def _no_neg(x):
    """DR loss with every entry positive: softmax(-p) average, neg_dist = 0."""
    p = torch.sigmoid(x.reshape(-1))
    q = torch.softmax(-p, 0)
    return (4 / 6 * TF.softplus(6 * (0 - (q * p).sum() + 0.5))).item()


def test_dr_loss_gradcheck():
    logits, labels, weights = _case(6, 3, 2)
    x = logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: R.dr_loss(v, labels, weights), (x,))
    assert torch.autograd.gradcheck(
        lambda v: R.dr_loss(v, labels, weights, pos_lambda=0.5, neg_lambda=0.2, L=3.0,
                            tau=2.0, margin=0.3, avg_factor=4.0), (x,))


def test_dr_loss_half_and_extreme_logits_finite():
    logits, labels, weights = _case(20, 4, 5)
    ref = R.dr_loss(logits, labels, weights)
    x = logits.half().requires_grad_(True)
    loss = R.dr_loss(x, labels, weights)
    loss.backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == torch.float16
    assert loss.item() == pytest.approx(ref.item(), abs=5e-3)
    x = torch.tensor([[100.0, -100.0], [-100.0, 100.0]], requires_grad=True)
    loss = R.dr_loss(x, torch.tensor([0, 2]), neg_lambda=1e-3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('fn', [R.ap_loss, R.dr_loss])
def test_bad_input_names_the_argument(fn):
    x = torch.randn(5, 3)
    labels = torch.tensor([0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match='cls_score'):
        fn(torch.randn(5), labels)
    with pytest.raises(ValueError, match='labels must have shape'):
        fn(x, labels[:4])
    with pytest.raises(TypeError, match='labels must be an integer'):
        fn(x, labels.float())
    with pytest.raises(TypeError, match='labels must be an integer'):
        fn(x, labels.bool())
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\].*\[0, 4\]'):
        fn(x, torch.tensor([0, 1, 2, 4, 3]))
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\].*\[-1, 3\]'):
        fn(x, torch.tensor([0, 1, -1, 3, 3]))
    with pytest.raises(ValueError, match='label_weights must have shape'):
        fn(x, labels, torch.ones(5, 3))
    with pytest.raises(ValueError, match='avg_factor'):
        fn(x, labels, avg_factor=0)
    with pytest.raises(TypeError, match='cls_score'):
        fn(torch.zeros(5, 3, dtype=torch.long), labels)


def test_bad_options():
    x, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match='delta'):
        R.ap_loss(x, labels, delta=0.0)
    with pytest.raises(ValueError, match='neg_lambda'):
        R.dr_loss(x, labels, neg_lambda=-1.0)
    with pytest.raises(ValueError, match='delta'):
        APLoss(delta=-1.0)
    with pytest.raises(ValueError, match='tau'):
        DRLoss(tau=0.0)
    with pytest.raises(ValueError, match='use_sigmoid must be True'):
        APLoss(use_sigmoid=False)
    for module in (APLoss().attach('test'), DRLoss().attach('test')):
        with pytest.raises(ValueError, match='reduction_override must be None'):
            module(x, labels, reduction_override='none')
        with pytest.raises(TypeError, match='unexpected arguments'):
            module(x, labels, weight=torch.ones(5))
        assert module(x, labels, reduction_override='sum').item() == \
            module(x, labels).item()


# --------------------------------------------------------------------------- modules
def test_modules_equal_functions_times_weight():
    logits, labels, weights = _case(10, 3, 6)
    x1 = logits.clone().requires_grad_(True)
    x2 = logits.clone().requires_grad_(True)
    module = APLoss(delta=0.5, loss_weight=2.0).attach('test')
    module(x1, labels, weights, avg_factor=3.0).backward()
    (2.0 * R.ap_loss(x2, labels, weights, delta=0.5, avg_factor=3.0)).backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-15, rtol=0)
    assert DRLoss(margin=0.2, loss_weight=0.5).attach('test')(logits, labels, weights).item() == \
        pytest.approx(0.5 * R.dr_loss(logits, labels, weights, margin=0.2).item(), abs=1e-15)


def test_registered_by_name():
    from detloss_plugin.registry import MODELS
    ap = MODELS.build(dict(type='detloss_plugin.APLoss', delta=2.0))
    dr = MODELS.build(dict(type='detloss_plugin.DRLoss', L=3.0))
    assert isinstance(ap, APLoss) and ap.delta == 2.0
    assert isinstance(dr, DRLoss) and dr.L == 3.0


# ----------------------------------------------------------------- host synchronisation
_SYNC_OPS = ('aten::item', 'aten::_local_scalar_dense', 'aten::nonzero', 'aten::is_nonzero',
             'aten::masked_select')


@pytest.mark.parametrize('fn', ['ap', 'dr'])
def test_portable_paths_have_no_host_synchronisation(monkeypatch, fn):
    """The torch code that accelerators run reads no tensor value on the host (the label
    range check, a device-side assert there, is left out: on the CPU it reads min/max)."""
    from torch.profiler import profile
    monkeypatch.setattr(R, 'check_ranking_values', lambda *args: None)
    logits, labels, weights = _case(50, 4, 3, dtype=torch.float32)
    x = logits.clone().requires_grad_(True)
    with profile() as prof:
        if fn == 'ap':
            loss = R.ap_loss(x, labels, weights, cpu_kernel=False)
        else:
            loss = R.dr_loss(x, labels, weights)
        loss.backward()
    names = {e.key for e in prof.key_averages()}
    assert not names & set(_SYNC_OPS), names & set(_SYNC_OPS)
    assert 'aten::searchsorted' in names or fn == 'dr'  # the profile did record ops


@pytest.mark.parametrize('fn', ['ap', 'dr'])
def test_on_device_equals_cpu_without_host_sync(fn, device, monkeypatch):
    """On every device (conftest's ``device``): the result equals the CPU's float64 one,
    and a forward + backward makes the host wait for nothing (CUDA: sync debug mode;
    CPU: the portable path, whose label check is the device assert's job on a GPU)."""
    from device_utils import no_host_sync
    logits, labels, weights = _case(200, 5, 8, dtype=torch.float32)
    call = (lambda x, l, w, **kw: R.ap_loss(x, l, w, cpu_kernel=False, **kw)) if fn == 'ap' \
        else R.dr_loss
    ref_x = logits.double().requires_grad_(True)
    call(ref_x, labels, weights, avg_factor=7.0).backward()
    if device.type == 'cpu':
        monkeypatch.setattr(R, 'check_ranking_values', lambda *args: None)
    x = logits.to(device).requires_grad_(True)
    lab, w = labels.to(device), weights.to(device)
    avg = torch.tensor(7.0, device=device)
    call(x, lab, w).backward()  # warm-up
    x.grad = None
    with no_host_sync(device):
        loss = call(x, lab, w, avg_factor=7.0)
        loss.backward()
        call(x.detach().clone().requires_grad_(True), lab, w, avg_factor=avg).backward()
    assert loss.device.type == device.type
    torch.testing.assert_close(x.grad.cpu().double(), ref_x.grad, atol=1e-6, rtol=1e-4)
