"""Registered IoU-family losses (``loss_bbox`` of heads with ``reg_decoded_bbox=True``).

Call contract (mmdet's): ``forward(pred, target, weight=None, avg_factor=None,
reduction_override=None)`` with ``pred``, ``target`` ``Tensor[n, 4]`` absolute
``(x1, y1, x2, y2)`` boxes and ``weight`` ``Tensor[n]`` or ``Tensor[n, 4]`` (averaged
over the coordinates). Returns ``Tensor[n]`` for ``reduction='none'``, else a scalar;
half-precision boxes give a float32 loss (computed and reduced in float32).
The maths and papers are in :mod:`detloss_plugin.functional.iou_losses`.

``IoULoss``, ``GIoULoss``, ``DIoULoss``, ``CIoULoss`` and ``SIoULoss`` share their names
with mmdet's classes and take mmdet's options, positional order and defaults (eps 1e-6,
``IoULoss`` in ``'log'`` mode, ``CIoULoss`` gated, ``SIoULoss`` in mmdet's form), so a
config that changes only ``type`` computes mmdet's loss; the papers' other forms are
options (docs/compatibility.md lists them).
"""
from typing import Optional, Union

import torch
from torch import Tensor

from detloss_plugin.functional import iou_losses as F
from detloss_plugin.functional import iou_variants as V
from detloss_plugin.functional._checks import check_boxes, check_choice, check_positive, upcast
from detloss_plugin.functional.box_geometry import box_pair_geometry, center_offsets
from detloss_plugin.registry import MODELS
from .utils import BaseLoss, box_weight, float32_inputs

__all__ = ['IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'EfficientIoULoss',
           'FocalEIoULoss', 'SIoULoss', 'AlphaIoULoss', 'WIoULoss', 'mmdet_siou_loss']

#: ``IoULoss`` modes: mmdet's three
IOU_MODES = ('log', 'linear', 'square')


class _BoxLoss(BaseLoss):
    """Per-box loss on xyxy boxes; subclasses define ``box_loss(pred, target)``.

    ``eps`` defaults to 1e-7 for detloss's own losses; the classes that share a name
    with mmdet's use mmdet's 1e-6."""

    def __init__(self, eps: float = 1e-7, reduction: str = 'mean',
                 loss_weight: float = 1.0, **unknown) -> None:
        super().__init__(reduction, loss_weight, **unknown)
        check_positive('eps', eps)
        self.eps = eps

    def box_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        # half precision: the element-wise loss is computed and reduced in float32
        loss = self.box_loss(*float32_inputs(pred, target))
        return self.reduce(loss, box_weight(weight, pred, per_box=True), avg_factor,
                           reduction_override)


@MODELS.register_module()
class IoULoss(_BoxLoss):
    """IoU loss with mmdet's options: ``mode='log'`` (default, -ln IoU, UnitBox),
    ``'linear'`` (1 - IoU) or ``'square'`` (1 - IoU^2, YOLOX's objectness-free box
    loss); see :func:`detloss_plugin.functional.iou_loss`.

    Args:
        linear: mmdet's deprecated spelling of ``mode='linear'`` (True overrides
            ``mode``, as in mmdet).
        eps: the IoU is clamped at ``eps`` (1e-6, mmdet's) before the log and added to
            the union.
        mode: ``'log'``, ``'linear'`` or ``'square'``.
    """

    def __init__(self, linear: bool = False, eps: float = 1e-6, reduction: str = 'mean',
                 loss_weight: float = 1.0, mode: str = 'log') -> None:
        super().__init__(eps, reduction, loss_weight)
        check_choice('mode', mode, IOU_MODES)
        self.mode = 'linear' if linear else mode

    def box_loss(self, pred, target):
        if self.mode == 'square':
            # 1 - IoU^2 = l (2 - l) with l = 1 - IoU (the IoU clamped at eps as mmdet)
            linear = F.iou_loss(pred, target, 'linear', self.eps).clamp(max=1 - self.eps)
            return linear * (2 - linear)
        return F.iou_loss(pred, target, self.mode, self.eps)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', mode={self.mode!r}, eps={self.eps}'


