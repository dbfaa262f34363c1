r"""Fast path of the IoU-family losses: the value and the analytic gradient, fused.

Each loss is element-wise: box ``i``'s loss depends only on ``pred[i]`` and
``target[i]``, so its gradient is four numbers per box (four more for the target when
it requires grad) that can be written down in closed form. Two implementations of the
same closed form, behind one ``torch.autograd.Function``:

- **compiled CPU kernel** (``csrc/iou_family.c``, built on first use with the system C
  compiler, loaded with ctypes; float32, half precision upcast): the forward pass
  computes the loss only; the backward pass recomputes each box's intermediates and
  writes ``grad_output[i] * dL_i/dpred_i`` straight into the gradient. One pass over
  the boxes each way, vectorised, and nothing allocated but the loss and the
  gradient. Used by default for float32/half CPU tensors when a compiler is found
  (:data:`CPU_KERNEL` switches it).
- **torch implementation** (:func:`_loss_and_jacobian`; any device and dtype: GPU,
  float64, or no compiler): the forward pass computes the loss and the local gradient
  ``J_i`` from the same intermediates with few, mostly in-place, operations (in blocks
  of boxes, so the temporaries take bounded memory) and keeps only ``J`` for the
  backward pass, which is one multiplication ``grad_output[i] * J_i``.
  Autograd over the plain code instead re-reads a dozen saved intermediates and builds
  the gradient of every ``pred[:, k]`` selection as a full ``(n, 4)`` tensor.

Both compute exactly the functions of :mod:`.iou_losses` (same formulas, same ``eps``
placements, same clamps, CIoU's alpha without gradient, the authors' CIoU gradient,
focal-EIoU's clamped ``IoU^gamma``) and the gradient autograd gives for them, including
its conventions at the kinks: ``torch.minimum``/``maximum`` give half the gradient to
each argument when they tie (identical edges), and ``clamp(min=m)`` passes the gradient
when the input equals ``m`` (touching boxes, IoU exactly ``eps``). Only roundings
differ: the torch implementation computes the enclosing width as ``w + w_gt -
(intersection width before clamping)`` (equal to ``max(x2, x2_gt) - min(x1, x1_gt)``),
the kernel uses polynomial ``atan``/``log`` within a few float32 ulp of torch's.
``tests/test_fast_paths.py`` compares every path with the plain one in value and
gradient on random and degenerate boxes, and runs ``gradcheck`` on the torch one.

Derivation (one axis; ``y`` is the same with heights). With
:math:`w = x_2 - x_1`, :math:`i_w = \max(0, \min(x_2, x_2^{gt}) - \max(x_1, x_1^{gt}))`,
:math:`e_w = \max(x_2, x_2^{gt}) - \min(x_1, x_1^{gt})` and
:math:`d_x = (x_1 + x_2) - (x_1^{gt} + x_2^{gt})` (twice the centre offset), every loss
is a function of :math:`w, w^{gt}, i_w, e_w, d_x` (and the ``y`` counterparts). Let
:math:`g_\cdot` be the partial derivatives of the loss with respect to them,
:math:`m = [\min - \max \ge 0]` the clamp's pass-through,
:math:`s_1 = \operatorname{sign}(x_1 - x_1^{gt})`,
:math:`s_2 = \operatorname{sign}(x_2^{gt} - x_2)`,
:math:`A = (m g_{i_w} + g_{e_w})/2`, :math:`B = (m g_{i_w} - g_{e_w})/2`. Then

.. math::
    \partial L/\partial x_1 = g_{d_x} - g_w - A - B s_1, \qquad
    \partial L/\partial x_2 = g_{d_x} + g_w + A + B s_2,

    \partial L/\partial x_1^{gt} = -g_{d_x} - g_{w^{gt}} - A + B s_1, \qquad
    \partial L/\partial x_2^{gt} = -g_{d_x} + g_{w^{gt}} + A - B s_2,

where the signs encode which box owns each edge of the intersection and of the
enclosing box (``sign = 0`` splits the gradient on ties, as autograd does). The
per-loss partials are written next to each loss below.

Double backward: when the backward runs with ``create_graph=True`` it differentiates
the plain code instead (recomputed from the saved inputs), so higher derivatives are
exact, at the plain path's cost. Forward-mode AD and ``torch.func`` transforms are not
implemented (they raise); use ``fast=False`` for them. Without autograd (inference,
``torch.no_grad()``, or no input requiring grad) only the value is computed.
"""
import ctypes
import math
from typing import Optional

