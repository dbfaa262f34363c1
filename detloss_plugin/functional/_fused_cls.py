r"""Fast path of the sigmoid focal loss and of GHM-C on the CPU: a compiled kernel.

A dense head's classification loss runs over every anchor and every class (RetinaNet:
about 10^5 anchors x 80 classes per image batch), and the plain torch code is a dozen
element-wise operators forward and as many backward, each a full pass over that
array. The kernel (``csrc/sigmoid_cls.c``, built on first use with the system C
compiler and loaded with ctypes, like the IoU kernel of :mod:`._fused_iou`) does the
work in one pass each way:

- **focal loss**: the forward pass writes the loss; the backward pass recomputes the
  few per-element terms (one ``exp``, one ``log``) and writes ``grad_output * dL/dx``,
  with the closed form

  .. math::
      \frac{\partial FL}{\partial x} = \alpha_t \left[(\sigma(x) - t)\,f(q)
          + CE\, f'(q)\,(1 - 2t)\,\sigma(x)\,\sigma(-x)\right],

  :math:`q = 1 - p_t = t\,\sigma(-x) + (1 - t)\,\sigma(x)`, :math:`f(q) = q^\gamma`
  (clamped as :func:`.classification._safe_pow` clamps it, and with the gradient that
  clamp passes), :math:`CE` the binary cross-entropy. Nothing is stored but the inputs,
  which the caller holds anyway.
- **GHM-C**: one pass finds each element's gradient-norm region (``uint8``, 1 byte per
  element) and counts the regions (exact int64 counts, no host synchronisation); the
  region weights are computed on the device from the counts (:mod:`.ghm`); a second
  pass writes :math:`\beta_i\,BCE_i`; the backward pass writes
  ``grad_output * beta_i * (sigmoid(x) - t)``.

Scope: float32 and half-precision CPU tensors (half is computed in float32 by the
callers), 2-D ``(N, C)`` inputs, targets and ``alpha`` without gradient, GHM-C with at
most 254 regions. Elsewhere (GPU, float64, targets requiring grad, no compiler) the
callers run the plain torch code. Both compute the same function: ``exp``/``log`` are
polynomials within a few float32 ulp of torch's, so values and gradients agree to
float32 rounding; a GHM-C element whose gradient norm lies within an ulp of a region
edge can fall on the other side of it. ``tests/test_fast_paths.py`` compares both paths
in value and gradient.

**Focal loss off the CPU** (GPU; or wherever :data:`TORCH_FUSED` asks for it): the
same closed form in torch (:class:`_SigmoidFocalTorch`), any device and dtype. The
forward pass computes the loss and its local gradient ``dFL/dx`` from the same
intermediates with mostly in-place operators and keeps only that gradient (one ``N x
C`` tensor) for the backward pass, which is one multiplication by ``grad_output``;
autograd over the plain code keeps about six ``N x C`` intermediates and runs a dozen
operators backward. No host synchronisation either way. mmcv's fused CUDA kernel
(what mmdet's ``FocalLoss`` calls on GPU) is not used: it takes ``log(max(p,
FLT_MIN))`` where this loss takes ``logsigmoid``, so the two differ for ``|x| >~ 16``
(a negative with ``x = 20`` has ``1 - p = 0`` in float32: mmcv's loss is
``-log(FLT_MIN) = 87.3`` times the focal factor, this one 20 times it); the definitions
coincide only in the middle of the range.

Double backward: a backward with ``create_graph=True`` differentiates the plain code
instead (recomputed from the saved inputs). Forward-mode AD and ``torch.func`` are
not implemented: use ``fast=False`` for them.
"""
import ctypes
from typing import Optional

import torch
from torch import Tensor

from ._kernels import POW_MODES, VECTOR_FLAGS, CompiledLibrary, chunk_bounds, run_chunks

__all__ = ['load_cls_kernel', 'cls_kernel_for', 'sigmoid_focal', 'sigmoid_focal_torch',
           'ghmc_regions',
           'ghmc_weighted_bce', 'MAX_GHM_BINS']

