"""The fast paths compute the same functions as the plain paths.

- IoU-family losses: ``fast=True`` (fused value + analytic gradient,
  ``functional/_fused_iou.py``), in both its implementations (the compiled CPU kernel
  ``csrc/iou_family.c`` and the torch one that GPUs and float64 use), against
  ``fast=False`` (plain autograd over ``functional/box_geometry.py``), in value and in
  the gradient w.r.t. both boxes, in float64, float32 and half precision, on random and
  degenerate boxes; gradcheck of the torch implementation in float64.
- DIoU-NMS: the vectorised C kernel against the portable torch path.
"""
import functools
import math

import pytest
import torch

from detloss_plugin.functional import _fused_iou
from detloss_plugin.functional import iou_losses as IL
from detloss_plugin.functional.nms import diou_nms

# name -> (function, kwargs); every configuration the fast path implements.
LOSSES = {
    'iou_linear': (IL.iou_loss, dict(mode='linear')),
    'iou_log': (IL.iou_loss, dict(mode='log')),
    'giou': (IL.giou_loss, {}),
    'diou': (IL.diou_loss, {}),
    'ciou': (IL.ciou_loss, {}),
    'ciou_gate': (IL.ciou_loss, dict(alpha_gate=True)),
    'ciou_authors': (IL.ciou_loss, dict(authors_gradient=True)),
    'ciou_gate_authors': (IL.ciou_loss, dict(alpha_gate=True, authors_gradient=True)),
    'eiou': (IL.eiou_loss, {}),
    'focal_eiou': (IL.focal_eiou_loss, {}),
    'focal_eiou_gamma1': (IL.focal_eiou_loss, dict(gamma=1.0)),
    'focal_eiou_gamma0': (IL.focal_eiou_loss, dict(gamma=0.0)),
    'focal_eiou_gamma07': (IL.focal_eiou_loss, dict(gamma=0.7)),   # a generic power
    'focal_eiou_detached': (IL.focal_eiou_loss, dict(detach_weight=True)),
}
# The authors' CIoU gradient and the detached focal weight are not the derivative of
# the value, so finite differences cannot check them (they are checked against the
# plain path, which defines them).
TRUE_GRADIENT = [k for k in LOSSES if k not in ('ciou_authors', 'ciou_gate_authors',
                                                 'focal_eiou_detached')]


def loss_fn(name, fast):
    fn, kwargs = LOSSES[name]
    return functools.partial(fn, fast=fast, **kwargs)


@pytest.fixture(params=['kernel', 'torch'])
def impl(request, monkeypatch):
    """Which implementation ``fast=True`` runs: the compiled CPU kernel (float32 and
    half) or the torch one (what GPUs, float64 and machines without a compiler use)."""
    monkeypatch.setattr(_fused_iou, 'CPU_KERNEL', request.param == 'kernel')
    return request.param


def test_kernel_builds_here():
    # the CI machine has a C compiler: the kernel must be what runs by default
    assert _fused_iou.load_iou_kernel() is not None
    pred = random_boxes(4, seed=0, dtype=torch.float32).requires_grad_()
    loss = IL.ciou_loss(pred, random_boxes(4, seed=1, dtype=torch.float32))
    assert type(loss.grad_fn).__name__ == '_FusedIoUFamilyBackward'
    assert loss.grad_fn.kernel is not None