import torch
from torch import Tensor

from ._checks import saturating_cast
from ._kernels import POW_MODES, VECTOR_FLAGS, CompiledLibrary, run_chunks

__all__ = ['fused_iou_family']

_ASPECT = 4 / math.pi ** 2
KINDS = ('iou_linear', 'iou_log', 'giou', 'diou', 'ciou', 'eiou', 'focal_eiou')


def _ge_mask(x: Tensor, value: float) -> Tensor:
    """``(x >= value)`` as 0/1 in x's dtype (a float ``out=`` is much faster on CPU
    than a bool tensor followed by a cast)."""
    return torch.ge(x, value, out=torch.empty_like(x))


def _axis_partials(gi_half: Tensor, ge_half: Optional[Tensor]):
    """``A`` and ``B`` of the module docstring; ``gi_half`` already holds
    ``m g_i / 2`` and ``ge_half`` holds ``g_e / 2`` (or None)."""
    if ge_half is None:
        return gi_half, gi_half
    return gi_half + ge_half, gi_half.sub_(ge_half)


def _edge_grads(out1: Tensor, out2: Tensor, g_d: Optional[Tensor], g_w: Tensor,
                a: Tensor, b: Tensor, s1: Tensor, s2: Tensor, pred_side: bool) -> None:
    """Write the gradients of the two edges of one axis of one box into out1, out2."""
    side = g_w + a  # S = g_w + A
    if pred_side:
        # x1: g_d - S - B s1 ; x2: g_d + S + B s2
        if g_d is None:
            torch.neg(side, out=out1)
            out2.copy_(side)
        else:
            torch.sub(g_d, side, out=out1)
            torch.add(g_d, side, out=out2)
        out1.addcmul_(b, s1, value=-1)
        out2.addcmul_(b, s2)
    else:
        # x1_gt: -g_d - S + B s1 ; x2_gt: -g_d + S - B s2
        if g_d is None:
            torch.neg(side, out=out1)
            out2.copy_(side)
        else:
            torch.add(g_d, side, out=out1).neg_()
            torch.sub(side, g_d, out=out2)
        out1.addcmul_(b, s1)
        out2.addcmul_(b, s2, value=-1)


