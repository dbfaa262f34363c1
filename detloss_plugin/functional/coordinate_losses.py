r"""Coordinate-wise regression losses, element-wise.

``pred`` and ``target`` are any float tensors of the same shape (box deltas
``Tensor[..., 4]`` in the heads); the loss is returned per element, same shape, with
no reduction. Half-precision inputs are computed in float32 and cast back.
"""
import math
from typing import Optional

import torch
from torch import Tensor

from ._checks import check_positive, check_same_shape, check_tensor, upcast

__all__ = ['l1_loss', 'mse_loss', 'smooth_l1_loss', 'focal_l1_loss']


def _checked(pred: Tensor, target: Tensor):
    check_tensor('pred', pred)
    check_tensor('target', target)
    check_same_shape(pred, target)
    return upcast(pred, target)


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    r""":math:`|x|` with :math:`x = pred - target`."""
    pred, target, dtype = _checked(pred, target)
    return (pred - target).abs().to(dtype)


def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    r"""L2 loss :math:`x^2` with :math:`x = pred - target` (no factor 1/2, as
    ``torch.nn.MSELoss`` and mmdet's ``MSELoss``)."""
    pred, target, dtype = _checked(pred, target)
    return (pred - target).square().to(dtype)


def smooth_l1_loss(pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    r"""Smooth L1 (Huber divided by beta): :math:`0.5 x^2 / \beta` if
    :math:`|x| < \beta`, else :math:`|x| - 0.5 \beta`.

    Girshick, "Fast R-CNN", ICCV 2015, https://arxiv.org/abs/1504.08083 (beta = 1).
    ``beta = 0`` is exactly the L1 loss (the quadratic branch is never selected, so
    no ``0 / 0`` reaches the gradient).
    """
    check_positive('beta', beta, allow_zero=True)
    pred, target, dtype = _checked(pred, target)
    diff = (pred - target).abs()
    if beta == 0:
        return diff.to(dtype)
    loss = torch.where(diff < beta, (0.5 / beta) * diff * diff, diff - 0.5 * beta)
    return loss.to(dtype)


def focal_l1_loss(pred: Tensor, target: Tensor, beta: float = math.exp(-1),
                  alpha: Optional[float] = None) -> Tensor:
    r"""Focal L1 loss of Zhang et al., a regression loss whose gradient magnitude is
    :math:`g(x) = -\alpha x \ln(\beta x)` for :math:`x = |pred - target| \le 1` and the
    constant :math:`-\alpha \ln\beta` above:

    .. math::
        L_f(x) = \begin{cases}
            -\frac{\alpha x^2 (2 \ln(\beta x) - 1)}{4}, & x \le 1 \\
            -\alpha \ln(\beta)\, x + C, & x > 1
        \end{cases}\qquad C = \frac{2 \alpha \ln\beta + \alpha}{4}

    (C makes the loss continuous at x = 1; the gradient is continuous by
    construction).

    Zhang et al., "Focal and Efficient IOU Loss for Accurate Bounding Box Regression",
    https://arxiv.org/abs/2101.08158, Sec. 3.3, with :math:`1/e \le \beta \le 1` and
    :math:`\alpha \ln \beta = -1` (the gradient is 1 for x > 1, like L1 / Smooth L1).

    Args:
        beta: curvature of the gradient arc in [1/e, 1). The paper gives the range and
            no value; detloss's default 1/e (hence alpha = 1) is our choice.
        alpha: if None, :math:`\alpha = -1/\ln\beta` (the paper's constraint). Give
            it to decouple the two.

    At :math:`x = 0` the value and gradient are 0 (the limit of :math:`x^2 \ln x`); the
    log's argument is clamped away from 0 so that no NaN appears there.
    """
    if not isinstance(beta, (int, float)) or not (math.exp(-1) - 1e-12 <= beta < 1):
        raise ValueError(f'beta must be in [1/e, 1), got {beta!r}')
    if alpha is None:
        alpha = -1.0 / math.log(beta)
    check_positive('alpha', alpha)
    pred, target, dtype = _checked(pred, target)
    x = (pred - target).abs()
    log_beta = math.log(beta)
    inner = x.clamp(max=1.0)
    # x^2 ln(beta x) = x^2 (ln beta + ln x); x^2 ln x -> 0 as x -> 0.
    safe_log = torch.log(inner.clamp(min=torch.finfo(x.dtype).tiny))
    small = -alpha * inner.square() * (2 * (log_beta + safe_log) - 1) / 4
    const = (2 * alpha * log_beta + alpha) / 4
    large = -alpha * log_beta * x + const
    return torch.where(x <= 1, small, large).to(dtype)