MAX_GHM_BINS = 254                               # regions fit a uint8 (255: invalid)
# None: the kernel for float32/half CPU tensors when it can be built, else the plain
# code; False: always the plain code; True: like None, but an error instead of the
# fallback when the kernel cannot be built.
CPU_KERNEL: Optional[bool] = None
# None: the torch closed form (:class:`_SigmoidFocalTorch`) for the focal loss on devices
# other than the CPU (the CPU keeps its kernel, or the plain code); True: wherever the CPU
# kernel does not run (the tests use it to check that path on the CPU); False: never.
TORCH_FUSED: Optional[bool] = None

_p, _i64, _f, _i = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    'detloss_sigmoid_focal_loss_f32': [_i, _f, _p, _p, _p, _i64, _i64, _p],
    'detloss_sigmoid_focal_grad_f32': [_i, _f, _p, _p, _p, _i64, _i64, _p, _i64, _i, _p],
    'detloss_ghmc_regions_f32': [_p, _p, _p, _i64, _i64, _i64, _i64, _p, _i, _p, _p, _p],
    'detloss_ghmc_weigh_f32': [_p, _p, _i64, _p],
    'detloss_ghmc_grad_f32': [_p, _p, _p, _p, _i64, _p, _i, _p],
}


def _bind_cls(lib):
    kernel = {}
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = None, argtypes
        kernel[name] = fn
    return kernel


# csrc/sigmoid_cls.c (the same build flags as the IoU kernel); load() gives its
# functions by C name, or None without a C compiler (the callers run the plain code)
CLS_KERNEL = CompiledLibrary('sigmoid_cls.c', VECTOR_FLAGS, 'classification-loss',
                             'the plain torch code', _bind_cls)


def load_cls_kernel():
    """The compiled kernel's functions (a dict by C name), or None."""
    return CLS_KERNEL.load()


def cls_kernel_for(*tensors: Tensor, cpu_kernel: Optional[bool] = None):
    """The kernel if it applies to these tensors (CPU, float32, 2-D, no gradient
    wanted for any but the first), else None. ``cpu_kernel`` as :data:`CPU_KERNEL`
    (None: follow it)."""
    if cpu_kernel is None:
        cpu_kernel = CPU_KERNEL
    if cpu_kernel is False:
        return None
    first = tensors[0]
    applies = (first.dim() == 2
               and all(t.device.type == 'cpu' and t.dtype == torch.float32
                       for t in tensors)
               and not any(t.requires_grad for t in tensors[1:]))
    kernel = load_cls_kernel() if applies else None
    if cpu_kernel and applies and kernel is None:
        raise RuntimeError('the C classification-loss kernel could not be built (see the '
                           'warning)')
    return kernel


def _ptr(x: Optional[Tensor]):
    return None if x is None else x.data_ptr()


def _grad_operand(grad: Tensor):
    """``(tensor, row_stride, per_element)``: one broadcast value (the gradient of a
    sum or mean) is passed as is, anything else as a contiguous float32 array."""
    grad = grad.to(torch.float32)
    if grad.numel() > 0 and all(s == 0 for s in grad.stride()):
        return grad, 0, 0
    grad = grad.contiguous()
    return grad, (grad.shape[-1] if grad.dim() == 2 else 0), 1


# ---- focal loss ---------------------------------------------------------------------

def _focal_loss(kernel, x: Tensor, t: Tensor, alpha: Optional[Tensor], gamma: float
                ) -> Tensor:
    out = torch.empty_like(x)
    rows, cols = x.shape
    head = (POW_MODES.get(float(gamma), 0), float(gamma), _ptr(alpha))
    xp, tp, op = x.data_ptr(), t.data_ptr(), out.data_ptr()

    def chunk(a, b):   # rows [a, b), 4 * cols bytes a row
        kernel['detloss_sigmoid_focal_loss_f32'](*head, xp + 4 * a * cols, tp + 4 * a * cols,
                                                 b - a, cols, op + 4 * a * cols)
    run_chunks(chunk, rows, cols)
    return out