def _loss_and_jacobian(kind: str, pred: Tensor, target: Tensor, eps: float, gamma: float,
                       alpha_gate: bool, authors_gradient: bool, detach_weight: bool,
                       need_pred: bool, need_target: bool):
    """Loss ``(n,)`` of ``pred``, ``target`` ``(n, 4)`` (float32/64), and the local
    gradients ``Jp``, ``Jt`` ``(4, n)`` (or None) and a per-box factor ``scale``
    ``(n,)`` (or None) such that ``dL_i/dpred_i = scale_i * Jp[:, i]``."""
    need_grad = need_pred or need_target
    enclosing = kind != 'iou_linear' and kind != 'iou_log'
    centers = kind in ('diou', 'ciou', 'eiou', 'focal_eiou')

    px1, py1, px2, py2 = pred.unbind(1)
    tx1, ty1, tx2, ty2 = target.unbind(1)
    pw, ph = px2 - px1, py2 - py1
    tw, th = tx2 - tx1, ty2 - ty1
    # Intersection extents before the clamp (their sign gates the gradient).
    iw_raw = torch.minimum(px2, tx2).sub_(torch.maximum(px1, tx1))
    ih_raw = torch.minimum(py2, ty2).sub_(torch.maximum(py1, ty1))
    iw, ih = iw_raw.clamp(min=0), ih_raw.clamp(min=0)
    inter = iw * ih
    union = pw * ph
    union.addcmul_(tw, th).sub_(inter)           # w h + w_gt h_gt - inter
    union_eps = union + eps
    iou = inter / union_eps

    if enclosing:
        # max(x2, x2_gt) - min(x1, x1_gt) == w + w_gt - (min(x2, x2_gt) - max(x1, x1_gt))
        ew = (pw + tw).sub_(iw_raw)
        eh = (ph + th).sub_(ih_raw)
    if need_grad or centers:
        s1x, s2x = px1 - tx1, tx2 - px2
        s1y, s2y = py1 - ty1, ty2 - py2
    if centers:
        # twice the centre offset: (x1 + x2) - (x1_gt + x2_gt)
        dx, dy = s1x - s2x, s1y - s2y
        rho_sq = dx * dx
        rho_sq.addcmul_(dy, dy).mul_(0.25)
        diag_sq = ew * ew
        diag_sq.addcmul_(eh, eh).add_(eps)
        dist = rho_sq / diag_sq                  # rho^2 / c^2

    # ---- value -------------------------------------------------------------------
    g_iou = None       # dL/dIoU when it is not -1 (a tensor)
    g_pw = g_ph = g_tw = g_th = None    # partials wrt widths/heights beyond the areas
    g_ew_h = g_eh_h = None              # halves of dL/d(enclosing width, height)
    g_dx = g_dy = None                  # dL/d(dx), dL/d(dy)
    g_union = None                      # extra dL/dU (GIoU)
    scale = None
    if kind == 'iou_linear':
        loss = 1 - iou
    elif kind == 'iou_log':
        iou_c = iou.clamp(min=eps)
        loss = iou_c.log().neg_()
        if need_grad:   # d(-ln max(iou, eps))/dIoU = -[iou >= eps] / iou_c
            g_iou = _ge_mask(iou, eps).div_(iou_c).neg_()
    elif kind == 'giou':
        enclose = ew * eh
        enclose_eps = enclose + eps
        loss = (1 - iou).add_((enclose - union).div_(enclose_eps))
        if need_grad:
            # L = 1 - IoU + (E - U)/(E + eps): dL/dE = (U + eps)/(E + eps)^2,
            # dL/dU = -1/(E + eps); E = e_w e_h.
            inv_e = enclose_eps.reciprocal_()
            g_union = -inv_e
            g_e = union_eps * inv_e * inv_e * 0.5
            g_ew_h, g_eh_h = g_e * eh, g_e.mul_(ew)
    elif kind in ('diou', 'ciou'):
        loss = (1 - iou).add_(dist)
        if kind == 'ciou':
            # v = 4/pi^2 (atan(w_gt/(h_gt + eps)) - atan(w/(h + eps)))^2
            ph_eps, th_eps = ph + eps, th + eps
            ratio_p, ratio_t = pw / ph_eps, tw / th_eps
            delta = torch.atan(ratio_t).sub_(torch.atan(ratio_p))
            v = delta * delta * _ASPECT
            # alpha = v / ((1 - IoU) + v + eps), a constant weight (no gradient);
            # the journal version gates it to 0 when IoU <= 0.5.
            alpha = v / (1 - iou).add_(v).add_(eps)
            if alpha_gate:
                alpha.mul_(torch.gt(iou, 0.5, out=torch.empty_like(iou)))
            loss.addcmul_(alpha, v)
            if need_grad:
                # dL/d(atan_p) = -2 (4/pi^2) alpha delta = -dL/d(atan_t)
                c = alpha.mul_(delta).mul_(-2 * _ASPECT)
                if need_pred:
                    if authors_gradient:
                        # the authors' d atan_p: (h + eps) dw - w dh
                        g_pw, g_ph = c * ph_eps, (c * pw).neg_()
                    else:
                        # d atan(w/h') = (dw - r dh) / (h' (1 + r^2)), r = w/h'
                        k = ratio_p * ratio_p
                        k.add_(1).mul_(ph_eps)
                        g_pw = c / k
                        g_ph = (g_pw * ratio_p).neg_()
                if need_target:
                    k = ratio_t * ratio_t
                    k.add_(1).mul_(th_eps)
                    g_tw = c.neg() / k
                    g_th = (g_tw * ratio_t).neg_()
    else:  # eiou, focal_eiou
        cw_eps, ch_eps = ew * ew + eps, eh * eh + eps
        dw, dh = pw - tw, ph - th
        qw, qh = dw * dw / cw_eps, dh * dh / ch_eps
        loss = (1 - iou).add_(dist).add_(qw).add_(qh)
        if need_grad:
            # d/dw (w - w_gt)^2 / (C_w^2 + eps) = 2 (w - w_gt) / (C_w^2 + eps)
            g_pw = (2 * dw).div_(cw_eps)
            g_ph = (2 * dh).div_(ch_eps)
            if need_target:
                g_tw, g_th = -g_pw, -g_ph
            # half of d/d e_w of the same term: -(w - w_gt)^2 e_w / (C_w^2 + eps)^2
            g_ew_h = qw.div_(cw_eps).mul_(ew).neg_()
            g_eh_h = qh.div_(ch_eps).mul_(eh).neg_()
        if kind == 'focal_eiou':
            iou_c = iou.clamp(min=eps)
            weight = iou_c.pow(gamma)
            if need_grad:
                scale = weight   # every partial of L_EIoU is multiplied by IoU^gamma
                if not detach_weight and gamma != 0:
                    # d(IoU_c^gamma)/dIoU = gamma IoU_c^gamma / IoU_c [IoU >= eps]:
                    # dL/dIoU = IoU^gamma (-1 + L_EIoU gamma [IoU >= eps] / IoU_c)
                    g_iou = _ge_mask(iou, eps).mul_(loss).div_(iou_c).mul_(gamma).sub_(1)
            loss = loss * weight

    if not need_grad:
        return loss, None, None, None

    # ---- gradient ----------------------------------------------------------------
    if centers:
        # L contains rho^2 / c^2 with rho^2 = (dx^2 + dy^2)/4, c^2 = e_w^2 + e_h^2 + eps:
        # dL/d dx = dx / (2 c^2); half of dL/d e_w = -(rho^2/c^2) e_w / c^2.
        inv_diag = diag_sq.reciprocal_()
        g_dx = dx.mul_(inv_diag).mul_(0.5)
        g_dy = dy.mul_(inv_diag).mul_(0.5)
        d = dist.mul_(inv_diag).neg_()
        if g_ew_h is None:
            g_ew_h, g_eh_h = ew * d, eh * d
        else:
            g_ew_h.addcmul_(ew, d)
            g_eh_h.addcmul_(eh, d)

    # IoU = I / (U + eps), U = A_p + A_t - I:
    # dIoU/dA = -IoU/(U + eps), dIoU/dI = (1 + IoU)/(U + eps).
    inv_u = union_eps.reciprocal_()
    g_area = iou.mul_(inv_u)                  # -dIoU/dA (dL/dA for L = 1 - IoU)
    g_inter_h = inv_u.add_(g_area).mul_(-0.5)  # half of dL/dI for L = 1 - IoU
    if g_iou is not None:                     # dL/dIoU = g_iou instead of -1
        g_area.mul_(g_iou).neg_()
        g_inter_h.mul_(g_iou).neg_()
    if g_union is not None:                   # GIoU's direct dependence on U
        g_area.add_(g_union)
        g_inter_h.sub_(g_union * 0.5)
    # clamp(min=0) passes the gradient where the raw extent is >= 0
    gi_w = g_inter_h * ih
    gi_w.mul_(_ge_mask(iw_raw, 0))
    gi_h = g_inter_h.mul_(iw).mul_(_ge_mask(ih_raw, 0))
    s1x.sign_(), s2x.sign_(), s1y.sign_(), s2y.sign_()
    ax, bx = _axis_partials(gi_w, g_ew_h)
    ay, by = _axis_partials(gi_h, g_eh_h)

    n = pred.shape[0]
    jp = jt = None
    if need_pred:
        gw = g_area * ph if g_pw is None else torch.addcmul(g_pw, g_area, ph)
        gh = g_area * pw if g_ph is None else torch.addcmul(g_ph, g_area, pw)
        jp = pred.new_empty((4, n))
        _edge_grads(jp[0], jp[2], g_dx, gw, ax, bx, s1x, s2x, True)
        _edge_grads(jp[1], jp[3], g_dy, gh, ay, by, s1y, s2y, True)
    if need_target:
        gw = g_area * th if g_tw is None else torch.addcmul(g_tw, g_area, th)
        gh = g_area * tw if g_th is None else torch.addcmul(g_th, g_area, tw)
        jt = pred.new_empty((4, n))
        _edge_grads(jt[0], jt[2], g_dx, gw, ax, bx, s1x, s2x, False)
        _edge_grads(jt[1], jt[3], g_dy, gh, ay, by, s1y, s2y, False)
    return loss, jp, jt, scale


