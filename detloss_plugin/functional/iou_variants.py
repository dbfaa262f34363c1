r"""More IoU-family box-regression losses, element-wise: SIoU, Alpha-IoU and Wise-IoU.

Every function takes ``pred`` and ``target`` as ``Tensor[..., 4]`` boxes
``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2`` and returns the loss per box,
``Tensor[...]``, with no reduction. Half-precision inputs are computed in float32 and
the result is cast back. ``eps`` (default 1e-7) enters denominators only. The geometry
(IoU, enclosing box, centres) comes from :mod:`.box_geometry`.

Notation as in :mod:`.iou_losses`: :math:`B, B^{gt}` the predicted and target boxes,
:math:`C` the smallest box enclosing both (width :math:`C_w`, height :math:`C_h`),
:math:`\rho` the distance between the centres, :math:`c^2 = C_w^2 + C_h^2`.
"""
from typing import Optional, Union

import torch
import torch.distributed as dist
from torch import Tensor

from ._checks import (check_boxes, check_choice, check_finite, check_positive, check_tensor,
                      upcast)
from .box_geometry import box_pair_geometry, center_offsets
from .iou_losses import _aspect_term

__all__ = ['check_theta', 'siou_loss', 'alpha_iou_loss', 'wiou_loss', 'wiou_running_mean',
           'ALPHA_IOU_BASES', 'WIOU_VERSIONS']

ALPHA_IOU_BASES = ('iou', 'giou', 'diou', 'ciou')
WIOU_VERSIONS = ('v1', 'v2', 'v3')


# --------------------------------------------------------------------------- SIoU
def check_theta(theta: float) -> None:
    """SIoU's ``theta`` is a finite number >= 1."""
    check_finite('theta', theta)
    if theta < 1:
        raise ValueError(f'theta must be >= 1, got {theta}')