def _plain_focal_grad(ctx, logits: Tensor, targets: Tensor, grad: Tensor) -> Tensor:
    """The gradient of the plain focal loss (the same function) with create_graph=True:
    what a fused backward returns when a double backward is asked for."""
    from .classification import sigmoid_focal_loss
    with torch.enable_grad():
        loss = sigmoid_focal_loss(logits, targets, ctx.plain_alpha, ctx.gamma, fast=False)
    (g,) = torch.autograd.grad(loss, logits, grad, create_graph=True)
    return g


class _SigmoidFocal(torch.autograd.Function):


    @staticmethod
    def forward(ctx, logits, targets, alpha, gamma, kernel, plain_alpha):
        ctx.kernel, ctx.gamma, ctx.plain_alpha = kernel, gamma, plain_alpha
        ctx.save_for_backward(logits, targets, alpha)
        return _focal_loss(kernel, logits, targets, alpha, gamma)

    @staticmethod
    def backward(ctx, grad):
        logits, targets, alpha = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _plain_focal_grad(ctx, logits, targets, grad), None, None, None, None, None
        g, row_stride, per_element = _grad_operand(grad)
        out = torch.empty_like(logits)
        rows, cols = logits.shape
        head = (POW_MODES.get(float(ctx.gamma), 0), float(ctx.gamma), _ptr(alpha))
        xp, tp, gp, op = logits.data_ptr(), targets.data_ptr(), g.data_ptr(), out.data_ptr()

        def chunk(a, b):
            ctx.kernel['detloss_sigmoid_focal_grad_f32'](
                *head, xp + 4 * a * cols, tp + 4 * a * cols, b - a, cols,
                gp + 4 * a * row_stride, row_stride, per_element, op + 4 * a * cols)
        run_chunks(chunk, rows, cols)
        return out, None, None, None, None, None


def _focal_torch_terms(x: Tensor, t: Tensor, alpha, gamma: float, need_grad: bool):
    """``(loss, dloss/dx or None)`` of the sigmoid focal loss by the closed form of the
    module docstring, with the operations of the plain code (``alpha``: None, a float
    or a tensor broadcastable to ``x``)."""
    p = torch.sigmoid(x)
    one_m_p = torch.sigmoid(-x)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction='none')
    # q = 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x)
    q = (1 - t).mul_(p).add_(t * one_m_p)
    if gamma == 0:
        f, df = None, None
    elif gamma == 1:
        f, df = q, None                     # d q^1 / dq = 1 (no clamp, as _safe_pow)
    else:
        tiny = torch.finfo(q.dtype).tiny
        qc = q.clamp(min=tiny)
        f = qc.pow(gamma)
        if need_grad:   # clamp(min) passes the gradient where q >= tiny (autograd's rule)
            df = qc.pow(gamma - 1).mul_(gamma).mul_(q >= tiny)
    loss = ce if f is None else ce * f
    a_t = None
    if alpha is not None:
        a_t = (1 - t).mul_(1 - alpha).add_(t * alpha)   # alpha t + (1 - alpha)(1 - t)
        loss = loss.mul_(a_t) if f is not None else loss * a_t
    if not need_grad:
        return loss, None
    grad = p - t                                        # d CE / dx
    if f is not None:
        grad.mul_(f)
        if gamma != 0:
            # + CE f'(q) dq/dx, dq/dx = (1 - 2t) sigmoid(x) sigmoid(-x)
            dq = (1 - 2 * t).mul_(p).mul_(one_m_p)
            grad.add_(dq.mul_(ce if gamma == 1 else ce * df))
    if a_t is not None:
        grad.mul_(a_t)
    return loss, grad