def _chunked_loss_and_jacobian(kind: str, pred: Tensor, target: Tensor, eps: float,
                               gamma: float, alpha_gate: bool, authors_gradient: bool,
                               detach_weight: bool, need_pred: bool, need_target: bool):
    """:func:`_loss_and_jacobian` over blocks of boxes, so that its temporaries take
    bounded memory (a block is large enough for torch's intra-op parallelism on CPU
    and for full GPU kernels); what is kept is the loss, ``J`` and the focal scale."""
    n = pred.shape[0]
    block = 1 << (18 if pred.device.type == 'cuda' else 16)
    options = (eps, gamma, alpha_gate, authors_gradient, detach_weight, need_pred,
               need_target)
    if n <= block:
        return _loss_and_jacobian(kind, pred, target, *options)
    loss = pred.new_empty(n)
    jp = pred.new_empty((4, n)) if need_pred else None
    jt = pred.new_empty((4, n)) if need_target else None
    scale = None
    for start in range(0, n, block):   # n / block iterations, no host synchronisation
        rows = slice(start, min(n, start + block))
        part = _loss_and_jacobian(kind, pred[rows], target[rows], *options)
        loss[rows] = part[0]
        if jp is not None:
            jp[:, rows] = part[1]
        if jt is not None:
            jt[:, rows] = part[2]
        if part[3] is not None:
            if scale is None:
                scale = pred.new_empty(n)
            scale[rows] = part[3]
    return loss, jp, jt, scale


