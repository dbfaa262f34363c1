r"""DIoU-NMS (Zheng et al., AAAI 2020, https://arxiv.org/abs/1911.08287, Sec. 5).

Greedy NMS in which the highest-scoring remaining box :math:`M` suppresses a box
:math:`B_i` when

.. math::
    IoU(M, B_i) - \left(\frac{\rho^2(M, B_i)}{c^2}\right)^{\beta} > \varepsilon

with :math:`\rho` the distance between the centres, :math:`c` the diagonal of the
smallest box enclosing both and :math:`\varepsilon` the threshold. ``beta`` = 1.0 is
the paper's setting for SSD and Faster R-CNN; the authors' YOLOv3 (darknet) uses 0.6.
Two boxes with the same IoU are less likely to be duplicates when their centres are far
apart, so DIoU-NMS keeps more of the boxes of nearby objects.

Two implementations take the same decisions (unions and diagonals are clamped at
1e-12 before dividing; everything is float32 for float32/half input; a NaN anywhere in
a pair's arithmetic makes the pair suppress nothing, in both, since NaN propagates
through every max, min and clamp and every comparison with NaN is false):

- ``'c'``: the greedy loop in C (``csrc/diou_nms.c``, compiled on first use), CPU only,
  float32 (half precision is converted). For each kept box the sweep over the later
  boxes is branch-free and vectorised (AVX2 where available). With ``beta != 1`` the
  sweep marks the boxes with IoU above the threshold (only they can be suppressed,
  since the penalty is >= 0) and the power is taken for those alone.
- ``'torch'``: any device, any float dtype. The DIoU criterion is evaluated for all
  pairs ``i < j`` in row blocks of bounded memory; the greedy result is then the fixed
  point of ``keep[j] = not any(keep[i] for suppressing pairs (i, j))``, reached by
  vectorised iterations (Cluster-NMS, Zheng et al., TCYB 2021). Box ``j``'s state
  depends only on the boxes before it, so after ``t`` iterations every box at the end
  of a suppression chain of length below ``t`` is final: the fixed point is unique and
  equals the greedy loop's result, after as many iterations as the longest chain, not
  as many as the boxes. With ``beta != 1`` the power is taken only for the pairs with
  IoU above the threshold.

``backend='auto'`` takes ``'c'`` for float32/half CPU tensors when the kernel can be
built, else ``'torch'`` (and always ``'torch'`` on a GPU). Without a C compiler
everything runs on the torch path (a warning says so once).

The operator is ``torch.ops.detloss.diou_nms`` (a ``torch.library`` custom op with a
fake kernel whose output length is a new unbacked size), so ``torch.compile`` traces a
model that calls :func:`diou_nms` without a graph break, and
``torch.library.opcheck`` passes. It has no gradient (its output is integer indices).

On a GPU: a greedy loop written in torch (one kept box at a time) would wait for the
device once per kept box. The torch path above waits once per row block of pairs
(``nonzero``: ``_BLOCK_ELEMENTS`` pairs per block, one block up to 2048 boxes), once per
fixed-point iteration (``torch.equal``: the length of the longest suppression chain,
typically 2 to 5) and once for the kept indices. Like mmcv's and torchvision's CUDA
``nms``, NMS returns a data-dependent number of indices, so it must wait for the device
at least once; this is inference-time work, once per image after the score threshold
and ``nms_pre``, never on the training path. ``tools/gpu_check.sh`` measures it (and the
dense matrix form of :func:`.cluster_nms.cluster_diou_nms`) against mmcv's CUDA ``nms``.
"""
import ctypes

import torch
from torch import Tensor

from ._checks import check_choice, check_finite, check_positive
from ._kernels import BASE_FLAGS, CompiledLibrary

__all__ = ['diou_nms', 'batched_diou_nms', 'NMS_BACKENDS']


def _bind_nms(lib):
    fn = lib.detloss_diou_nms_f32
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_float,
                   ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p]
    return fn


# the C greedy loop (csrc/diou_nms.c); load() gives the ctypes function or None
NMS_KERNEL = CompiledLibrary('diou_nms.c', BASE_FLAGS, 'DIoU-NMS',
                             'the portable torch implementation', _bind_nms)

NMS_BACKENDS = ('auto', 'c', 'torch')
_EPS = 1e-12
_BLOCK_ELEMENTS = 1 << 22  # pairs evaluated at once by the torch path


def _check_nms_args(boxes: Tensor, scores: Tensor, iou_threshold: float, beta: float,
                    offset: float, backend: str) -> None:
    if not isinstance(boxes, Tensor) or not boxes.is_floating_point():
        raise TypeError(f'boxes must be a floating-point torch.Tensor, got '
                        f'{getattr(boxes, "dtype", type(boxes).__name__)}')
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must have shape (N, 4) as (x1, y1, x2, y2), got '
                         f'{tuple(boxes.shape)}')
    if not isinstance(scores, Tensor) or scores.shape != boxes.shape[:1]:
        raise ValueError(f'scores must be a tensor of shape ({boxes.shape[0]},), got '
                         f'{tuple(getattr(scores, "shape", ()))}')
    check_finite('iou_threshold', iou_threshold)
    if scores.device != boxes.device:
        raise ValueError(f'scores must be on the device of boxes ({boxes.device}), got '
                         f'{scores.device}')
    check_positive('beta', beta)
    check_choice('offset', offset, (0, 1))
    check_choice('backend', backend, NMS_BACKENDS)
    if backend == 'c':
        _check_kernel_input(boxes)