def siou_loss(pred: Tensor, target: Tensor, theta: float = 4.0, eps: float = 1e-7) -> Tensor:
    r"""SIoU loss (Gevorgyan, "SIoU Loss: More Powerful Learning for Bounding Box
    Regression", 2022, https://arxiv.org/abs/2205.12740):

    .. math::
        L_{SIoU} = 1 - IoU + \frac{\Delta + \Omega}{2}

    - angle cost :math:`\Lambda = 1 - 2\sin^2(\arcsin(\frac{|d_y|}{\sigma}) - \frac{\pi}{4})
      = \sin 2\alpha = \frac{2 |d_x| |d_y|}{\sigma^2}`, with :math:`(d_x, d_y)` the offset
      between the centres, :math:`\sigma^2 = d_x^2 + d_y^2` and :math:`\alpha` the angle
      of the centre line to the x axis (the paper switches to :math:`\pi/2 - \alpha`
      above :math:`\pi/4`, which leaves :math:`\sin 2\alpha` unchanged);
    - distance cost :math:`\Delta = \sum_{t=x,y} (1 - e^{-\gamma \rho_t})`,
      :math:`\rho_x = (d_x / C_w)^2`, :math:`\rho_y = (d_y / C_h)^2`,
      :math:`\gamma = 2 - \Lambda`: in :math:`[0, 2)`, growing with the distance;
    - shape cost :math:`\Omega = \sum_{t=w,h} (1 - e^{-\omega_t})^\theta`,
      :math:`\omega_w = \frac{|w - w^{gt}|}{\max(w, w^{gt})}`, likewise :math:`\omega_h`.

    The loss lies in :math:`[0, 1 + (2 + 2(1 - 1/e)^4)/2) \approx [0, 2.16)` and is 0
    only for :math:`B = B^{gt}`.

    Args:
        pred, target: ``Tensor[..., 4]``.
        theta: the shape cost's exponent, finite, >= 1 (paper: 4, chosen in [2, 6];
            below 1 the shape cost has an infinite slope at a matching shape).
        eps: added to :math:`\sigma^2`, :math:`C_w^2`, :math:`C_h^2`,
            :math:`\max(w, w^{gt})` and the union.

    Returns:
        ``Tensor[...]``, the loss per box.

    Departures: :math:`\Lambda` is computed in the closed form
    :math:`2|d_x||d_y|/(\sigma^2 + \epsilon)` (the same value as the paper's arcsin
    form, without arcsin's infinite derivative at 1; 0 for concentric boxes, where the
    paper leaves it undefined). :math:`\Lambda` is differentiated through
    :math:`\gamma` (the paper says nothing; mmdet and the Wise-IoU reference do the same).

    Differences from mmdet 3.3's ``siou_loss`` (``mmdet/models/losses/iou_loss.py``,
    from YOLOv6):

    - mmdet computes :math:`\Delta = 2 - e^{g\rho_x} - e^{g\rho_y}` with
      :math:`g = \Lambda - 2` for ``neg_gamma=True`` (the paper's distance cost, as
      here) but :math:`g = 2 - \Lambda` for ``neg_gamma=False``, its default ("more
      stable" in its comment): a distance cost of the opposite sign (:math:`\le 0`,
      unbounded below): once the boxes are disjoint its loss *falls* as a box moves
      away from its target, down to 0 at the clamp below.
    - mmdet clamps the SIoU to ``[-1, 1]``: its loss is :math:`L` clamped to
      ``[0, 2]``, with zero gradient outside. With ``neg_gamma=True`` only the upper
      bound can be reached, where :math:`(\Delta + \Omega)/2 > 1 + IoU`: since
      :math:`L < 1 + (2 + 2(1 - 1/e)^4)/2 \approx 2.16`, only by disjoint boxes far
      apart along both axes and of very different shapes. Here the loss is not clamped.
    - mmdet adds ``eps`` to the centre offsets (``s_cw``, ``s_ch``) and to both
      heights (not the widths) in the shape cost, clamps the enclosing box's sides at
      ``eps`` and has no ``eps`` in :math:`\max(w, w^{gt})` (NaN for two boxes of zero
      width); its default ``eps`` is 1e-6.
    - mmdet computes :math:`\Lambda` through arcsin and a switch at
      :math:`\sin\alpha = \sqrt 2/2`; same value.

    With ``neg_gamma=True``, away from the clamp and with ``eps`` negligible, the two
    agree in value and gradient (tests/unit/test_siou_alpha_wiou.py).
    """
    check_boxes(pred, target)
    check_theta(theta)
    check_positive('eps', eps)
    pred, target, dtype = upcast(pred, target)
    g = box_pair_geometry(pred, target, eps, enclosing=True)
    dx, dy = center_offsets(pred, target)
    angle = 2 * dx.abs() * dy.abs() / (dx * dx + dy * dy + eps)
    gamma = 2 - angle
    rho_x = dx * dx / (g.enclose_w.square() + eps)
    rho_y = dy * dy / (g.enclose_h.square() + eps)
    distance = -torch.expm1(-gamma * rho_x) - torch.expm1(-gamma * rho_y)
    omega_w = (g.pred_w - g.target_w).abs() / (torch.maximum(g.pred_w, g.target_w) + eps)
    omega_h = (g.pred_h - g.target_h).abs() / (torch.maximum(g.pred_h, g.target_h) + eps)
    shape = (-torch.expm1(-omega_w)).pow(theta) + (-torch.expm1(-omega_h)).pow(theta)
    return (1 - g.iou + 0.5 * (distance + shape)).to(dtype)


# ---------------------------------------------------------------------- Alpha-IoU
def _power(x: Tensor, alpha: float, eps: float) -> Tensor:
    """``x ** alpha`` for ``x >= 0``: rounding below 0 is clamped away; for
    ``alpha < 1`` (infinite slope at 0) ``x`` is clamped at ``eps``."""
    return x.clamp(min=0 if alpha >= 1 else eps).pow(alpha)