def _compute_dtype(pred: Tensor, target: Tensor) -> torch.dtype:
    """The dtype the torch implementation computes in: half precision as float32, and
    mixed dtypes promoted as torch promotes them (float32 ``pred`` with a float64
    ``target`` is computed in float64, as the plain code does)."""
    def up(dtype):
        return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    return torch.promote_types(up(pred.dtype), up(target.dtype))


def _as_rows(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.reshape(-1, 4).to(dtype)


def _grad_rows(jac: Tensor, grad: Tensor) -> Tensor:
    """``grad[i] * jac[:, i]`` as a contiguous ``Tensor[n, 4]``, in jac's dtype."""
    out = torch.empty((jac.shape[1], 4), dtype=jac.dtype, device=jac.device)
    torch.mul(jac, grad, out=out.t())   # one pass, written straight into (n, 4) rows
    return out


# ---- CPU kernel (csrc/iou_family.c) --------------------------------------------------

_KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}
# None: the compiled kernel for float32/half CPU tensors when it can be built, else the
# torch implementation; False: always the torch implementation; True: like None, but
# an error instead of the fallback when the kernel cannot be built.
CPU_KERNEL: Optional[bool] = None


def _bind_iou(lib):
    head = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float,
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    loss_fn = lib.detloss_iou_family_loss_f32
    loss_fn.restype, loss_fn.argtypes = None, head + [ctypes.c_void_p]
    grad_fn = lib.detloss_iou_family_grad_f32
    grad_fn.restype = None
    grad_fn.argtypes = head + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_void_p]
    return loss_fn, grad_fn


# csrc/iou_family.c; load() gives (loss_fn, grad_fn), or None without a C compiler (then
# the torch implementation above runs on the CPU too)
IOU_KERNEL = CompiledLibrary('iou_family.c', VECTOR_FLAGS, 'IoU-loss',
                             'the torch implementation of the fast path', _bind_iou)