class _SigmoidFocalTorch(torch.autograd.Function):
    """The focal loss with its closed-form gradient, in torch (any device/dtype)."""

    @staticmethod
    def forward(ctx, logits, targets, alpha, gamma, plain_alpha):
        loss, grad = _focal_torch_terms(logits, targets, alpha, gamma, True)
        ctx.gamma, ctx.plain_alpha = gamma, plain_alpha
        ctx.save_for_backward(grad, logits, targets)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        local, logits, targets = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _plain_focal_grad(ctx, logits, targets, grad_out), None, None, None, None
        return grad_out * local, None, None, None, None


def _torch_fused_applies(logits: Tensor, targets: Tensor) -> bool:
    mode = TORCH_FUSED
    if mode is False:
        return False
    return (mode is True or logits.device.type != 'cpu') and not targets.requires_grad


def sigmoid_focal_torch(logits: Tensor, targets: Tensor, alpha, gamma: float,
                        plain_alpha=None) -> Optional[Tensor]:
    """The focal loss by :class:`_SigmoidFocalTorch`, or None where it does not apply
    (see :data:`TORCH_FUSED`; targets or alpha requiring grad). ``alpha``: None, a
    Python float or a tensor (0-d or one value per column) on the logits' device."""
    if not _torch_fused_applies(logits, targets):
        return None
    if isinstance(alpha, Tensor):
        if alpha.requires_grad or alpha.dim() > 1 or \
                (alpha.dim() == 1 and alpha.numel() != logits.shape[1]):
            return None   # the plain code differentiates it / reports the mismatch
    if torch.is_grad_enabled() and logits.requires_grad:
        return _SigmoidFocalTorch.apply(logits, targets, alpha, float(gamma), plain_alpha)
    return _focal_torch_terms(logits, targets, alpha, float(gamma), False)[0]


def sigmoid_focal(logits: Tensor, targets: Tensor, alpha_t: Optional[Tensor], gamma: float,
                  plain_alpha=None, cpu_kernel: Optional[bool] = None) -> Optional[Tensor]:
    """The focal loss ``Tensor[N, C]`` by the kernel, or None where it does not apply
    (the caller then runs the plain code). ``logits``/``targets`` are float32 (already
    upcast and checked); ``alpha_t`` is None (no weighting), a 0-d tensor, a Python
    float or one value per column; ``plain_alpha`` is the caller's ``alpha`` (for a
    double backward)."""
    kernel = cls_kernel_for(logits, targets, cpu_kernel=cpu_kernel)
    if kernel is None:
        return None
    if isinstance(alpha_t, (int, float)):
        alpha_t = torch.tensor(float(alpha_t))   # the CPU kernel's per-column values
    cols = logits.shape[1]
    alpha_vec = None
    if alpha_t is not None:
        if alpha_t.requires_grad or alpha_t.dim() > 1 or \
                (alpha_t.dim() == 1 and alpha_t.numel() != cols):
            return None   # the plain code differentiates it / reports the mismatch
        alpha_vec = alpha_t.to(torch.float32).expand(cols).contiguous()
    x, t = logits.contiguous(), targets.contiguous()
    if torch.is_grad_enabled() and logits.requires_grad:
        return _SigmoidFocal.apply(x, t, alpha_vec, float(gamma), kernel, plain_alpha)
    return _focal_loss(kernel, x, t, alpha_vec, gamma)


# ---- GHM-C --------------------------------------------------------------------------