def alpha_iou_loss(pred: Tensor, target: Tensor, alpha: float = 3.0, base: str = 'ciou',
                   eps: float = 1e-7) -> Tensor:
    r"""Alpha-IoU loss (He et al., "Alpha-IoU: A Family of Power Intersection over
    Union Losses for Bounding Box Regression", NeurIPS 2021,
    https://arxiv.org/abs/2110.13675; reference code Jacobi93/Alpha-IoU,
    ``bbox_alpha_iou`` in ``utils/general.py``): the power ``alpha`` applied to the
    IoU and to the penalty of the chosen ``base`` loss,

    .. math::
        L_{\alpha\text{-}IoU} &= 1 - IoU^\alpha \\
        L_{\alpha\text{-}GIoU} &= 1 - IoU^\alpha
            + \left(\frac{|C| - |B \cup B^{gt}|}{|C|}\right)^\alpha \\
        L_{\alpha\text{-}DIoU} &= 1 - IoU^\alpha + \frac{\rho^{2\alpha}}{c^{2\alpha}} \\
        L_{\alpha\text{-}CIoU} &= 1 - IoU^\alpha + \frac{\rho^{2\alpha}}{c^{2\alpha}}
            + (\beta v)^\alpha

    with CIoU's :math:`v` and trade-off :math:`\beta = v / ((1 - IoU) + v)` (plain IoU,
    no gradient, as in :func:`.iou_losses.ciou_loss` and the reference). ``alpha = 1``
    gives back the IoU / GIoU / DIoU / CIoU losses (AAAI form of CIoU, no gate).

    Args:
        alpha: the power, a finite number > 0 (paper and reference default: 3; > 1
            up-weights high-IoU boxes).
        base: ``'iou'``, ``'giou'``, ``'diou'`` or ``'ciou'`` (the reference's training
            script uses ``'ciou'``).
        eps: added to the union, :math:`|C|`, :math:`c^2`, the heights in :math:`v`
            and :math:`(1 - IoU) + v`.

    Departures: the paper's Box-Cox form :math:`(1 - IoU^\alpha)/\alpha` has the
    factor :math:`1/\alpha`; its power family (the form above) and the reference code
    do not, nor does this function. The reference adds ``eps`` inside every power
    (:math:`(IoU + \epsilon)^\alpha`, ``(penalty + eps)^alpha``), clamps :math:`|C|` at
    the union and uses ``eps`` 1e-9; here the powers are exact and a term is clamped
    at ``eps`` only for ``alpha < 1`` (where :math:`x^\alpha` has an infinite slope at
    0: the value then deviates by at most :math:`\epsilon^\alpha`).
    """
    check_boxes(pred, target)
    check_positive('alpha', alpha)
    check_choice('base', base, ALPHA_IOU_BASES)
    check_positive('eps', eps)
    pred, target, dtype = upcast(pred, target)
    g = box_pair_geometry(pred, target, eps, enclosing=base != 'iou',
                          centers=base in ('diou', 'ciou'))
    loss = 1 - _power(g.iou, alpha, eps)
    if base == 'giou':
        enclose = g.enclose_w * g.enclose_h
        loss = loss + _power((enclose - g.union) / (enclose + eps), alpha, eps)
    elif base in ('diou', 'ciou'):
        diag_sq = g.enclose_w.square() + g.enclose_h.square() + eps
        loss = loss + _power(g.center_dist_sq / diag_sq, alpha, eps)
        if base == 'ciou':
            v = _aspect_term(g, False, eps)
            with torch.no_grad():  # CIoU's trade-off weight, not differentiated
                beta = v / (1 - g.iou + v + eps)
            loss = loss + _power(beta * v, alpha, eps)
    return loss.to(dtype)