def load_iou_kernel():
    """``(loss_fn, grad_fn)`` of the compiled CPU kernel, or None."""
    return IOU_KERNEL.load()


def _kernel_usable(pred: Tensor, target: Tensor, eps: float, cpu_kernel: Optional[bool]):
    """The kernel, for float32/half CPU tensors (float64 keeps the torch
    implementation's precision), or None. ``cpu_kernel``: False never uses it, True
    raises if it applies but cannot be built."""
    if cpu_kernel is False:
        return None
    applies = (pred.device.type == 'cpu' and target.device.type == 'cpu'
               and pred.dtype != torch.float64 and target.dtype != torch.float64
               and eps >= 1e-30)   # the kernel's log needs IoU >= eps to be a normal float
    kernel = load_iou_kernel() if applies else None
    if cpu_kernel and applies and kernel is None:
        raise RuntimeError('the C IoU-loss kernel could not be built (see the warning)')
    return kernel


def _kernel_args(kind, eps, gamma, alpha_gate, authors_gradient, detach_weight):
    flags = int(alpha_gate) | 2 * int(authors_gradient) | 4 * int(detach_weight)
    return (_KIND_CODES[kind], flags, POW_MODES.get(float(gamma), 0), float(eps),
            float(gamma))


def _f32_rows(x: Tensor) -> Tensor:
    return x.reshape(-1, 4).to(torch.float32).contiguous()


def _kernel_loss(kernel, pred_rows: Tensor, target_rows: Tensor, args) -> Tensor:
    n = pred_rows.shape[0]
    loss = torch.empty(n, dtype=torch.float32)
    p, t, out = pred_rows.data_ptr(), target_rows.data_ptr(), loss.data_ptr()
    # boxes [a, b) on one of torch.get_num_threads() threads (16 bytes a box)
    run_chunks(lambda a, b: kernel[0](*args, p + 16 * a, t + 16 * a, b - a, out + 4 * a),
               n, 4)
    return loss


def _kernel_grads(kernel, pred_rows, target_rows, grad, args, need_pred, need_target):
    n = pred_rows.shape[0]
    grad = grad.reshape(-1).to(torch.float32)
    if grad.stride(0) not in (0, 1):   # expanded (mean/sum) or contiguous
        grad = grad.contiguous()
    # the kernel always writes the pred gradient (a scratch one if only the target's
    # is wanted: a rare case)
    gp = torch.empty((n, 4), dtype=torch.float32)
    gt = torch.empty((n, 4), dtype=torch.float32) if need_target else None
    p, t, g, stride = pred_rows.data_ptr(), target_rows.data_ptr(), grad.data_ptr(), grad.stride(0)
    gp_ptr, gt_ptr = gp.data_ptr(), (gt.data_ptr() if gt is not None else None)

    def chunk(a, b):
        kernel[1](*args, p + 16 * a, t + 16 * a, b - a, g + 4 * a * stride, stride,
                  gp_ptr + 16 * a, None if gt_ptr is None else gt_ptr + 16 * a)
    run_chunks(chunk, n, 4)
    return (gp if need_pred else None), gt


def _plain_loss(kind: str, pred: Tensor, target: Tensor, eps: float, gamma: float,
                alpha_gate: bool, authors_gradient: bool, detach_weight: bool) -> Tensor:
    from . import iou_losses as plain  # imported here: iou_losses imports this module
    if kind.startswith('iou_'):
        return plain.iou_loss(pred, target, kind[4:], eps, fast=False)
    if kind == 'ciou':
        return plain.ciou_loss(pred, target, eps, alpha_gate, authors_gradient, fast=False)
    if kind == 'focal_eiou':
        return plain.focal_eiou_loss(pred, target, gamma, eps, detach_weight, fast=False)
    return getattr(plain, kind + '_loss')(pred, target, eps, fast=False)