def random_boxes(n, seed, dtype=torch.float64, size=20.0, max_wh=10.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * max_wh + 0.1
    return torch.cat([xy, xy + wh], 1).to(dtype)


def degenerate_pairs(dtype):
    """Pairs at every kink of the losses: ties of edges, touching boxes, zero areas,
    nesting, no overlap, zero targets (RetinaNet's negatives), large coordinates."""
    rows = [
        ([1, 2, 4, 6], [1, 2, 4, 6]),          # identical: every edge ties
        ([0, 0, 10, 10], [2, 3, 5, 7]),        # target inside pred
        ([2, 3, 5, 7], [0, 0, 10, 10]),        # pred inside target
        ([0, 0, 2, 2], [0, 0, 3, 1]),          # shared left and bottom edges
        ([0, 0, 1, 1], [1, 0, 2, 1]),          # touching: intersection width exactly 0
        ([0, 0, 1, 1], [1, 1, 2, 2]),          # touching at a corner
        ([3, 3, 3, 3], [1, 1, 5, 5]),          # zero-area pred inside the target
        ([2, 2, 2, 5], [1, 1, 5, 5]),          # zero-width pred
        ([1, 1, 1, 1], [1, 1, 1, 1]),          # two identical points
        ([0, 0, 1, 1], [1000, 1000, 1001, 1003]),  # far apart
        ([5, 5, 9, 8], [0, 0, 0, 0]),          # zero target
        ([0, 0, 0, 0], [0, 0, 0, 0]),          # all zero
        ([0, 0, 3, 0], [0, 0, 3, 2]),          # zero-height pred on the target's edge
        ([1000.5, 2000.25, 1100, 2050], [1010, 2001, 1090, 2060]),  # large coordinates
    ]
    pred = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    target = torch.tensor([r[1] for r in rows], dtype=torch.float64)
    return pred.to(dtype), target.to(dtype)


def value_and_grads(fn, pred, target, weight):
    pred = pred.detach().clone().requires_grad_()
    target = target.detach().clone().requires_grad_()
    loss = fn(pred, target)
    gp, gt = torch.autograd.grad((loss.float() * weight).sum(), (pred, target))
    return loss.detach(), gp, gt


TOLERANCES = {torch.float64: dict(rtol=1e-9, atol=1e-9),
              torch.float32: dict(rtol=2e-4, atol=2e-5),
              torch.float16: dict(rtol=1e-2, atol=1e-3),
              torch.bfloat16: dict(rtol=2e-2, atol=1e-2)}


def assert_same(fast, plain, dtype):
    for a, b, what in zip(fast, plain, ('value', 'grad pred', 'grad target')):
        assert a.dtype == b.dtype == dtype, what
        assert torch.isfinite(a).all(), f'{what} not finite'
        torch.testing.assert_close(a, b, **TOLERANCES[dtype], msg=lambda m: f'{what}: {m}')


@pytest.mark.parametrize('name', list(LOSSES))
def test_fast_equals_plain_random_float64(name):
    check_random(name, torch.float64)


@pytest.mark.parametrize('name', list(LOSSES))
def test_fast_equals_plain_random_float32(name, impl):
    check_random(name, torch.float32)


def check_random(name, dtype):
    pred, target = random_boxes(257, seed=1, dtype=dtype), random_boxes(257, seed=2, dtype=dtype)
    # pull half of the predictions onto their targets so the IoU covers (0, 1]
    pred[::2] = target[::2] + 0.3 * (pred[::2] - target[::2])
    weight = torch.rand(257, generator=torch.Generator().manual_seed(3))
    assert_same(value_and_grads(loss_fn(name, True), pred, target, weight),
                value_and_grads(loss_fn(name, False), pred, target, weight), dtype)


@pytest.mark.parametrize('name', list(LOSSES))
def test_fast_equals_plain_degenerate_float64(name):
    check_degenerate(name, torch.float64)


@pytest.mark.parametrize('name', list(LOSSES))
def test_fast_equals_plain_degenerate_float32(name, impl):
    check_degenerate(name, torch.float32)


def check_degenerate(name, dtype):
    pred, target = degenerate_pairs(dtype)
    weight = torch.linspace(0.5, 2.0, pred.shape[0])
    fast = value_and_grads(loss_fn(name, True), pred, target, weight)
    plain = value_and_grads(loss_fn(name, False), pred, target, weight)
    if dtype == torch.float32:
        # gradients of order 1/eps (zero-height boxes in CIoU) are compared relatively
        scale = plain[1].abs().amax(1, keepdim=True).clamp(min=1)
        fast = (fast[0], fast[1] / scale, fast[2] / scale)
        plain = (plain[0], plain[1] / scale, plain[2] / scale)
    assert_same(fast, plain, dtype)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('name', ['iou_log', 'giou', 'ciou_gate', 'eiou', 'focal_eiou'])
def test_fast_equals_plain_half_precision(name, dtype, impl):
    pred = random_boxes(64, seed=4, size=50.0, max_wh=30.0)
    target = pred + torch.randn(64, 4, generator=torch.Generator().manual_seed(5),
                                dtype=torch.float64)
    pred, target = pred.to(dtype), target.to(dtype)
    weight = torch.rand(64, generator=torch.Generator().manual_seed(6))
    assert_same(value_and_grads(loss_fn(name, True), pred, target, weight),
                value_and_grads(loss_fn(name, False), pred, target, weight), dtype)


def ciou_alpha_and_v(pred, target, gate, eps=1e-7):
    """CIoU's trade-off weight alpha (no gradient) and aspect term v, transcribed."""
    pw, ph = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    tw, th = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    v = 4 / math.pi ** 2 * (torch.atan(tw / (th + eps)) - torch.atan(pw / (ph + eps))) ** 2
    with torch.no_grad():
        iw = (torch.minimum(pred[:, 2], target[:, 2])
              - torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
        ih = (torch.minimum(pred[:, 3], target[:, 3])
              - torch.maximum(pred[:, 1], target[:, 1])).clamp(min=0)
        iou = iw * ih / (pw * ph + tw * th - iw * ih + eps)
        alpha = v / (1 - iou + v + eps) * ((iou > 0.5) if gate else 1)
    return alpha, v


@pytest.mark.parametrize('name', TRUE_GRADIENT)
def test_fast_path_gradcheck(name):
    # random boxes keep away from the kinks, where finite differences are meaningless
    pred = random_boxes(6, seed=7).requires_grad_()
    target = (random_boxes(6, seed=7) + 0.7 * torch.rand(
        6, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64)).requires_grad_()
    fn = loss_fn(name, True)
    if name.startswith('ciou'):
        # CIoU's gradient treats alpha as a constant: it is the derivative of
        # L(p) - (alpha(p) - alpha(p0)) v(p) at p0, whose correction term has zero
        # analytic gradient at p0 (alpha has none, and alpha(p0) - alpha(p0) = 0).
        gate = 'gate' in name
        alpha0 = ciou_alpha_and_v(pred, target, gate)[0]

        def fn(p, t, base=fn):
            alpha, v = ciou_alpha_and_v(p, t, gate)
            return base(p, t) - (alpha - alpha0) * v
    assert torch.autograd.gradcheck(fn, (pred, target), eps=1e-6, atol=1e-7)


def test_authors_ciou_gradient_by_hand():
    # With alpha constant, d(alpha v)/dw = -alpha (8/pi^2) (atan(w_gt/h_gt) - atan(w/h))
    # * d atan(w/h)/dw. The authors replace d atan(w/h)/dw = h/(w^2 + h^2) by h and
    # d/dh = -w/(w^2 + h^2) by -w. Pred [0,0,2,1] (w 2, h 1) and target [0,0,1,2]:
    # the only difference between the two gradients is that factor 1/(w^2+h^2) = 1/5
    # on the aspect part, which is isolated by subtracting the DIoU gradient.
    pred = torch.tensor([[0., 0., 2., 1.]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0., 0., 1., 2.]], dtype=torch.float64)
    diou_grad = torch.autograd.grad(IL.diou_loss(pred, target).sum(), pred)[0]
    true = torch.autograd.grad(IL.ciou_loss(pred, target).sum(), pred)[0] - diou_grad
    authors = torch.autograd.grad(
        IL.ciou_loss(pred, target, authors_gradient=True).sum(), pred)[0] - diou_grad
    torch.testing.assert_close(authors, true * 5, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize('name', ['iou_log', 'giou', 'ciou', 'ciou_authors', 'eiou',
                                  'focal_eiou', 'focal_eiou_gamma1'])
def test_kernel_float32_close_to_float64_reference(name):
    # Against the plain path in float64, the kernel in float32 is as accurate as the
    # plain path in float32 (errors at most twice as large, plus a few ulp).
    pred, target = random_boxes(300, seed=21), random_boxes(300, seed=22)
    pred[::2] = target[::2] + 0.3 * (pred[::2] - target[::2])
    weight = torch.rand(300, generator=torch.Generator().manual_seed(23))
    ref = value_and_grads(loss_fn(name, False), pred, target, weight)
    got = value_and_grads(loss_fn(name, True), pred.float(), target.float(), weight)
    plain32 = value_and_grads(loss_fn(name, False), pred.float(), target.float(), weight)
    for a, p, r in zip(got, plain32, ref):
        err_kernel = (a.double() - r).abs()
        err_plain = (p.double() - r).abs()
        assert (err_kernel <= 2 * err_plain + 1e-6 * (r.abs() + 1)).all()
        assert err_kernel.max() < 1e-3 * (r.abs().max() + 1)


def test_kernel_unavailable_falls_back_to_torch(monkeypatch, tmp_path):
    # no C compiler: a warning, then the torch implementation (same values)
    from detloss_plugin.functional import _kernels
    monkeypatch.setattr(_fused_iou.IOU_KERNEL, '_bound', None)
    monkeypatch.setattr(_fused_iou.IOU_KERNEL, '_failed', False)
    monkeypatch.setattr(_kernels, '_compiler', lambda: None)
    monkeypatch.setenv('DETLOSS_CACHE_DIR', str(tmp_path))
    pred = random_boxes(8, seed=24, dtype=torch.float32).requires_grad_()
    target = random_boxes(8, seed=25, dtype=torch.float32)
    with pytest.warns(UserWarning, match='C IoU-loss kernel is unavailable'):
        loss = IL.diou_loss(pred, target)
    assert _fused_iou.load_iou_kernel() is None
    torch.testing.assert_close(loss, IL.diou_loss(pred, target, fast=False))
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()


def test_gradient_to_target_only_and_batch_shapes(impl):
    pred = random_boxes(24, seed=9).view(2, 3, 4, 4)
    target = random_boxes(24, seed=10).view(2, 3, 4, 4).requires_grad_()
    for name in ('giou', 'ciou', 'focal_eiou'):
        loss = loss_fn(name, True)(pred, target)
        assert loss.shape == (2, 3, 4)
        (g_fast,) = torch.autograd.grad(loss.sum(), target)
        (g_plain,) = torch.autograd.grad(loss_fn(name, False)(pred, target).sum(), target)
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-9, atol=1e-12)
        assert g_fast.shape == target.shape
    # float32 (the kernel when impl == 'kernel'), with a non-contiguous grad_output
    pred32 = pred.float().requires_grad_()
    grad_out = torch.rand(4, 3, 2).permute(2, 1, 0)   # (2, 3, 4), strides (1, 2, 6)
    for name in ('diou', 'ciou_gate', 'focal_eiou'):
        g_fast = torch.autograd.grad(loss_fn(name, True)(pred32, target.float()), pred32,
                                     grad_out)[0]
        g_plain = torch.autograd.grad(loss_fn(name, False)(pred32, target.float()), pred32,
                                      grad_out)[0]
        torch.testing.assert_close(g_fast, g_plain, rtol=1e-4, atol=1e-6)


def test_non_contiguous_input_and_expanded_grad(impl):
    big = random_boxes(40, seed=11)
    pred = big[::2].detach().requires_grad_()              # (20, 4), row stride 8
    target = random_boxes(40, seed=12).t().contiguous().t()[::2]  # column-major rows
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-5)):
        p, t = pred.to(dtype).detach().requires_grad_(), target.to(dtype)
        for name in ('diou', 'eiou'):
            loss = loss_fn(name, True)(p, t)
            (g_fast,) = torch.autograd.grad(loss.mean(), p)  # grad_output is expanded
            (g_plain,) = torch.autograd.grad(loss_fn(name, False)(p, t).mean(), p)
            torch.testing.assert_close(g_fast, g_plain, rtol=tol, atol=tol * 1e-3)