# ----------------------------------------------------------------------- Wise-IoU
def wiou_loss(pred: Tensor, target: Tensor, version: str = 'v3',
              iou_mean: Optional[Union[Tensor, float]] = None, alpha: float = 1.9,
              delta: float = 3.0, gamma: float = 0.5, eps: float = 1e-7) -> Tensor:
    r"""Wise-IoU loss, v1, v2 or v3 (Tong et al., "Wise-IoU: Bounding Box Regression
    Loss with Dynamic Focusing Mechanism", 2023, https://arxiv.org/abs/2301.10051;
    reference code Instinct323/wiou).

    .. math::
        L_{IoU} = 1 - IoU, \qquad
        L_{v1} = R_{WIoU} L_{IoU}, \quad
        R_{WIoU} = \exp\left(\frac{\rho^2}{(C_w^2 + C_h^2)^*}\right) \in [1, e)

    .. math::
        L_{v2} = \left(\frac{L_{IoU}^*}{\overline{L_{IoU}}}\right)^\gamma L_{v1}, \qquad
        L_{v3} = r L_{v1}, \quad r = \frac{\beta}{\delta \alpha^{\beta - \delta}}, \quad
        \beta = \frac{L_{IoU}^*}{\overline{L_{IoU}}}

    :math:`^*` marks a value without gradient (the enclosing box's diagonal, and the
    focusing coefficients' :math:`L_{IoU}`); :math:`\overline{L_{IoU}}` is a running
    mean of :math:`L_{IoU}` kept by the caller (:func:`wiou_running_mean`; the
    registered ``WIoULoss`` keeps it in a buffer). v3's :math:`r` is non-monotonic in
    the outlier degree :math:`\beta`: :math:`r = 1` at :math:`\beta = \delta`, largest
    at :math:`\beta = 1 / \ln\alpha`, small for both the best and the worst boxes.

    Args:
        version: ``'v1'``, ``'v2'`` or ``'v3'`` (default).
        iou_mean: :math:`\overline{L_{IoU}}`, a float or a 0-d tensor (no gradient);
            required for v2 and v3, ignored by v1. A float must be finite and > 0 (a
            ``ValueError`` otherwise). A tensor's value is not checked on the host: it
            is clamped at ``eps`` (a mean that underflowed to 0), and a negative or NaN
            tensor makes the loss NaN.
        alpha, delta: v3's focusing parameters, finite and > 0. Defaults 1.9 and
            3.0: the paper's (Sec. 4, with YOLOv7 on MS-COCO) and the reference's ``v1``
            branch. The reference's later code uses other values: 1.6 / 2.5, then
            1.5 / 3.4, and 1.7 / 2.7 in its current ``IouLoss`` (December 2023).
        gamma: v2's exponent, finite and > 0 (0.5: the reference's ``sqrt``).
        eps: added to the union and to :math:`C_w^2 + C_h^2`.

    Departures: none in the formula. The reference computes :math:`L_{IoU}` without
    ``eps`` and divides by the running mean without a clamp.
    """
    check_boxes(pred, target)
    check_choice('version', version, WIOU_VERSIONS)
    check_positive('alpha', alpha)
    check_positive('delta', delta)
    check_positive('gamma', gamma)
    check_positive('eps', eps)
    if version != 'v1':
        if iou_mean is None:
            raise ValueError(f"iou_mean is required for version={version!r} (the running "
                             f'mean of 1 - IoU, see wiou_running_mean), got None')
        if isinstance(iou_mean, Tensor):
            if iou_mean.numel() != 1:
                raise ValueError(f'iou_mean must be a number or a tensor with one element, '
                                 f'got shape {tuple(iou_mean.shape)}')
        else:
            check_positive('iou_mean', iou_mean)
    pred, target, dtype = upcast(pred, target)
    g = box_pair_geometry(pred, target, eps, enclosing=True, centers=True)
    l_iou = 1 - g.iou
    diag_sq = (g.enclose_w.square() + g.enclose_h.square()).detach() + eps
    loss = torch.exp(g.center_dist_sq / diag_sq) * l_iou
    if version != 'v1':
        with torch.no_grad():
            if isinstance(iou_mean, Tensor):
                mean = iou_mean.detach().reshape(()).to(device=l_iou.device, dtype=l_iou.dtype)
            else:
                mean = torch.tensor(float(iou_mean), device=l_iou.device, dtype=l_iou.dtype)
            # a tensor mean is not read on the host (no synchronisation): a negative
            # one gives NaN rather than a plausible loss; 0 is clamped at eps
            mean = torch.where(mean < 0, torch.full_like(mean, float('nan')),
                               mean.clamp(min=eps))
            beta = l_iou / mean
            if version == 'v2':
                focus = beta.pow(gamma)
            else:
                focus = beta / (delta * torch.pow(alpha, beta - delta))
        loss = loss * focus
    return loss.to(dtype)