@MODELS.register_module()
class GIoULoss(_BoxLoss):
    """Generalized IoU loss; see :func:`detloss_plugin.functional.giou_loss`
    (``eps`` 1e-6, mmdet's)."""

    def __init__(self, eps: float = 1e-6, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(eps, reduction, loss_weight)

    def box_loss(self, pred, target):
        return F.giou_loss(pred, target, self.eps)


@MODELS.register_module()
class DIoULoss(_BoxLoss):
    """Distance-IoU loss; see :func:`detloss_plugin.functional.diou_loss`
    (``eps`` 1e-6, mmdet's)."""

    def __init__(self, eps: float = 1e-6, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(eps, reduction, loss_weight)

    def box_loss(self, pred, target):
        return F.diou_loss(pred, target, self.eps)


@MODELS.register_module()
class CIoULoss(_BoxLoss):
    """Complete-IoU loss; see :func:`detloss_plugin.functional.ciou_loss`.

    Default: mmdet's form, the journal version's gate (``alpha_gate=True``: the
    aspect-ratio term acts only where IoU > 0.5), ``eps`` 1e-6. ``alpha_gate=False``
    is the AAAI 2020 form (alpha always on); ``authors_gradient=True`` is the DIoU
    authors' gradient of v without the 1 / (w^2 + h^2) factor.
    """

    def __init__(self, eps: float = 1e-6, reduction: str = 'mean', loss_weight: float = 1.0,
                 alpha_gate: bool = True, authors_gradient: bool = False) -> None:
        super().__init__(eps, reduction, loss_weight)
        self.alpha_gate = bool(alpha_gate)
        self.authors_gradient = bool(authors_gradient)

    def box_loss(self, pred, target):
        return F.ciou_loss(pred, target, self.eps, self.alpha_gate, self.authors_gradient)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', alpha_gate={self.alpha_gate}, '
                f'authors_gradient={self.authors_gradient}')


@MODELS.register_module()
class EfficientIoULoss(_BoxLoss):
    """Efficient-IoU loss of Zhang et al. (not mmdet's Extended-IoU ``EIoULoss``);
    see :func:`detloss_plugin.functional.eiou_loss`."""

    def box_loss(self, pred, target):
        return F.eiou_loss(pred, target, self.eps)


@MODELS.register_module()
class FocalEIoULoss(_BoxLoss):
    """Focal-EIoU loss IoU^gamma * L_EIoU, gamma = 0.5; see
    :func:`detloss_plugin.functional.focal_eiou_loss`.

    Args:
        gamma: the weight's exponent, a finite number >= 0 (0.5, the paper's).
        detach_weight: stop the gradient through the weight IoU^gamma (default True,
            the form that trains). ``False`` is the paper's formula differentiated as
            written (the functional's default): the term ``L_EIoU * d(IoU^gamma)`` pushes
            the IoU *down* (a smaller weight lowers the loss), and on the quick-start
            RetinaNet that form drove the IoU to 0 (mAP 0.000, against 0.489 detached).
            The value is the same either way.
    """

    def __init__(self, gamma: float = 0.5, detach_weight: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive('gamma', gamma, allow_zero=True)
        self.gamma = gamma
        self.detach_weight = bool(detach_weight)

    def box_loss(self, pred, target):
        return F.focal_eiou_loss(pred, target, self.gamma, self.eps, self.detach_weight)


def mmdet_siou_loss(pred: Tensor, target: Tensor, theta: float = 4.0, eps: float = 1e-6,
                    neg_gamma: bool = False) -> Tensor:
    r"""mmdet's SIoU loss (from YOLOv6), element-wise: ``Tensor[..., 4]`` in,
    ``Tensor[...]`` out.

    :math:`1 - \mathrm{clamp}(IoU - (\Delta + \Omega)/2, -1, 1)` with the angle cost
    :math:`\Lambda = \sin 2\alpha`, the distance cost
    :math:`\Delta = 2 - e^{g\rho_x} - e^{g\rho_y}` where :math:`g = \Lambda - 2` for
    ``neg_gamma=True`` (the paper's sign) and :math:`g = 2 - \Lambda` otherwise (mmdet's
    default) and the shape cost of exponent ``theta``. ``eps`` sits where mmdet puts it:
    the union, the centre offsets, both heights and a floor on the enclosing box's sides;
    :math:`\max(w, w^{gt})` is floored at ``eps`` too (mmdet gives NaN for two boxes of
    zero width). :math:`\Lambda` is computed as :math:`2|d_x||d_y|/\sigma^2`, the value
    of mmdet's arcsin form.
    """
    check_boxes(pred, target)
    pred, target, dtype = upcast(pred, target)
    g = box_pair_geometry(pred, target, eps, enclosing=True)
    dx, dy = center_offsets(pred, target)
    dx, dy = dx + eps, dy + eps
    sigma_sq = (dx.square() + dy.square()).clamp(min=eps * eps)
    angle_cost = 2 * dx.abs() * dy.abs() / sigma_sq
    rho_x = (dx / g.enclose_w.clamp(min=eps)).square()
    rho_y = (dy / g.enclose_h.clamp(min=eps)).square()
    gamma = angle_cost - 2 if neg_gamma else 2 - angle_cost
    distance_cost = 2 - torch.exp(gamma * rho_x) - torch.exp(gamma * rho_y)
    pred_h, target_h = g.pred_h + eps, g.target_h + eps
    omega_w = (g.pred_w - g.target_w).abs() / torch.maximum(g.pred_w, g.target_w).clamp(min=eps)
    omega_h = (pred_h - target_h).abs() / torch.maximum(pred_h, target_h)
    shape_cost = ((1 - torch.exp(-omega_w)).pow(theta)
                  + (1 - torch.exp(-omega_h)).pow(theta))
    siou = g.iou - 0.5 * (distance_cost + shape_cost)
    return (1 - siou.clamp(min=-1.0, max=1.0)).to(dtype)


@MODELS.register_module()
class SIoULoss(_BoxLoss):
    """SIoU loss (Gevorgyan 2022), mmdet's form by default.

    Args:
        eps: 1e-6 (mmdet's).
        neg_gamma: mmdet's option (``form='mmdet'`` only): False (default, mmdet's)
            reverses the sign of the distance cost; True is the paper's sign.
        form: ``'mmdet'`` (default, :func:`mmdet_siou_loss`, mmdet's value) or
            ``'paper'``: the paper's loss without mmdet's clamp at 2, see
            :func:`detloss_plugin.functional.siou_loss`, which lists every difference.
        theta: the shape cost's exponent (4, the paper's and mmdet's).
    """

    def __init__(self, eps: float = 1e-6, reduction: str = 'mean', loss_weight: float = 1.0,
                 neg_gamma: bool = False, form: str = 'mmdet', theta: float = 4.0) -> None:
        super().__init__(eps, reduction, loss_weight)
        check_choice('form', form, ('mmdet', 'paper'))
        V.check_theta(theta)
        self.neg_gamma = bool(neg_gamma)
        self.form = form
        self.theta = float(theta)

    def box_loss(self, pred, target):
        if self.form == 'paper':
            return V.siou_loss(pred, target, self.theta, self.eps)
        return mmdet_siou_loss(pred, target, self.theta, self.eps, self.neg_gamma)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', form={self.form!r}, neg_gamma={self.neg_gamma}, '
                f'theta={self.theta}')


@MODELS.register_module()
class AlphaIoULoss(_BoxLoss):
    """Alpha-IoU loss (He et al., NeurIPS 2021): power ``alpha`` (3) on the IoU and on
    the penalty of ``base`` (``'iou'``, ``'giou'``, ``'diou'``, ``'ciou'``; default
    ``'ciou'``); see :func:`detloss_plugin.functional.alpha_iou_loss`."""

    def __init__(self, alpha: float = 3.0, base: str = 'ciou', **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive('alpha', alpha)
        check_choice('base', base, V.ALPHA_IOU_BASES)
        self.alpha = float(alpha)
        self.base = base

    def box_loss(self, pred, target):
        return V.alpha_iou_loss(pred, target, self.alpha, self.base, self.eps)


@MODELS.register_module()
class WIoULoss(_BoxLoss):
    """Wise-IoU loss v1 / v2 / v3 (Tong et al. 2023); see
    :func:`detloss_plugin.functional.wiou_loss`.

    Args:
        version: ``'v1'``, ``'v2'`` or ``'v3'`` (default).
        alpha, delta: v3's focusing parameters (1.9, 3.0: the paper's; the reference's
            current code uses 1.7, 2.7).
        gamma: v2's exponent (0.5).
        momentum: of the running mean of 1 - IoU (0.01, the reference's current code;
            see :func:`detloss_plugin.functional.wiou_running_mean` for the paper's rule).
        sync: ``True`` or ``False`` (a bool, nothing else): average the running
            mean's batch statistic over ranks (below).

    State. The running mean :math:`\\overline{L_{IoU}}` is the buffer ``iou_mean``
    (0-d float32, starts at 1.0 as in the reference; it stays float32 when the module is
    cast to half precision, whose resolution would swallow small updates): it is in
    ``state_dict()``, so mmengine's checkpoints save it and ``--resume`` /
    ``load_from`` restore it. A box with a NaN or Inf coordinate does not enter it (its
    own loss is NaN, the mean stays finite). In
    training mode (``module.train()``) each call first updates it with the mean of
    1 - IoU over the boxes with a positive weight (all boxes without ``weight``), then
    scales the loss with the updated value, as the reference does; in eval mode it is
    used without being updated. v1 neither reads nor updates it.

    Scope. mmdet's dense heads call ``loss_bbox`` once per FPN level, so the mean is
    updated once per level and iteration (the reference's YOLO loss also calls it per
    level); the RoI head calls it once per iteration.

    Multi-GPU. With ``sync=True`` (default) and ``torch.distributed`` initialised with
    several ranks, the sum of 1 - IoU and the number of valid boxes are summed over ranks
    (one ``all_reduce`` of two float64 numbers per call, no host synchronisation), so
    every rank keeps the running mean of the whole batch, as single-process training
    would, and DDP's buffer broadcast changes nothing. ``sync=False``: each rank updates
    with its own boxes (and DDP's broadcast then overwrites the others' with rank 0's).
    The ``all_reduce`` needs every rank to call the loss equally often. Anchor heads
    (RetinaNet) always call it, negatives included with zero weight. mmdet's RoI head,
    FCOS and ATSS skip the call on a rank whose batch has no positive: in Faster R-CNN
    the ground-truth boxes are added to the proposals (``add_gt_as_proposals=True``, the
    default) and empty images are filtered (``filter_empty_gt=True``), so every rank has
    positives; with FCOS / ATSS and data where a rank can end up without a positive
    (images without boxes, tiny boxes), use ``sync=False``, or the ranks would wait for
    each other.
    """

    def __init__(self, version: str = 'v3', alpha: float = 1.9, delta: float = 3.0,
                 gamma: float = 0.5, momentum: float = 0.01, sync: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        check_choice('version', version, V.WIOU_VERSIONS)
        for name, value in (('alpha', alpha), ('delta', delta), ('gamma', gamma)):
            check_positive(name, value)
        check_positive('momentum', momentum)
        if momentum > 1:
            raise ValueError(f'momentum must be in (0, 1], got {momentum}')
        if not isinstance(sync, bool):
            raise TypeError(f'sync must be True or False, got {type(sync).__name__} {sync!r}')
        self.version = version
        self.alpha, self.delta, self.gamma = float(alpha), float(delta), float(gamma)
        self.momentum = float(momentum)
        self.sync = sync
        self.register_buffer('iou_mean', torch.tensor(1.0))

    def _apply(self, fn, *args, **kwargs):
        # .half() / .to(float16) would round the running mean to float16, whose spacing
        # below 1 (4.9e-4) swallows updates of momentum * (mean - batch mean): keep it
        # float32 (or wider)
        super()._apply(fn, *args, **kwargs)
        if self.iou_mean.dtype in (torch.float16, torch.bfloat16):
            self.iou_mean = self.iou_mean.float()
        return self

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[float, Tensor]] = None,
                reduction_override: Optional[str] = None, **kwargs) -> Tensor:
        weight = box_weight(weight, pred, per_box=True)
        if self.version != 'v1' and self.training:
            valid = None if weight is None else weight > 0
            with torch.no_grad():
                self.iou_mean.copy_(V.wiou_running_mean(
                    pred, target, self.iou_mean, self.momentum, valid, self.sync, self.eps))
        loss = V.wiou_loss(pred, target, self.version, self.iou_mean, self.alpha,
                           self.delta, self.gamma, self.eps)
        return self.reduce(loss, weight, avg_factor, reduction_override)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', version={self.version!r}, alpha={self.alpha}, '
                f'delta={self.delta}, momentum={self.momentum}, sync={self.sync}')