@pytest.mark.parametrize('name', ['giou', 'ciou_gate', 'focal_eiou'])
def test_torch_implementation_in_blocks(name, monkeypatch):
    # above 2^16 boxes the torch implementation works block by block: same result
    monkeypatch.setattr(_fused_iou, 'CPU_KERNEL', False)
    n = (1 << 16) + 1000
    pred, target = random_boxes(n, seed=26), random_boxes(n, seed=27)
    pred[::2] = target[::2] + 0.3 * (pred[::2] - target[::2])
    weight = torch.rand(n, generator=torch.Generator().manual_seed(28))
    fast = value_and_grads(loss_fn(name, True), pred, target, weight)
    plain = value_and_grads(loss_fn(name, False), pred, target, weight)
    assert_same(fast, plain, torch.float64)


def test_empty_input_keeps_graph(impl):
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = IL.ciou_loss(pred, torch.zeros(0, 4))
    assert loss.shape == (0,)
    total = loss.sum()
    total.backward()
    assert total.item() == 0.0 and pred.grad.shape == (0, 4)


def test_no_grad_value_matches_and_default_is_fast(impl):
    pred, target = random_boxes(50, seed=13), random_boxes(50, seed=14)
    with torch.no_grad():
        for dtype in (torch.float64, torch.float32):
            p, t = pred.to(dtype), target.to(dtype)
            torch.testing.assert_close(IL.ciou_loss(p, t, alpha_gate=True),
                                       IL.ciou_loss(p, t, alpha_gate=True, fast=False))
    loss = IL.giou_loss(pred.requires_grad_(), target)
    assert type(loss.grad_fn).__name__ == '_FusedIoUFamilyBackward'
    assert type(IL.giou_loss(pred, target, fast=False).grad_fn).__name__ != \
        '_FusedIoUFamilyBackward'


