r"""Variance voting (He et al., CVPR 2019, https://arxiv.org/abs/1809.08545, Algorithm 1).

After NMS has chosen a box :math:`b` among the candidates of its class, var voting
replaces each of its coordinates by an average of that coordinate over the candidates
:math:`b_i` that overlap it, weighted by how much they overlap and by how certain they
are of the coordinate:

.. math::
    p_i = e^{-(1 - IoU(b_i, b))^2 / \sigma_t},\qquad
    x = \frac{\sum_i p_i\, x_i / \sigma_{x,i}^2}{\sum_i p_i / \sigma_{x,i}^2}
    \quad\text{over } \{i : IoU(b_i, b) > 0\}

for each coordinate :math:`x \in \{x_1, y_1, x_2, y_2\}` with its own variance
:math:`\sigma_{x,i}^2`. The score is not used: a candidate votes by localisation
certainty, not by classification confidence. The kept box itself has IoU 1 and votes
with :math:`p = 1`. :math:`\sigma_t` = 0.01 is the reference's ``STD.IOU_SIGMA``
(PAPERS.md); smaller values keep the vote closer to the kept box.

What detloss follows, and why:

* The paper's Algorithm 1: every kept box votes over *all* candidates of its class
  (the set before NMS), IoU > 0, IoU computed with the kept box as NMS saw it
  (before it was voted). The reference's ``py_cpu_nms.soft`` instead votes over the
  candidates its soft-NMS loop has not processed yet (those it swapped to positions
  ``i..N`` and not dropped below score 0.001), with IoU > 0.01 (its ``STD_TH = 0.9``
  is overridden to 0.01 for the ``stdiou`` method). That makes a box's vote depend on
  the order of processing (a higher-scoring neighbour already processed no longer
  votes); the paper's formulation does not, and can be computed for all kept boxes at
  once.
* Plain IoU with ``x2 - x1`` widths (mmdet's convention), not Detectron's
  ``x2 - x1 + 1``.
* Variances in image coordinates, per corner coordinate (x1, y1, x2, y2), as given.
  The reference passes the network's :math:`\sigma` of its *encoded* targets
  (corner offsets divided by the proposal's width or height and multiplied by the
  regression weights 10, 10, 5, 5) straight to the voting, so candidates from larger
  proposals are over-weighted; and with ``XYXY`` its deltas come in the order
  (x1, x2, y1, y2) while the boxes are (x1, y1, x2, y2), so :math:`\sigma` of x2 weights
  y1 and vice versa. :class:`~detloss_plugin.KLBBoxHead` maps the predicted variance
  to image coordinates first (see its docstring).
* Soft-NMS before voting is the caller's choice (the head takes mmcv's ``soft_nms``
  from ``test_cfg``); voting itself only needs the indices that NMS kept.

Batched: ``idxs`` separates groups (class, or image * num_classes + class); all kept
boxes of all groups vote in one vectorised pass (in row blocks of bounded memory), with
no Python loop per box.
"""
from typing import Optional

import torch
from torch import Tensor

from ._checks import check_positive, check_tensor
from .box_geometry import box_pair_geometry

__all__ = ['var_voting']

_BLOCK_ELEMENTS = 1 << 22  # (kept box, candidate) IoUs held at once


def _check_args(boxes, scores, variances, keep, idxs, sigma_t) -> None:
    check_tensor('boxes', boxes)
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f'boxes must have shape (N, 4) as (x1, y1, x2, y2), got '
                         f'{tuple(boxes.shape)}')
    n = boxes.shape[0]
    check_tensor('scores', scores)
    if tuple(scores.shape) != (n,):
        raise ValueError(f'scores must have shape ({n},) for boxes of shape '
                         f'{tuple(boxes.shape)}, got {tuple(scores.shape)}')
    check_tensor('variances', variances)
    if variances.shape != boxes.shape:
        raise ValueError(f'variances must have the shape of boxes {tuple(boxes.shape)} '
                         f'(sigma^2 per coordinate), got {tuple(variances.shape)}')
    if not isinstance(keep, Tensor) or keep.dim() != 1 or keep.is_floating_point() \
            or keep.dtype == torch.bool:
        raise ValueError(f'keep must be a 1-D integer tensor of indices into boxes, got '
                         f'{getattr(keep, "dtype", type(keep).__name__)} of shape '
                         f'{tuple(getattr(keep, "shape", ()))}')
    if idxs is not None and (not isinstance(idxs, Tensor) or tuple(idxs.shape) != (n,)):
        raise ValueError(f'idxs must be None or a tensor of shape ({n},), got '
                         f'{tuple(getattr(idxs, "shape", ()))}')
    check_positive('sigma_t', sigma_t)


def _check_values(variances: Tensor, keep: Tensor, n: int) -> None:
    """The checks that read tensor values: one host synchronisation (inference)."""
    negative, out_of_range = torch.stack([
        (variances < 0).any(), ((keep < 0) | (keep >= n)).any()]).tolist()
    if negative:
        raise ValueError(f'variances must be >= 0 (sigma^2 per coordinate), got a minimum '
                         f'of {variances.min().item()}')
    if out_of_range:
        raise ValueError(f'keep must hold indices in [0, {n}) into boxes of shape ({n}, 4), '
                         f'got values from {keep.min().item()} to {keep.max().item()}')


