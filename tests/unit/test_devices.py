"""Every computation on every device (``device`` fixture, conftest.py; CUDA is skipped
without a GPU and runs with ``pytest -m cuda``, as ``tools/gpu_check.sh`` does).

- The IoU family and the sigmoid focal loss on the device give the CPU's float64 value
  and gradient (random and degenerate boxes, every configuration), and pass
  ``gradcheck`` in float64 on the device.
- Every functional loss and every registered module on the device gives the CPU's
  float64 value and gradient.
- Forward + backward of every registered module makes the host wait for nothing
  (CUDA: ``torch.cuda.set_sync_debug_mode('error')``; CPU: no synchronising operator).
- DIoU-NMS's torch backend on the device keeps what the C kernel keeps on the CPU.
"""
import pytest
import torch

from detloss_plugin.functional import classification as C
from detloss_plugin.functional import ghm as G
from detloss_plugin.functional.nms import batched_diou_nms, diou_nms
from device_utils import no_host_sync
from factories import (IOU_LOSSES, TRUE_GRADIENT, box_pairs, degenerate_pairs, generator,
                       iou_fn, random_boxes, random_logits)


def _to(device, *tensors):
    return tuple(t.to(device) for t in tensors)


def value_and_grads(fn, pred, target, weight):
    pred = pred.detach().clone().requires_grad_()
    target = target.detach().clone().requires_grad_()
    loss = fn(pred, target)
    gp, gt = torch.autograd.grad((loss * weight).sum(), (pred, target))
    return tuple(t.detach().cpu() for t in (loss, gp, gt))


# ---- IoU family on the device --------------------------------------------------------

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name', list(IOU_LOSSES))
def test_iou_on_device_equals_cpu_float64(name, dtype, device):
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    for pred, target in (box_pairs(257, seed=1), degenerate_pairs()):
        weight = torch.linspace(0.5, 2.0, pred.shape[0], dtype=torch.float64)
        ref = value_and_grads(iou_fn(name), pred, target, weight)
        got = value_and_grads(iou_fn(name), *_to(device, pred.to(dtype), target.to(dtype),
                                                 weight.to(dtype)))
        # gradients of order 1/eps (zero-height boxes in CIoU) compared relatively
        scale = ref[1].abs().amax(1, keepdim=True).clamp(min=1)
        for k, (a, r) in enumerate(zip(got, ref)):
            assert a.dtype == dtype and torch.isfinite(a).all()
            a, r = a.double(), r
            if k:
                a, r = a / scale, r / scale
            torch.testing.assert_close(a, r, **tol)


@pytest.mark.parametrize('name', [n for n in TRUE_GRADIENT if not n.startswith('ciou')])
def test_iou_gradcheck_on_device(name, device):
    pred = random_boxes(6, seed=7).to(device).requires_grad_()
    target = (random_boxes(6, seed=7) + 0.7 * torch.rand(
        6, 4, generator=generator(8), dtype=torch.float64))
    target = target.to(device).requires_grad_()
    assert torch.autograd.gradcheck(iou_fn(name), (pred, target), eps=1e-6, atol=1e-7)


# ---- sigmoid focal loss on the device ------------------------------------------------

def _logits(n=300, c=5, seed=0, dtype=torch.float32, scale=6.0):
    x, t = random_logits(n, c, seed, scale, torch.float64, soft=True)
    x[0, 0], x[1, 1], x[2, 2] = 100, -100, 30                     # saturated sigmoids
    return x.to(dtype), t.to(dtype)


FOCAL_ALPHAS = [0.25, None, [0.1, 0.25, 0.5, 0.75, 0.9], 'tensor']


def _alpha(alpha, device, dtype=torch.float64):
    return torch.tensor([0.9, 0.75, 0.5, 0.25, 0.1], device=device, dtype=dtype) \
        if alpha == 'tensor' else alpha


def value_and_grads_cls(fn, x, w):
    x = x.detach().clone().requires_grad_()
    loss = fn(x)
    (g,) = torch.autograd.grad(loss, x, w)
    return loss.detach().cpu(), g.cpu()


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('gamma', [0.0, 0.5, 1.0, 2.0, 1.5])
@pytest.mark.parametrize('alpha', FOCAL_ALPHAS, ids=str)
def test_focal_on_device_equals_cpu_float64(alpha, gamma, dtype, device):
    x, t = _logits(dtype=torch.float64)
    w = torch.rand(x.shape, generator=generator(1), dtype=torch.float64)
    ref = value_and_grads_cls(
        lambda z: C.sigmoid_focal_loss(z, t, _alpha(alpha, 'cpu'), gamma), x, w)
    xd, td, wd = _to(device, x.to(dtype), t.to(dtype), w.to(dtype))
    got = value_and_grads_cls(
        lambda z: C.sigmoid_focal_loss(z, td, _alpha(alpha, device, dtype), gamma), xd, wd)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    for a, r in zip(got, ref):
        assert a.dtype == dtype and torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), r, **tol)