def _world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def wiou_running_mean(pred: Tensor, target: Tensor, iou_mean: Tensor, momentum: float = 0.01,
                      valid: Optional[Tensor] = None, sync: bool = True,
                      eps: float = 1e-7) -> Tensor:
    r"""The updated running mean :math:`\overline{L_{IoU}} \leftarrow (1 - m)
    \overline{L_{IoU}} + m \,\text{mean}(L_{IoU})` over the valid boxes of this call
    (Wise-IoU v2/v3; the reference updates it before it scales the loss).

    Args:
        pred, target: ``Tensor[..., 4]`` boxes.
        iou_mean: the current mean, a 0-d tensor (not modified).
        momentum: :math:`m` in (0, 1]. The paper chooses :math:`m = 1 - 0.05^{1/(tn)}`
            (``n`` batches per epoch, ``t`` the epoch where the mAP's growth slows;
            the reference's ``v1`` branch: n t = 890 x 34, m = 9.9e-5); the reference's
            current code fixes 0.01, the default here.
        valid: bool ``Tensor[...]`` (the boxes of the shape of ``pred[..., 0]`` that
            count: mmdet's dense heads pass every anchor, negatives with zero weight);
            all when None. Boxes with a NaN or Inf coordinate never count (a diverging
            prediction must not make the mean NaN for the rest of training). A call
            without valid boxes leaves the mean unchanged.
        sync: when ``torch.distributed`` is initialised with several ranks, sum the
            batch statistic (sum of :math:`L_{IoU}` and count) over ranks with one
            ``all_reduce`` of two numbers, so every rank keeps the mean of the whole
            batch (every rank must make the same calls).

    Returns:
        the new mean, a 0-d tensor of ``iou_mean``'s dtype and device. Computed from
        the boxes in their own precision (float32 for half precision), accumulated in
        float64. No host synchronisation.
    """
    check_boxes(pred, target)
    check_tensor('iou_mean', iou_mean)
    check_finite('momentum', momentum)
    if not 0 < momentum <= 1:
        raise ValueError(f'momentum must be in (0, 1], got {momentum}')
    if valid is not None and valid.shape != pred.shape[:-1]:
        raise ValueError(f'valid must have shape {tuple(pred.shape[:-1])}, got '
                         f'{tuple(valid.shape)}')
    with torch.no_grad():
        # half precision in float32, float32 and float64 as they are; the sums in float64
        pred, target, _ = upcast(pred.detach(), target.detach())
        l_iou = (1 - box_pair_geometry(pred, target, eps).iou).double()
        # a box with a NaN or Inf coordinate (a diverging prediction) does not count:
        # one NaN would make the mean NaN for good (and be saved in checkpoints)
        finite = torch.isfinite(pred).all(-1) & torch.isfinite(target).all(-1) \
            & torch.isfinite(l_iou)
        mask = finite if valid is None else finite & valid.to(torch.bool)
        stats = torch.stack([torch.where(mask, l_iou, torch.zeros_like(l_iou)).sum(),
                             mask.sum().double()])
        if sync and _world_size() > 1:
            dist.all_reduce(stats)
        batch_mean = stats[0] / stats[1].clamp(min=1)
        prev = iou_mean.detach().reshape(()).to(stats)
        new = torch.where(stats[1] > 0, (1 - momentum) * prev + momentum * batch_mean, prev)
        return new.to(dtype=iou_mean.dtype, device=iou_mean.device)