def var_voting(boxes: Tensor, scores: Tensor, variances: Tensor, keep: Tensor,
               sigma_t: float = 0.01, idxs: Optional[Tensor] = None) -> Tensor:
    r"""Refine the boxes that NMS kept by variance voting over all candidates.

    Args:
        boxes: ``Tensor[N, 4]`` candidates ``(x1, y1, x2, y2)``, ``x1 <= x2``,
            ``y1 <= y2``, before NMS (for one class, or several told apart by
            ``idxs``).
        scores: ``Tensor[N]`` their scores; returned alongside the voted boxes (the
            vote itself does not use them, see the module docstring).
        variances: ``Tensor[N, 4]``, :math:`\sigma^2` of each coordinate, >= 0 (a
            negative value is an error), in the coordinates of ``boxes``; any float
            dtype (it need not be that of ``boxes``).
        keep: ``Tensor[K]`` integer indices into ``boxes`` of the boxes NMS kept, in
            ``[0, N)`` (a negative index is an error, not Python's from-the-end).
        sigma_t: :math:`\sigma_t`, a finite number > 0, of the IoU weight; 0.01 (the
            reference).
        idxs: optional ``Tensor[N]`` group of each candidate (class, or image and
            class): a candidate votes only for kept boxes of its own group.

    Returns:
        ``Tensor[K, 5]``: the voted boxes and the kept boxes' scores, in the order of
        ``keep`` (the ``dets`` layout of mmcv's NMS ops).

    The weights are computed as :math:`\exp(l_i - \max_j l_j)` with
    :math:`l_i = -(1 - IoU_i)^2/\sigma_t - \log\sigma_i^2` (the same normalised weights
    as :math:`p_i / \sigma_i^2`, without overflow for tiny variances), only for the
    (kept box, candidate) pairs that vote; variances are clamped below at the dtype's
    smallest normal number (a zero variance, such as a standard deviation that
    underflowed, makes that candidate decide the coordinate). A candidate with an
    infinite variance has weight 0 (the limit of :math:`p_i/\sigma_i^2`); a coordinate
    for which every voter has an infinite variance keeps the kept box's value. NaN in
    a voter's box or variance gives NaN. Checking ``variances`` and ``keep`` is one
    host synchronisation and selecting the voting pairs one per block of kept boxes
    (inference only). A kept box always votes for itself, also when it has zero area
    (IoU 0 with itself). Boxes and variances are computed in the wider of their dtypes,
    at least float32; the result has the dtype of ``boxes``. No gradient is meant to
    flow (inference), but the function is differentiable.
    """
    _check_args(boxes, scores, variances, keep, idxs, sigma_t)
    dtype = boxes.dtype
    k = keep.shape[0]
    if k == 0:
        return boxes.new_zeros((0, 5))
    keep = keep.to(boxes.device)
    n = boxes.shape[0]
    _check_values(variances, keep, n)
    # one working dtype for boxes and variances (float32 boxes may come with float64
    # variances), at least float32
    work = torch.promote_types(torch.promote_types(dtype, variances.dtype), torch.float32)
    boxes, variances = boxes.to(work), variances.to(work)
    tiny = torch.finfo(work).tiny
    log_var = variances.clamp(min=tiny).log()  # (N, 4); +Inf for an infinite variance
    voted = []
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, k, block):  # row blocks of kept boxes: memory, not a per-box loop
        rows = keep[start:start + block]
        iou = box_pair_geometry(boxes[rows][:, None, :], boxes[None, :, :]).iou  # (k', N)
        votes = iou > 0
        votes[torch.arange(rows.shape[0], device=rows.device), rows] = True
        if idxs is not None:
            votes &= idxs[rows][:, None] == idxs[None, :]
        # only the (kept box, candidate) pairs that vote: a few per kept box
        r, c = votes.nonzero(as_tuple=True)
        logit = (-(1 - iou[r, c]).square() / sigma_t)[:, None] - log_var[c]   # (P, 4)
        r4 = r[:, None].expand(-1, 4)
        row_max = logit.new_full((rows.shape[0], 4), float('-inf')).scatter_reduce(
            0, r4, logit, 'amax')
        # the shift cancels in num / den: no gradient needed through it. A coordinate
        # whose voters all have infinite variance has row_max -Inf: shifted by 0, its
        # weights are all 0 (no information to vote with) and it keeps the kept box's
        # value below.
        shift = row_max.detach()
        shift = torch.where(shift == float('-inf'), torch.zeros_like(shift), shift)
        weight = torch.exp(logit - shift[r])                                  # <= 1
        num = boxes.new_zeros((rows.shape[0], 4)).index_add_(0, r, weight * boxes[c])
        den = boxes.new_zeros((rows.shape[0], 4)).index_add_(0, r, weight)
        # den >= 1 where a voter has a finite variance (a row's largest weight is 1)
        voted.append(torch.where(den > 0, num / den.clamp(min=tiny), boxes[rows]))
    voted = torch.cat(voted, dim=0)
    return torch.cat([voted, scores[keep].to(voted.dtype)[:, None]], dim=1).to(dtype)