@pytest.mark.parametrize('name', ['iou_log', 'giou', 'ciou_authors', 'focal_eiou'])
def test_double_backward_equals_plain(name, impl):
    # with create_graph=True the fast path hands the backward to the plain code
    dtype = torch.float32 if impl == 'kernel' else torch.float64
    pred = random_boxes(5, seed=15, dtype=dtype).requires_grad_()
    target = random_boxes(5, seed=15, dtype=dtype) + 0.5
    second = []
    for fast in (True, False):
        (g,) = torch.autograd.grad(loss_fn(name, fast)(pred, target).sum(), pred,
                                   create_graph=True)
        second.append(torch.autograd.grad((g * g).sum(), pred)[0])
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(second[0], second[1], rtol=tol, atol=tol * 1e-2)
    assert second[0].abs().sum() > 0


# ---- DIoU-NMS: vectorised C kernel == portable torch path --------------------------

def clustered_boxes(n, seed):
    """Boxes jittered around a few centres (long suppression chains), exact duplicates,
    and concentric pairs whose IoU is exactly 0.25 with no distance penalty; integer
    coordinates and rounded scores (ties everywhere); a count that is not a multiple
    of the vector width, so both the vectorised body and the tail loop run."""
    g = torch.Generator().manual_seed(seed)
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


# ---- the benchmark tool: runs, measures memory, never hides a missing peer ----------

def test_benchmark_tool_smoke(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / 'tools' / 'benchmark.py'
    spec = importlib.util.spec_from_file_location('detloss_benchmark', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / 'bench.json'
    threads = torch.get_num_threads()
    try:
        assert bench.main(['--suite', 'iou_family', '--quick', '--only', 'giou',
                           '--threads', '1', '--out', str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())['suites']['iou_family']
    n = 2 ** 12
    ours = data['extras']['calls']['giou | n=2^12 | detloss']
    # memory is deterministic: the kernel allocates the loss and the gradient only
    assert ours['peak_bytes'] <= 24 * n
    assert any(m['description'] == 'detloss' and m['median_s'] > 0
               for m in data['measurements'])
    try:
        import torchvision.ops  # noqa: F401
    except Exception:
        assert 'MISSING torchvision' in printed   # a missing peer is reported