class _FusedIoUFamily(torch.autograd.Function):

    @staticmethod
    def forward(ctx, pred, target, kind, eps, gamma, alpha_gate, authors_gradient,
                detach_weight, cpu_kernel):
        need_pred, need_target = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        options = (eps, gamma, alpha_gate, authors_gradient, detach_weight)
        ctx.args = (kind,) + options
        kernel = _kernel_usable(pred, target, eps, cpu_kernel)
        ctx.kernel = kernel
        if kernel is not None:
            # loss only; the backward recomputes what it needs (cheaper than storing)
            pred_rows, target_rows = _f32_rows(pred), _f32_rows(target)
            loss = _kernel_loss(kernel, pred_rows, target_rows, _kernel_args(kind, *options))
            ctx.save_for_backward(pred_rows, target_rows, pred, target)
        else:
            dtype = _compute_dtype(pred, target)
            loss, jp, jt, scale = _chunked_loss_and_jacobian(
                kind, _as_rows(pred, dtype), _as_rows(target, dtype), *options, need_pred,
                need_target)
            # pred and target are kept for a create_graph=True backward only (the caller
            # holds them anyway: no copy, no extra memory).
            ctx.save_for_backward(jp, jt, scale, pred, target)
        return loss.view(pred.shape[:-1]).to(pred.dtype)

    @staticmethod
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        pred, target = saved[-2], saved[-1]
        if torch.is_grad_enabled():
            # create_graph=True: the gradient must itself be differentiable, so take
            # it from the plain code (same function, same gradient).
            inputs = [x for x, need in zip((pred, target), ctx.needs_input_grad) if need]
            with torch.enable_grad():
                loss = _plain_loss(ctx.args[0], pred, target, *ctx.args[1:])
            grads = iter(torch.autograd.grad(loss, inputs, grad, create_graph=True))
            return tuple(next(grads) if need else None for need in ctx.needs_input_grad)
        need_pred, need_target = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.kernel is not None:
            gp, gt = _kernel_grads(ctx.kernel, saved[0], saved[1], grad,
                                   _kernel_args(*ctx.args), need_pred, need_target)
        else:
            jp, jt, scale = saved[:3]
            work = jp if jp is not None else jt
            grad = grad.reshape(-1).to(work.dtype)
            if scale is not None:
                grad = grad * scale
            gp = _grad_rows(jp, grad) if jp is not None else None
            gt = _grad_rows(jt, grad) if jt is not None else None
        # back to the inputs' shape and dtype (half precision: saturated, never Inf)
        if gp is not None:
            gp = saturating_cast(gp.view(pred.shape), pred.dtype)
        if gt is not None:
            gt = saturating_cast(gt.view(target.shape), target.dtype)
        return gp, gt, None, None, None, None, None, None, None


def fused_iou_family(kind: str, pred: Tensor, target: Tensor, eps: float = 1e-7,
                     gamma: float = 0.5, alpha_gate: bool = False,
                     authors_gradient: bool = False, detach_weight: bool = False,
                     cpu_kernel: Optional[bool] = None) -> Tensor:
    """Element-wise loss ``kind`` (one of :data:`KINDS`) of ``pred`` and ``target``
    (``Tensor[..., 4]``, arguments already checked), returned as ``Tensor[...]`` in
    the input dtype (half precision is computed in float32).

    ``cpu_kernel``: None follows :data:`CPU_KERNEL` (by default the compiled kernel for
    float32/half CPU tensors when it can be built, the torch implementation otherwise);
    False/True force it."""
    if cpu_kernel is None:
        cpu_kernel = CPU_KERNEL
    if torch.is_grad_enabled() and (pred.requires_grad or target.requires_grad):
        return _FusedIoUFamily.apply(pred, target, kind, eps, gamma, alpha_gate,
                                     authors_gradient, detach_weight, cpu_kernel)
    options = (eps, gamma, alpha_gate, authors_gradient, detach_weight)
    kernel = _kernel_usable(pred, target, eps, cpu_kernel)
    if kernel is not None:
        loss = _kernel_loss(kernel, _f32_rows(pred), _f32_rows(target),
                            _kernel_args(kind, *options))
    else:
        dtype = _compute_dtype(pred, target)
        loss = _chunked_loss_and_jacobian(kind, _as_rows(pred, dtype), _as_rows(target, dtype),
                                          *options, False, False)[0]
    return loss.view(pred.shape[:-1]).to(pred.dtype)
