r"""KL loss for bounding-box regression with uncertainty (He et al., CVPR 2019).

Y. He, C. Zhu, J. Wang, M. Savvides, X. Zhang, "Bounding Box Regression with
Uncertainty for Accurate Object Detection", CVPR 2019, https://arxiv.org/abs/1809.08545;
reference code https://github.com/yihui-he/KL-Loss (Detectron / Caffe2).

The box branch predicts, for each coordinate, a Gaussian :math:`N(x_e, \sigma^2)`; the
ground truth is a Dirac delta at :math:`x_g`. Minimising the KL divergence between the
two over :math:`x_e` and :math:`\sigma` is, up to constants, minimising

.. math::
    L = \frac{(x_g - x_e)^2}{2\sigma^2} + \frac{1}{2}\log\sigma^2

(the paper's Eq. 8). The network predicts :math:`\alpha = \log\sigma^2` rather than
:math:`\sigma` (Eq. 9) "to avoid gradient exploding" (Sec. 3.2): :math:`1/\sigma^2`
blows up as :math:`\sigma \to 0` and :math:`\sigma` would have to be kept positive,
while :math:`\alpha` is unconstrained. Like Smooth L1, the squared error continues as
L1 above :math:`|x_g - x_e| = 1` (Eq. 10), which with ``beta`` generalises to

.. math::
    L = e^{-\alpha}\, \mathrm{SmoothL1}_\beta(x_g - x_e) + \frac{\alpha}{2},\qquad
    \mathrm{SmoothL1}_\beta(x) = \begin{cases} 0.5 x^2 / \beta, & |x| < \beta \\
                                             |x| - 0.5 \beta, & \text{otherwise}
                               \end{cases}

(``beta = 1``: the paper's equations exactly).
"""
import torch
from torch import Tensor

from ._checks import check_positive, check_same_shape, check_tensor, saturating_cast, upcast

__all__ = ['kl_loss']


def kl_loss(pred: Tensor, pred_log_var: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    r"""Element-wise KL loss :math:`e^{-\alpha}\,\mathrm{SmoothL1}_\beta(t - p) + \alpha/2`.

    Args:
        pred: ``Tensor[n, 4]`` (any shape works) predicted box coordinates :math:`x_e`;
            in detloss's :class:`~detloss_plugin.KLBBoxHead` these are the encoded deltas
            of the box coder (see its docstring for the space of the variance).
        pred_log_var: :math:`\alpha = \log\sigma^2`, same shape as ``pred``: the
            log-variance of each coordinate, in the same (encoded) space as ``pred``.
        target: :math:`x_g`, same shape as ``pred``.
        beta: threshold of Smooth L1, a finite number >= 0; 1.0 is the paper's
            (Eq. 10); 0 gives :math:`e^{-\alpha}|x| + \alpha/2`.

    Returns:
        ``Tensor`` of the shape of ``pred``: the loss per coordinate, no reduction.
        The module :class:`~detloss_plugin.KLLoss` sums and divides by the number of
        sampled RoIs (``avg_factor``), which is the reference's normalisation (mean over
        RoIs, sum over the four coordinates).

    Minimum over alpha: :math:`\partial L / \partial\alpha = -e^{-\alpha} S + 1/2 = 0` at
    :math:`\alpha = \log(2S)` with :math:`S = \mathrm{SmoothL1}`: a well-localised box
    wants a small variance, a badly localised one a large variance, which is what
    var voting later reads.

    Gradient flow. The reference splits the loss into three Caffe2 blobs: ``loss_bbox``
    (``SmoothL1Loss`` with ``exp(-alpha)`` as outside weight: the op sends gradient to the
    box only, scaled by :math:`e^{-\alpha}`), ``bbox_pred_std_abs_mulw_loss``
    (:math:`e^{-\alpha}` times a StopGradient'ed Smooth L1: gradient to alpha only) and
    ``bbox_pred_std_abs_logw_loss`` (:math:`\alpha/2`: to alpha). Together this is exactly
    the gradient of :math:`L` above in both arguments: to the box
    :math:`e^{-\alpha} \mathrm{SmoothL1}'(x_e - x_g)`, to alpha
    :math:`-e^{-\alpha} S + 1/2`. detloss writes :math:`L` once and lets autograd
    differentiate it, which gives the same gradients (tested). Only the logged value
    differs: the reference counts the :math:`e^{-\alpha} S` term twice in its loss sum
    (once per blob); detloss counts it once.

    Initialisation (paper, Sec. 3.2): the alpha branch is a fully connected layer whose
    weights start from a Gaussian of mean 0 and standard deviation 0.0001 (the
    reference's ``gauss_fill(0.0001)``), bias 0, "so that KL Loss will be similar to
    the standard smooth L1 loss at the beginning of training": with alpha ~ 0 the
    gradient to the box is Smooth L1's times :math:`e^{-\alpha} \approx 1`.
    :class:`~detloss_plugin.KLBBoxHead` initialises its branch that way.

    Numerics: half-precision inputs are computed in float32; the value is cast back with
    saturation (a huge :math:`e^{-\alpha}` with a very negative alpha saturates at
    float16's largest value instead of overflowing) while its gradient passes through
    the saturation unchanged, and the gradients are cast back with saturation too.
    Alpha is not clamped (neither paper nor reference does): value and gradient are
    finite for :math:`|\alpha| \lesssim 88` in float32 (:math:`e^{88}` is near its
    largest value), and for any finite alpha where the prediction is exact
    (:math:`S = 0`): there the loss is :math:`\alpha/2` with gradient 1/2 to alpha and
    0 to the box, where a plain :math:`e^{-\alpha} \cdot 0` would give NaN once
    :math:`e^{-\alpha}` overflows. NaN in any input gives NaN.

    Departures:
        * One loss term where the reference has three; same gradients, and the logged
          value counts :math:`e^{-\alpha} S` once instead of twice.
        * ``beta`` is exposed (the paper fixes it at 1).
    """
    check_tensor('pred', pred)
    check_tensor('pred_log_var', pred_log_var)
    check_tensor('target', target)
    check_same_shape(pred, pred_log_var, 'pred_log_var')
    check_same_shape(pred, target)
    check_positive('beta', beta, allow_zero=True)
    pred, pred_log_var, target, dtype = upcast(pred, pred_log_var, target)
    diff = (target - pred).abs()
    if beta == 0:
        smooth_l1 = diff
    else:
        smooth_l1 = torch.where(diff < beta, (0.5 / beta) * diff * diff, diff - 0.5 * beta)
    # e^-alpha * S is exactly 0 where S = 0, however large e^-alpha (e^89 is Inf in
    # float32, and Inf * 0 is NaN): there alpha is replaced by 0 in the product, which
    # stays 1 * 0 = 0 in value and gives the true gradient, 0, to alpha (through the
    # where) and to the box (S' = 0 where S = 0).
    safe_log_var = torch.where(smooth_l1 == 0, torch.zeros_like(pred_log_var), pred_log_var)
    loss = torch.exp(-safe_log_var) * smooth_l1 + 0.5 * pred_log_var
    if dtype != loss.dtype:
        # saturate the half-precision value, but let the gradient through unchanged
        # (a plain clamp would zero it exactly where alpha is very negative)
        saturated = saturating_cast(loss.detach(), dtype).to(loss.dtype)
        loss = saturated + (loss - loss.detach())
    return loss.to(dtype)