def _check_kernel_input(boxes: Tensor) -> None:
    """What the C kernel reads: CPU boxes of float32 or half precision (converted to
    contiguous float32 by :func:`_kernel_boxes`)."""
    if boxes.device.type != 'cpu':
        raise ValueError(f"backend='c' needs CPU tensors, got boxes on {boxes.device}")
    if boxes.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"backend='c' needs float32 or half-precision boxes (float64 "
                         f"would be rounded), got {boxes.dtype}")


def _pair_parts(boxes: Tensor, offset: float):
    """Per-box quantities of :func:`_iou_penalty_block`: coordinates, area, twice the centre."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1 + offset) * (y2 - y1 + offset)
    return x1, y1, x2, y2, area, x1 + x2, y1 + y2


def _iou_penalty_block(parts, r: slice, c: slice, offset: float):
    """IoU and DIoU's ``rho^2 / c^2`` of boxes ``r`` (rows) against boxes ``c``
    (columns), two ``Tensor[len(r), len(c)]``; ``parts`` from :func:`_pair_parts`."""
    x1, y1, x2, y2, area, cx, cy = parts
    w = (torch.minimum(x2[r, None], x2[None, c]) - torch.maximum(x1[r, None], x1[None, c])
         + offset).clamp(min=0)
    h = (torch.minimum(y2[r, None], y2[None, c]) - torch.maximum(y1[r, None], y1[None, c])
         + offset).clamp(min=0)
    inter = w * h
    iou = inter / (area[r, None] + area[None, c] - inter).clamp(min=_EPS)
    cw = torch.maximum(x2[r, None], x2[None, c]) - torch.minimum(x1[r, None], x1[None, c]) + offset
    ch = torch.maximum(y2[r, None], y2[None, c]) - torch.minimum(y1[r, None], y1[None, c]) + offset
    dx = cx[r, None] - cx[None, c]
    dy = cy[r, None] - cy[None, c]
    return iou, 0.25 * (dx * dx + dy * dy) / (cw * cw + ch * ch).clamp(min=_EPS)


def _diou_block(parts, r: slice, c: slice, beta: float, offset: float) -> Tensor:
    """``IoU - (rho^2 / c^2) ** beta`` of boxes ``r`` (rows) against boxes ``c``
    (columns), ``Tensor[len(r), len(c)]``; ``parts`` from :func:`_pair_parts`."""
    iou, penalty = _iou_penalty_block(parts, r, c, offset)
    return iou - (penalty if beta == 1.0 else penalty.pow(beta))


def _suppressing_pairs(boxes: Tensor, iou_threshold: float, beta: float, offset: float):
    """All pairs ``(i, j)``, ``i < j`` in score order, where box i would suppress box j."""
    n = boxes.shape[0]
    parts = _pair_parts(boxes, offset)
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    rows, cols = [], []
    for start in range(0, n, block):  # row blocks bound the memory, not a loop per box
        r = slice(start, min(n, start + block))
        c = slice(start, n)
        iou, penalty = _iou_penalty_block(parts, r, c, offset)
        if beta == 1.0:
            hit = torch.triu(iou - penalty > iou_threshold, diagonal=1)
            i, j = hit.nonzero(as_tuple=True)  # block row k is box start + k
        else:
            # penalty^beta >= 0: only pairs with IoU > threshold can suppress, so the
            # power (the costly operator) is taken on those pairs alone
            i, j = torch.triu(iou > iou_threshold, diagonal=1).nonzero(as_tuple=True)
            hit = iou[i, j] - penalty[i, j].pow(beta) > iou_threshold
            i, j = i[hit], j[hit]
        rows.append(i + start)
        cols.append(j + start)
    return torch.cat(rows), torch.cat(cols)


def _greedy_fixed_point(n: int, rows: Tensor, cols: Tensor, device) -> Tensor:
    keep = torch.ones(n, dtype=torch.bool, device=device)
    while True:
        hits = torch.zeros(n, dtype=torch.int32, device=device)
        hits.index_add_(0, cols, keep[rows].to(torch.int32))
        new_keep = hits == 0
        if torch.equal(new_keep, keep):
            return keep
        keep = new_keep


def _torch_nms_sorted(boxes: Tensor, iou_threshold: float, beta: float, offset: float) -> Tensor:
    rows, cols = _suppressing_pairs(boxes, iou_threshold, beta, offset)
    keep = _greedy_fixed_point(boxes.shape[0], rows, cols, boxes.device)
    return keep.nonzero().squeeze(1)


def _kernel_boxes(boxes: Tensor) -> Tensor:
    """The boxes as the C kernel reads them: a CPU ``Tensor[N, 4]`` of contiguous
    float32 (half precision converted, other devices and float64 refused)."""
    _check_kernel_input(boxes)
    return boxes.detach().to(torch.float32).contiguous()


def _c_nms_sorted(kernel, boxes: Tensor, iou_threshold: float, beta: float,
                  offset: float) -> Tensor:
    boxes = _kernel_boxes(boxes)
    n = boxes.shape[0]
    suppressed = torch.zeros(n, dtype=torch.uint8)
    keep = torch.empty(n, dtype=torch.int64)
    num = kernel(boxes.data_ptr(), n, iou_threshold, beta, float(offset),
                 suppressed.data_ptr(), keep.data_ptr())
    if num < 0:  # the kernel could not allocate its working copy of the boxes
        return _torch_nms_sorted(boxes, iou_threshold, beta, offset)
    return keep[:num]


def _kernel_for(boxes: Tensor, backend: str):
    """The ctypes function when ``backend`` (after ``'auto'``) is the C kernel, else None."""
    if backend == 'torch':
        return None
    usable = boxes.device.type == 'cpu' and boxes.dtype != torch.float64
    kernel = NMS_KERNEL.load() if usable else None
    if backend == 'c' and kernel is None:
        raise RuntimeError("backend='c': the C DIoU-NMS kernel could not be built")
    return kernel


@torch.library.custom_op('detloss::diou_nms', mutates_args=())
def _diou_nms_op(boxes: Tensor, scores: Tensor, iou_threshold: float, beta: float,
                 offset: int, backend: str) -> Tensor:
    """``torch.ops.detloss.diou_nms``: :func:`diou_nms` with every argument given."""
    _check_nms_args(boxes, scores, iou_threshold, beta, offset, backend)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    kernel = _kernel_for(sorted_boxes, backend)
    if kernel is not None:
        kept = _c_nms_sorted(kernel, sorted_boxes, iou_threshold, beta, offset)
    else:
        if sorted_boxes.dtype in (torch.float16, torch.bfloat16):
            sorted_boxes = sorted_boxes.float()
        kept = _torch_nms_sorted(sorted_boxes, iou_threshold, beta, offset)
    return order[kept.to(order.device)]


@_diou_nms_op.register_fake
def _diou_nms_fake(boxes, scores, iou_threshold, beta, offset, backend):
    _check_nms_args(boxes, scores, iou_threshold, beta, offset, backend)
    # how many boxes are kept depends on the data: a new unbacked size
    num_kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num_kept,), dtype=torch.int64)


def diou_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, beta: float = 1.0,
             offset: float = 0, backend: str = 'auto') -> Tensor:
    """DIoU-NMS of one set of boxes.

    Args:
        boxes: ``Tensor[N, 4]`` boxes ``(x1, y1, x2, y2)``, floating point.
        scores: ``Tensor[N]`` on the device of ``boxes``.
        iou_threshold: a box is suppressed when ``IoU - (rho^2 / c^2) ** beta`` with a
            higher-scoring kept box is strictly greater than this.
        beta: exponent of the distance penalty (> 0); 1.0 (SSD, Faster R-CNN), 0.6
            (the authors' YOLOv3).
        offset: 0, or 1 for the legacy ``x2 - x1 + 1`` width convention (as mmcv).
        backend: ``'auto'``, ``'c'`` or ``'torch'`` (see the module docstring).

    Returns:
        ``Tensor[K]`` int64 indices of the kept boxes, by descending score (ties keep
        their input order; NaN scores sort first, as in ``torch.sort``).
    """
    _check_nms_args(boxes, scores, iou_threshold, beta, offset, backend)
    return torch.ops.detloss.diou_nms(boxes.detach(), scores.detach(), float(iou_threshold),
                                      float(beta), int(offset), backend)


def batched_diou_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                     beta: float = 1.0, offset: float = 0, backend: str = 'auto') -> Tensor:
    """Class-aware DIoU-NMS: boxes only suppress boxes with the same ``idxs``.

    Boxes of each category are shifted by ``idx * (max coordinate + 1)`` (the trick of
    torchvision's and mmcv's ``batched_nms``), which puts different categories far
    apart: their IoU is 0 and the distance penalty positive, so with
    ``iou_threshold >= 0`` they never suppress each other.

    Args:
        idxs: ``Tensor[N]`` integer category of each box.
    Returns:
        ``Tensor[K]`` int64 indices of the kept boxes by descending score.
    """
    _check_nms_args(boxes, scores, iou_threshold, beta, offset, backend)
    if not isinstance(idxs, Tensor) or idxs.shape != boxes.shape[:1]:
        raise ValueError(f'idxs must be a tensor of shape ({boxes.shape[0]},), got '
                         f'{tuple(getattr(idxs, "shape", ()))}')
    if iou_threshold < 0:
        raise ValueError(f'iou_threshold must be >= 0 for batched_diou_nms (categories are '
                         f'separated by distance), got {iou_threshold}')
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    shift = idxs.to(boxes.dtype) * (boxes.max() - boxes.min() + 1)
    return diou_nms(boxes + shift[:, None], scores, iou_threshold, beta, offset, backend)