@pytest.mark.parametrize('gamma', [0.0, 1.0, 2.0, 1.5])
@pytest.mark.parametrize('alpha', [0.25, None, 'tensor'], ids=str)
def test_focal_gradcheck_on_device(alpha, gamma, device):
    x, t = _logits(n=12, dtype=torch.float64, scale=2.0)
    x, t = _to(device, x[4:], t[4:])   # away from the saturated rows
    a = _alpha(alpha, device)
    x = x.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: C.sigmoid_focal_loss(z, t, a, gamma), (x,))


# ---- every functional loss: the device gives the CPU's value and gradient ------------

def _labels(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    labels[:3] = -100   # ignored rows
    return labels


def _functional_cases():
    """name -> f(x, device) -> loss tensor, on ``x`` (Tensor[N, C], float64)."""
    def sig(fn, **kw):
        def run(x, device):
            t = C.labels_to_one_hot(_labels(x.shape[0], x.shape[1] + 1).to(device),
                                    x.shape[1], x.dtype)
            return fn(x, t, **kw)
        return run

    def soft(fn, **kw):
        def run(x, device):
            return fn(x, _labels(x.shape[0], x.shape[1]).to(device), **kw)
        return run

    def ghmc(x, device):
        t = C.labels_to_one_hot(_labels(x.shape[0], x.shape[1] + 1).to(device), x.shape[1],
                                x.dtype)
        valid = torch.ones_like(x, dtype=torch.bool)
        acc = torch.zeros(10, device=device)
        return G.ghmc_loss(x, t, valid, 10, 0.75, acc)[0]

    def ghmr(x, device):
        return G.ghmr_loss(x, torch.zeros_like(x), torch.ones_like(x, dtype=torch.bool))[0]

    def seesaw(x, device):
        labels = _labels(x.shape[0], x.shape[1]).clamp(min=0).to(device)
        cum = torch.arange(1, x.shape[1] + 1, dtype=torch.float64, device=device) * 10
        return C.seesaw_ce_loss(x, labels, cum)

    return {
        'sigmoid_cross_entropy': sig(C.sigmoid_cross_entropy),
        'sigmoid_focal': sig(C.sigmoid_focal_loss),
        'sigmoid_anchor': sig(C.sigmoid_anchor_loss),
        'sigmoid_symmetric_ce': sig(C.sigmoid_symmetric_ce),
        'softmax_cross_entropy': soft(C.softmax_cross_entropy),
        'softmax_focal': soft(C.softmax_focal_loss, alpha=0.5),
        'softmax_anchor': soft(C.softmax_anchor_loss),
        'softmax_symmetric_ce': soft(C.softmax_symmetric_ce),
        'seesaw_ce': seesaw,
        'ghmc': ghmc,
        'ghmr': ghmr,
    }


FUNCTIONAL = _functional_cases()


@pytest.mark.parametrize('name', list(FUNCTIONAL))
def test_functional_loss_device_equals_cpu(name, device):
    fn = FUNCTIONAL[name]
    x = torch.randn(64, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 3
    results = []
    for dev in (torch.device('cpu'), device):
        xx = x.to(dev).requires_grad_()
        loss = fn(xx, dev)
        w = torch.linspace(0.5, 1.5, loss.numel(), dtype=torch.float64, device=dev)
        (g,) = torch.autograd.grad((loss.reshape(-1) * w).sum(), xx)
        results.append((loss.detach().cpu(), g.cpu()))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-9, atol=1e-12)
    assert torch.isfinite(results[0][1]).all()


# ---- every registered module: device == CPU, and no host synchronisation -------------

BOX_MODULES = [dict(type='IoULoss'), dict(type='IoULoss', mode='log'), dict(type='GIoULoss'),
               dict(type='DIoULoss'), dict(type='CIoULoss'),
               dict(type='CIoULoss', alpha_gate=True), dict(type='EfficientIoULoss'),
               dict(type='FocalEIoULoss'), dict(type='L1Loss'), dict(type='MSELoss'),
               dict(type='SmoothL1Loss', beta=1.0 / 9.0), dict(type='FocalL1Loss'),
               dict(type='GHMR')]
SIGMOID_MODULES = [dict(type='FocalLoss', use_sigmoid=True),
                   dict(type='FocalLoss', use_sigmoid=True, alpha=[0.25] * 4 + [0.5] * 4),
                   dict(type='CrossEntropyLoss', use_sigmoid=True),
                   dict(type='GHMC', use_sigmoid=True, bins=30, momentum=0.75),
                   dict(type='AnchorLoss', use_sigmoid=True),
                   dict(type='SymmetricCELoss', use_sigmoid=True)]
SOFTMAX_MODULES = [dict(type='FocalLoss', use_sigmoid=False),
                   dict(type='CrossEntropyLoss', use_sigmoid=False, class_weight=[1.0] * 9),
                   dict(type='AnchorLoss', use_sigmoid=False),
                   dict(type='SymmetricCELoss', use_sigmoid=False),
                   dict(type='SeesawLoss', num_classes=8, return_dict=False)]


def _build(cfg):
    pytest.importorskip('mmengine')
    from detloss_plugin.registry import MODELS
    # the scope prefix: another test may have left mmdet as the default scope
    module = MODELS.build(dict(cfg, type=f"detloss_plugin.{cfg['type']}"))
    assert type(module).__module__.startswith('detloss_plugin.')
    return module


def _module_inputs(cfg, kind):
    g = torch.Generator().manual_seed(4)
    n = 97
    if kind == 'box':
        target = random_boxes(n, seed=11, dtype=torch.float32, size=300.0, max_wh=80.0)
        pred = target + torch.randn(n, 4, generator=g) * 5
        return pred, target, torch.rand(n, generator=g)
    if kind == 'sigmoid':
        x = torch.randn(n, 8, generator=g) * 3 - 2
        labels = torch.randint(0, 9, (n,), generator=g)   # 8 = background
        labels[:3] = -100
        return x, labels, torch.rand(n, generator=g)
    columns = 10 if cfg['type'] == 'SeesawLoss' else 9     # seesaw: C + 2 columns
    x = torch.randn(n, columns, generator=g) * 3
    labels = torch.randint(0, 9, (n,), generator=g)
    return x, labels, torch.rand(n, generator=g)


def _module_step(module, x, target, weight, avg_factor):
    xx = x.clone().requires_grad_()
    loss = module(xx, target, weight, avg_factor=avg_factor)
    loss.backward()
    return loss.detach(), xx.grad


MODULE_CASES = ([(c, 'box') for c in BOX_MODULES] + [(c, 'sigmoid') for c in SIGMOID_MODULES]
                + [(c, 'softmax') for c in SOFTMAX_MODULES])


def _case_id(case):
    cfg, kind = case
    extra = ','.join(f'{k}={v}' for k, v in cfg.items() if k not in ('type',) and
                     not isinstance(v, list))
    return f"{kind}-{cfg['type']}" + (f'({extra})' if extra else '') + \
        ('-per-class' if any(isinstance(v, list) for v in cfg.values()) else '')


@pytest.mark.parametrize('case', MODULE_CASES, ids=_case_id)
def test_module_on_device_equals_cpu_without_host_sync(case, device):
    cfg, kind = case
    x, target, weight = _module_inputs(cfg, kind)
    ref_module = _build(cfg)
    module = _build(cfg).to(device)
    ref = _module_step(ref_module, x, target, weight, 7.0)
    xd, td, wd = _to(device, x, target, weight)
    _module_step(module, xd, td, wd, 7.0)        # warm-up (kernel builds, lazy state)
    module = _build(cfg).to(device)               # fresh state (GHM's moving average)
    other = _build(cfg).to(device)
    # mmdet's heads also pass avg_factor as a 0-d tensor on the device (made outside the
    # block: a tensor from a Python number is a copy from the host)
    avg = torch.tensor(7.0, device=device)
    with no_host_sync(device):
        loss, grad = _module_step(module, xd, td, wd, 7.0)
        _module_step(other, xd, td, wd, avg)
    torch.testing.assert_close(loss.cpu(), ref[0], rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(grad.cpu(), ref[1], rtol=2e-4, atol=1e-6)


# ---- DIoU-NMS: the torch backend on the device ----------------------------------------

def _nms_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n // 5, 2, generator=g) * 400
    idx = torch.randint(0, centres.shape[0], (n,), generator=g)
    xy = centres[idx] + torch.randn(n, 2, generator=g) * 8
    wh = 20 + torch.rand(n, 2, generator=g) * 40
    scores = torch.rand(n, generator=g).round(decimals=2)   # ties too
    return torch.cat([xy, xy + wh], 1), scores


@pytest.mark.parametrize('beta,offset', [(1.0, 0), (0.6, 0), (2.0, 1)])
def test_diou_nms_on_device_equals_cpu_kernel(beta, offset, device):
    boxes, scores = _nms_boxes(400, seed=int(beta * 10) + offset)
    for thr in (0.3, 0.5):
        ref = diou_nms(boxes, scores, thr, beta=beta, offset=offset)   # C kernel / torch
        got = diou_nms(*_to(device, boxes, scores), thr, beta=beta, offset=offset,
                       backend='torch')
        assert got.device.type == device.type
        assert got.cpu().tolist() == ref.tolist()
        assert 0 < ref.numel() < boxes.shape[0]
    idxs = torch.randint(0, 3, (400,), generator=torch.Generator().manual_seed(1))
    ref = batched_diou_nms(boxes, scores, idxs, 0.5, beta=beta, offset=offset)
    got = batched_diou_nms(*_to(device, boxes, scores, idxs), 0.5, beta=beta, offset=offset)
    assert got.cpu().tolist() == ref.tolist()