def ghmc_regions(kernel, logits: Tensor, targets: Tensor, valid: Tensor, edges: Tensor):
    """``(region, stats, bce)``: each element's region ``Tensor[N, C]`` (uint8, 255
    where not valid), ``stats`` ``Tensor[bins + 1]`` (int64: the valid elements per
    region, then their total, as :func:`.ghm.ghm_weights` counts them) and the
    unweighted BCE ``Tensor[N, C]`` (float32), all from one pass."""
    bins = edges.numel() - 1
    x, t = logits.detach().contiguous(), targets.contiguous()
    v = valid.expand_as(x)
    if v.dtype != torch.bool:
        v = v != 0
    v = v.view(torch.uint8)
    if v.stride(1) not in (0, 1):
        v = v.contiguous()
    edges = edges.to(device='cpu', dtype=torch.float32).contiguous()
    region = torch.empty(x.shape, dtype=torch.uint8)
    bce = torch.empty_like(x)
    rows, cols = x.shape
    bounds = chunk_bounds(rows, cols)
    # one row of counts per chunk (the kernel adds to them), summed afterwards
    counts = torch.zeros((len(bounds), bins + 1), dtype=torch.int64)
    starts = {a: k for k, (a, _) in enumerate(bounds)}
    xp, tp, vp, rp, bp = (x.data_ptr(), t.data_ptr(), v.data_ptr(), region.data_ptr(),
                          bce.data_ptr())
    vs0, vs1, ep = v.stride(0), v.stride(1), edges.data_ptr()

    def chunk(a, b):
        kernel['detloss_ghmc_regions_f32'](
            xp + 4 * a * cols, tp + 4 * a * cols, vp + a * vs0, vs0, vs1, b - a, cols, ep,
            bins, rp + a * cols, counts[starts[a]].data_ptr(), bp + 4 * a * cols)
    if len(bounds) == 1:
        chunk(0, rows)
    else:
        run_chunks(chunk, rows, cols)
    stats = counts.sum(0) if len(bounds) > 1 else counts[0]
    return region, stats, bce


def _weigh(kernel, region: Tensor, table: Tensor, loss: Tensor) -> None:
    """``loss *= table[region]`` in place, on the kernel's threads."""
    rp, wp, lp = region.data_ptr(), table.data_ptr(), loss.data_ptr()
    run_chunks(lambda a, b: kernel['detloss_ghmc_weigh_f32'](rp + a, wp, b - a, lp + 4 * a),
               loss.numel())


class _GHMCWeightedBCE(torch.autograd.Function):
    """``per_bin[region] * BCE``: the forward pass weighs the BCE that
    :func:`ghmc_regions` wrote (handed over in a list: it is a buffer, not an input
    of the function), the backward pass recomputes ``sigmoid``."""

    @staticmethod
    def forward(ctx, logits, targets, region, table, kernel, bce_buffer):
        ctx.kernel = kernel
        ctx.save_for_backward(logits, targets, region, table)
        loss = bce_buffer.pop()
        _weigh(kernel, region, table, loss)
        return loss

    @staticmethod
    def backward(ctx, grad):
        logits, targets, region, table = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: the plain weighted BCE (the weights carry no gradient)
            import torch.nn.functional as F
            with torch.enable_grad():
                loss = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
                loss = loss * table[region.long()]
            (g,) = torch.autograd.grad(loss, logits, grad, create_graph=True)
            return g, None, None, None, None, None
        g, _, per_element = _grad_operand(grad)
        out = torch.empty_like(logits)
        xp, tp, rp, wp = logits.data_ptr(), targets.data_ptr(), region.data_ptr(), table.data_ptr()
        gp, op = g.data_ptr(), out.data_ptr()

        def chunk(a, b):   # elements [a, b)
            ctx.kernel['detloss_ghmc_grad_f32'](xp + 4 * a, tp + 4 * a, rp + a, wp, b - a,
                                                gp + 4 * a * per_element, per_element,
                                                op + 4 * a)
        run_chunks(chunk, logits.numel())
        return out, None, None, None, None, None


def ghmc_weighted_bce(kernel, logits: Tensor, targets: Tensor, region: Tensor,
                      per_bin: Tensor, bce: Tensor) -> Tensor:
    """``per_bin[region] * bce`` (0 where ``region`` is 255), ``bce`` from
    :func:`ghmc_regions` (weighed in place); differentiable w.r.t. ``logits``."""
    table = torch.zeros(256, dtype=torch.float32)
    table[:per_bin.numel()] = per_bin.to(torch.float32)
    if torch.is_grad_enabled() and logits.requires_grad:
        return _GHMCWeightedBCE.apply(logits.contiguous(), targets.contiguous(), region,
                                      table, kernel, [bce])
    _weigh(kernel, region, table, bce)
    return bce
