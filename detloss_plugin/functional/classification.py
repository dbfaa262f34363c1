r"""Classification losses, element-wise: cross-entropy, focal, anchor, symmetric CE and
seesaw.

Two forms, as mmdet's heads use them:

- **sigmoid** (one-vs-all; RetinaNet, FCOS, ATSS): ``logits`` ``Tensor[N, C]`` and
  ``targets`` ``Tensor[N, C]`` of 0/1 (a background sample is a row of zeros; see
  :func:`labels_to_one_hot`). The loss is returned per element, ``Tensor[N, C]``.
- **softmax** (RoI heads, with a background column): ``logits`` ``Tensor[N, K]`` and
  integer ``labels`` ``Tensor[N]`` in ``[0, K)``. The loss is returned per sample,
  ``Tensor[N]``; rows whose label is ``ignore_index`` or outside ``[0, K)`` get 0 (a
  range check would need a host synchronisation, so out-of-range labels are not
  reported: they are simply ignored).

No reduction here. Half-precision inputs are computed in float32 and the result is
cast back. Every function is finite for logits of any finite magnitude (``+-100`` in
float16 included): log-probabilities come from ``logsigmoid`` / ``log_softmax``, never
from ``log(sigmoid(x))``, and ``1 - p`` is computed as ``sigmoid(-x)`` or
``-expm1(log p)``.
"""
import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (check_choice, check_finite, check_positive, check_same_shape,
                      check_tensor, upcast)

__all__ = [
    'labels_to_one_hot', 'probs_to_logits',
    'sigmoid_cross_entropy', 'softmax_cross_entropy',
    'sigmoid_focal_loss', 'softmax_focal_loss',
    'sigmoid_anchor_loss', 'softmax_anchor_loss',
    'sigmoid_symmetric_ce', 'softmax_symmetric_ce',
    'seesaw_ce_loss', 'ANCHOR_MODES',
]

ANCHOR_MODES = ('neg', 'pos')
AlphaType = Union[float, Sequence[float], Tensor, None]


# ----------------------------------------------------------------------------- helpers
def _check_logits(logits: Tensor, name: str = 'logits') -> None:
    check_tensor(name, logits)
    if logits.dim() != 2:
        raise ValueError(f'{name} must have shape (N, C), got {tuple(logits.shape)}')


def _check_targets(logits: Tensor, targets: Tensor) -> None:
    _check_logits(logits)
    check_tensor('targets', targets)
    check_same_shape(logits, targets, 'targets', 'logits')


def _check_labels(logits: Tensor, labels: Tensor) -> None:
    _check_logits(logits)
    if not isinstance(labels, Tensor):
        raise TypeError(f'labels must be a torch.Tensor, got {type(labels).__name__}')
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f'labels must be an integer tensor, got dtype {labels.dtype}')
    if labels.shape != logits.shape[:1]:
        raise ValueError(f'labels must have shape ({logits.shape[0]},) for logits of shape '
                         f'{tuple(logits.shape)}, got {tuple(labels.shape)}')


def _check_gamma(gamma: float) -> None:
    check_positive('gamma', gamma, allow_zero=True)


def _check_anchor(gamma: float, slack: float, anchor: str) -> None:
    _check_gamma(gamma)
    check_positive('slack', slack, allow_zero=True)
    if slack > 1:
        raise ValueError(f'slack must be in [0, 1], got {slack}')
    check_choice('anchor', anchor, ANCHOR_MODES)


def _safe_pow(base: Tensor, gamma: float) -> Tensor:
    """``base ** gamma`` for ``base >= 0`` with a finite gradient at ``base = 0`` for any
    ``gamma >= 0`` (``d/db b^gamma`` is infinite there for ``gamma < 1``). ``gamma = 0``
    is exactly 1."""
    if gamma == 0:
        return torch.ones_like(base)
    if gamma == 1:
        return base
    return base.clamp(min=torch.finfo(base.dtype).tiny).pow(gamma)


def _split_labels(labels: Tensor, num_columns: int, ignore_index: int):
    """``(valid, safe)``: the rows whose label is a column and not ``ignore_index``, and
    the labels with every other row set to column 0 (so that ``gather``/``one_hot``
    work; the callers zero those rows' loss)."""
    valid = (labels >= 0) & (labels < num_columns) & (labels != ignore_index)
    return valid, torch.where(valid, labels, torch.zeros_like(labels))


def _label_log_prob(logits: Tensor, labels: Tensor) -> Tensor:
    """``log softmax(logits)[i, labels[i]]``, ``Tensor[N]``."""
    return logits.log_softmax(-1).gather(1, labels.unsqueeze(1)).squeeze(1)


def labels_to_one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32
                      ) -> Tensor:
    """``Tensor[N]`` integer labels to ``Tensor[N, num_classes]`` 0/1 targets.

    Labels outside ``[0, num_classes)`` (the background ``num_classes`` of mmdet's dense
    heads, an ``ignore_index`` such as -100 or 255) give a row of zeros. No host
    synchronisation: a zero tensor and one ``scatter_`` of N values (each row writes
    its 1, or a 0 for out-of-range labels), which writes the ``N x C`` array once
    instead of comparing every element with its column index and converting. Used
    instead of ``F.one_hot`` everywhere here: on the CPU ``F.one_hot`` checks the label
    range with ``.item()``.
    """
    in_range = (labels >= 0) & (labels < num_classes)
    column = torch.where(in_range, labels, torch.zeros_like(labels)).unsqueeze(-1)
    out = torch.zeros(*labels.shape, num_classes, dtype=dtype, device=labels.device)
    if num_classes == 0:
        return out
    return out.scatter_(-1, column, in_range.to(dtype).unsqueeze(-1))


def probs_to_logits(probs: Tensor, use_sigmoid: bool) -> Tensor:
    r"""Map probabilities (a head with ``activated=True``) to logits that give them back.

    Sigmoid: :math:`\operatorname{logit}(p)` with ``p`` clamped to
    ``[eps, 1 - eps]`` (``eps`` the dtype's machine epsilon, so ``1 - eps`` is
    representable). Softmax: :math:`\log p` with ``p`` clamped at the dtype's smallest
    normal number; ``softmax(log p) = p`` for a normalised ``p``. The clamps bound
    :math:`-\log p` at about 15.9 (float32 sigmoid) and 87 (float32 softmax) where a loss
    on logits would be unbounded.
    """
    if use_sigmoid:
        eps = torch.finfo(probs.dtype).eps
        return torch.logit(probs, eps=eps)
    return probs.clamp(min=torch.finfo(probs.dtype).tiny).log()


def _alpha_tensor(alpha: AlphaType, ref: Tensor):
    """``None`` for no weighting, a Python float for one number (no tensor: a new
    tensor on a GPU is a host-to-device copy, and a copy waits for the host), else a
    tensor broadcastable over the class axis on ``ref``'s device (a sequence is copied
    to the device once per call: pass a tensor on the device to avoid that, as the
    modules do with their buffers)."""
    if alpha is None:
        return None
    if isinstance(alpha, Tensor):
        return alpha.to(device=ref.device, dtype=ref.dtype)
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        return None if alpha < 0 else float(alpha)
    return ref.new_tensor([float(a) for a in alpha])


def check_alpha(alpha: AlphaType, num_classes: Optional[int] = None, unit_interval=True
                ) -> None:
    """``alpha`` is None, a number in [0, 1] (-1 disables it, as in torchvision), or a
    sequence of non-negative per-class weights (of length ``num_classes`` if given). The
    values of a tensor ``alpha`` are not checked (that would synchronise with the GPU)."""
    if alpha is None:
        return
    if isinstance(alpha, bool):
        raise TypeError('alpha must be a number, a sequence of numbers or None, got bool')
    if isinstance(alpha, (int, float)):
        check_finite('alpha', alpha)
        if alpha == -1 or (0 <= alpha <= 1 if unit_interval else alpha >= 0):
            return
        allowed = '[0, 1] or -1' if unit_interval else '>= 0 or -1'
        raise ValueError(f'alpha must be in {allowed}, got {alpha}')
    if isinstance(alpha, Tensor):
        # shape only: reading the values would be a host synchronisation on GPU
        # (the modules validate their per-class alpha once, from the config's list)
        values = None
        length = alpha.numel()
    else:
        try:
            values = [float(a) for a in alpha]
        except TypeError:
            raise TypeError(f'alpha must be a number, a sequence of numbers or None, got '
                            f'{type(alpha).__name__}') from None
        length = len(values)
    if num_classes is not None and length != num_classes:
        raise ValueError(f'alpha must have one value per class ({num_classes}), got {length}')
    if values is not None and any(v < 0 or (unit_interval and v > 1) for v in values):
        raise ValueError(f'alpha values must be in {"[0, 1]" if unit_interval else ">= 0"}, '
                         f'got {values}')


# ---------------------------------------------------------------------- cross-entropy
def sigmoid_cross_entropy(logits: Tensor, targets: Tensor,
                          pos_weight: Optional[Tensor] = None) -> Tensor:
    r"""Binary cross-entropy on logits, per element:
    :math:`-w_c\,t \log\sigma(x) - (1 - t)\log\sigma(-x)`, with ``pos_weight``
    ``Tensor[C]`` the weight :math:`w_c` of the positive term of column ``c`` (1 if
    None; ``F.binary_cross_entropy_with_logits(pos_weight=...)``, which is what mmdet's
    ``CrossEntropyLoss(use_sigmoid=True, class_weight=...)`` does). Returns
    ``Tensor[N, C]``.
    """
    _check_targets(logits, targets)
    logits, targets, dtype = upcast(logits, targets)
    if pos_weight is not None:
        pos_weight = pos_weight.to(device=logits.device, dtype=logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight,
                                              reduction='none')
    return loss.to(dtype)


def softmax_cross_entropy(logits: Tensor, labels: Tensor,
                          class_weight: Optional[Tensor] = None,
                          ignore_index: int = -100) -> Tensor:
    r"""Softmax cross-entropy per sample, :math:`-w_y \log\operatorname{softmax}(x)_y`.

    ``class_weight`` ``Tensor[K]`` multiplies each sample's loss by the weight of its
    label (``F.cross_entropy(weight=..., reduction='none')``; no re-normalisation by the
    weights, which is the reducer's job). Returns ``Tensor[N]``, 0 on ignored rows.
    """
    _check_labels(logits, labels)
    logits, dtype = upcast(logits)
    valid, safe = _split_labels(labels, logits.shape[1], ignore_index)
    loss = -_label_log_prob(logits, safe)
    if class_weight is not None:
        loss = loss * class_weight.to(loss.dtype)[safe]
    return torch.where(valid, loss, torch.zeros_like(loss)).to(dtype)


# ------------------------------------------------------------------------------ focal
def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: AlphaType = 0.25,
                       gamma: float = 2.0) -> Tensor:
    r"""Sigmoid focal loss of RetinaNet, per element:

    .. math::
        FL = -\alpha_t (1 - p_t)^\gamma \log p_t,\quad
        p_t = p t + (1 - p)(1 - t),\quad \alpha_t = \alpha t + (1 - \alpha)(1 - t)

    with :math:`p = \sigma(x)`. Lin et al., "Focal Loss for Dense Object Detection",
    ICCV 2017, https://arxiv.org/abs/1708.02002 (alpha 0.25, gamma 2).

    Args:
        logits, targets: ``Tensor[N, C]``; ``targets`` in [0, 1] (0/1 for detection).
        alpha: a number in [0, 1]; ``None`` or -1 for no alpha-weighting (torchvision's
            convention); or per-class values ``Tensor[C]`` / a sequence (``alpha_c`` for
            the positives of class c, ``1 - alpha_c`` for its negatives).
        gamma: focusing parameter, >= 0 (0 gives alpha-weighted BCE).

    Same value as ``torchvision.ops.sigmoid_focal_loss`` and mmdet's
    ``py_sigmoid_focal_loss``. Numerics: ``log p_t`` is ``-BCE-with-logits`` and
    :math:`1 - p_t` is computed as :math:`t\,\sigma(-x) + (1 - t)\,\sigma(x)` (exact
    where ``1 - sigmoid(x)`` rounds to 0); the factor's base is clamped at the dtype's
    smallest normal number so that ``gamma < 1`` has a finite gradient.
    The same formula on every device (mmdet's ``FocalLoss`` calls an mmcv kernel on GPU
    and a Python formula on CPU).
    """
    _check_targets(logits, targets)
    _check_gamma(gamma)
    check_alpha(alpha)
    logits, targets, dtype = upcast(logits, targets)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    one_minus_pt = targets * torch.sigmoid(-logits) + (1 - targets) * torch.sigmoid(logits)
    loss = ce * _safe_pow(one_minus_pt, gamma)
    alpha_t = _alpha_tensor(alpha, logits)
    if alpha_t is not None:
        loss = (alpha_t * targets + (1 - alpha_t) * (1 - targets)) * loss
    return loss.to(dtype)


def softmax_focal_loss(logits: Tensor, labels: Tensor, alpha: AlphaType = None,
                       gamma: float = 2.0, ignore_index: int = -100) -> Tensor:
    r"""Multi-class (softmax) focal loss per sample:

    .. math:: FL = -\alpha_y (1 - p_y)^\gamma \log p_y,\quad p = \operatorname{softmax}(x)

    The form of hedgefair/Focal-Loss-Pytorch, with per-class ``alpha``. Departures from
    that repository: ``log p_y`` comes from ``log_softmax`` (the repository takes the
    log of the softmax, -inf when ``p_y`` underflows), :math:`1 - p_y` is
    ``-expm1(log p_y)``, and ``alpha`` is an argument, never state (the repository
    re-assigns its ``alpha`` attribute on every call). Its default ``alpha=0.25``
    becomes the per-class weights ``[0.25, 0.75, ..., 0.75]`` (class 0 as the
    background); here the default is no weighting, and the repository's default is
    ``alpha=[0.25] + [0.75] * (K - 1)`` (``[0.75] * (K - 1) + [0.25]`` when the
    background is the last column, as in mmdet's RoI heads).

    Args:
        logits: ``Tensor[N, K]`` (K includes the background column of RoI heads).
        labels: ``Tensor[N]`` in [0, K).
        alpha: ``None`` (default, no weighting), a number (one weight for every
            class), or ``K`` per-class weights.
        gamma: focusing parameter, >= 0 (0 gives (weighted) cross-entropy).
    """
    _check_labels(logits, labels)
    _check_gamma(gamma)
    check_alpha(alpha, None, unit_interval=False)
    logits, dtype = upcast(logits)
    valid, safe = _split_labels(labels, logits.shape[1], ignore_index)
    logp = _label_log_prob(logits, safe)
    loss = -_safe_pow(-torch.expm1(logp), gamma) * logp
    alpha_t = _alpha_tensor(alpha, logits)
    if alpha_t is not None:
        loss = loss * (alpha_t[safe] if isinstance(alpha_t, Tensor) and alpha_t.dim()
                       else alpha_t)
    return torch.where(valid, loss, torch.zeros_like(loss)).to(dtype)


# ----------------------------------------------------------------------------- anchor
def _anchor_gammas(gamma: float, anchor: str):
    return (gamma, 0.0) if anchor == 'pos' else (0.0, gamma)


def sigmoid_anchor_loss(logits: Tensor, targets: Tensor, gamma: float = 0.5,
                        slack: float = 0.05, anchor: str = 'neg') -> Tensor:
    r"""Anchor loss (one-vs-all sigmoid form), per element:

    .. math::
        AL = -t\,(1 - p + q_{neg})^{\gamma_{pos}} \log p
             - (1 - t)\,(1 + p - q_{pos})^{\gamma_{neg}} \log(1 - p)

    with :math:`p = \sigma(x)`, the anchors
    :math:`q_{pos} = \max(p_{y} - \delta, 0)` (the score of the true class minus the
    slack :math:`\delta`) and :math:`q_{neg} = \min(\max_{k \ne y} p_k + \delta, 1)` (the
    best false class plus the slack), both without gradient. ``anchor='neg'`` (default)
    modulates the negatives (:math:`\gamma_{neg} = \gamma, \gamma_{pos} = 0`),
    ``'pos'`` the positives.

    Ryou et al., "Anchor Loss: Modulating Loss Scale based on Prediction Difficulty",
    ICCV 2019, https://arxiv.org/abs/1909.11155; reference code slryou41/AnchorLoss
    (gamma 0.5, slack 0.05, anchor 'neg'); for rows with a class this equals the
    reference's element-wise loss (gradient through the modulating factor, none
    through the anchors).

    Adaptation to detection (not in the paper, which classifies images): a background
    row (all-zero targets) has no true-class score. Its anchor is the background
    probability of the one-vs-all model, :math:`p_{y} := 1 - \max_k p_k`, so an easy
    background anchor (all scores low) is down-weighted and a background anchor with a
    confident false class is up-weighted, as the paper does for negatives. Multi-label
    rows use the largest positive score as :math:`p_y`. The reference's 5-epoch
    cross-entropy warm-up is not part of the loss (a loss cannot know the epoch; use a
    schedule in the config if wanted). The base of each factor is clamped at the
    dtype's smallest normal number (only reachable with ``slack = 0``).
    """
    _check_targets(logits, targets)
    _check_anchor(gamma, slack, anchor)
    logits, targets, dtype = upcast(logits, targets)
    with torch.no_grad():  # the anchors carry no gradient (reference: .detach())
        pd = torch.sigmoid(logits.detach())
        is_pos = targets > 0.5
        has_pos = is_pos.any(dim=1, keepdim=True)
        p_true = torch.where(has_pos, (pd * is_pos).amax(dim=1, keepdim=True),
                             1 - pd.amax(dim=1, keepdim=True))
        p_false = (pd * ~is_pos).amax(dim=1, keepdim=True)
        q_neg = (p_false + slack).clamp(max=1)
        q_pos = (p_true - slack).clamp(min=0)
    return _sigmoid_anchor_terms(logits, targets, q_pos, q_neg,
                                 *_anchor_gammas(gamma, anchor)).to(dtype)


def _sigmoid_anchor_terms(logits: Tensor, targets: Tensor, q_pos: Tensor, q_neg: Tensor,
                          gamma_pos: float, gamma_neg: float) -> Tensor:
    """The anchor loss for given anchors ``q_pos``, ``q_neg`` (``Tensor[N, 1]``)."""
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    scale_pos = _safe_pow(1 - p + q_neg, gamma_pos)
    scale_neg = _safe_pow(1 + p - q_pos, gamma_neg)
    return targets * scale_pos * bce + (1 - targets) * scale_neg * bce


def _log1m_softmax(logits: Tensor, logp: Tensor) -> Tensor:
    """``log(1 - softmax(x))`` without cancellation: ``log1p(-p)`` where ``p <= 0.5``
    (every column but a row's arg-max), and ``logsumexp`` of the other columns minus
    ``logsumexp`` of all for the arg-max column."""
    top = labels_to_one_hot(logits.detach().argmax(dim=1), logits.shape[1], torch.bool)
    lse = logits.logsumexp(dim=1, keepdim=True)
    rest = logits.masked_fill(top, float('-inf')).logsumexp(dim=1, keepdim=True) - lse
    p_safe = torch.where(top, torch.zeros_like(logp), logp.exp())
    return torch.where(top, rest.expand_as(logp), torch.log1p(-p_safe))


def softmax_anchor_loss(logits: Tensor, labels: Tensor, gamma: float = 0.5,
                        slack: float = 0.05, anchor: str = 'neg',
                        ignore_index: int = -100) -> Tensor:
    r"""Anchor loss on softmax probabilities (RoI heads), per sample:

    .. math::
        AL = -(1 - p_y + q_{neg})^{\gamma_{pos}} \log p_y
             - \sum_{k \ne y} (1 + p_k - q_{pos})^{\gamma_{neg}} \log(1 - p_k)

    with :math:`p = \operatorname{softmax}(x)` over the ``K`` columns (background
    included, as a class), :math:`q_{pos}, q_{neg}` as in :func:`sigmoid_anchor_loss`.
    This is the paper's formula with softmax probabilities in place of one-vs-all
    sigmoids (our adaptation for heads with a softmax classifier): the negative terms
    are kept so that ``anchor='neg'`` still has something to modulate, hence with
    ``gamma = 0`` it is cross-entropy plus :math:`-\sum_{k \ne y}\log(1 - p_k)`, not
    plain cross-entropy. ``log(1 - p_k)`` is computed without cancellation (finite for
    logits of +-100). Returns ``Tensor[N]``; 0 on ignored rows. Needs ``K >= 2``.
    """
    _check_labels(logits, labels)
    _check_anchor(gamma, slack, anchor)
    if logits.shape[1] < 2:
        raise ValueError(f'softmax anchor loss needs at least 2 columns, got {logits.shape[1]}')
    logits, dtype = upcast(logits)
    num = logits.shape[1]
    valid, safe = _split_labels(labels, num, ignore_index)
    onehot = labels_to_one_hot(safe, num, logits.dtype)
    with torch.no_grad():  # anchors without gradient
        pd = logits.detach().softmax(-1)
        p_true = (pd * onehot).sum(dim=1, keepdim=True)
        p_false = (pd * (1 - onehot)).amax(dim=1, keepdim=True)
        q_neg = (p_false + slack).clamp(max=1)
        q_pos = (p_true - slack).clamp(min=0)
    loss = _softmax_anchor_terms(logits, onehot, q_pos, q_neg, *_anchor_gammas(gamma, anchor))
    return torch.where(valid, loss, torch.zeros_like(loss)).to(dtype)


def _softmax_anchor_terms(logits: Tensor, onehot: Tensor, q_pos: Tensor, q_neg: Tensor,
                          gamma_pos: float, gamma_neg: float) -> Tensor:
    """The softmax anchor loss per sample for given anchors (``Tensor[N, 1]``)."""
    logp = logits.log_softmax(-1)
    p = logp.exp()
    log1mp = _log1m_softmax(logits, logp)
    pos = -_safe_pow(1 - p + q_neg, gamma_pos) * logp
    neg = -_safe_pow(1 + p - q_pos, gamma_neg) * log1mp
    return (onehot * pos + (1 - onehot) * neg).sum(dim=1)


# ------------------------------------------------------------------- symmetric CE
SCE_LOG_ZERO = -4.0


def sigmoid_symmetric_ce(logits: Tensor, targets: Tensor, alpha: float = 0.1,
                         beta: float = 1.0, log_zero: float = SCE_LOG_ZERO) -> Tensor:
    r"""Symmetric cross-entropy, one-vs-all form, per element:
    :math:`\alpha\,BCE(p, t) + \beta\,RCE`, where the reverse cross-entropy swaps the
    roles of prediction and label, :math:`RCE = -[p \log t + (1 - p)\log(1 - t)]`, with
    :math:`\log 0 := A` (``log_zero``). For 0/1 targets
    :math:`RCE = -A\,|t - p|`, computed as :math:`-A\,(t\,\sigma(-x) + (1-t)\,\sigma(x))`
    (soft targets are interpolated linearly).

    Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels",
    ICCV 2019, https://arxiv.org/abs/1908.06112; see :func:`softmax_symmetric_ce` for
    defaults.
    """
    _check_targets(logits, targets)
    _check_sce(alpha, beta, log_zero)
    logits, targets, dtype = upcast(logits, targets)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    gap = targets * torch.sigmoid(-logits) + (1 - targets) * torch.sigmoid(logits)
    return (alpha * ce - beta * log_zero * gap).to(dtype)


def softmax_symmetric_ce(logits: Tensor, labels: Tensor, alpha: float = 0.1,
                         beta: float = 1.0, log_zero: float = SCE_LOG_ZERO,
                         ignore_index: int = -100) -> Tensor:
    r"""Symmetric cross-entropy per sample, :math:`\alpha\,CE + \beta\,RCE` with

    .. math::
        CE = -\log p_y,\qquad RCE = -\sum_k p_k \log q_k = -A\,(1 - p_y)

    for a one-hot label :math:`q` with :math:`\log 0 := A` (``log_zero``).

    Wang et al., ICCV 2019, https://arxiv.org/abs/1908.06112: alpha 0.1, beta 1.0
    (their CIFAR-10 setting; 6.0 / 0.1 for CIFAR-100) and A = -4 (Sec. 3.3) are the
    defaults. Departures from HanxunH/SCELoss-Reproduce (its current ``loss.py``, whose
    CE is exact, ``torch.nn.CrossEntropyLoss``): its RCE clamps the one-hot label at
    1e-4 (so its A is ln 1e-4 = -9.21; pass ``log_zero=math.log(1e-4)``) and ``p`` at
    1e-7, so it adds :math:`-A\,(10^{-7} - p_k)` for every class with
    :math:`p_k < 10^{-7}`; here RCE is :math:`-A\,(1 - p_y)` with
    :math:`1 - p_y = -\mathrm{expm1}(\log p_y)`, and CE the ``log_softmax``
    cross-entropy. (The repository's first version, October 2019, also put the clamped
    label into CE, adding :math:`10^{-4}\sum_{k \ne y} -\log p_k`.)
    """
    _check_labels(logits, labels)
    _check_sce(alpha, beta, log_zero)
    logits, dtype = upcast(logits)
    valid, safe = _split_labels(labels, logits.shape[1], ignore_index)
    logp = _label_log_prob(logits, safe)
    loss = -alpha * logp + beta * log_zero * torch.expm1(logp)
    return torch.where(valid, loss, torch.zeros_like(loss)).to(dtype)


def _check_sce(alpha: float, beta: float, log_zero: float) -> None:
    check_positive('alpha', alpha, allow_zero=True)
    check_positive('beta', beta, allow_zero=True)
    if not isinstance(log_zero, (int, float)) or isinstance(log_zero, bool):
        raise TypeError(f'log_zero must be a number, got {type(log_zero).__name__}')
    if not (log_zero < 0 and math.isfinite(log_zero)):
        raise ValueError(f'log_zero (A, the value given to log 0) must be a finite negative '
                         f'number, got {log_zero}')


# ----------------------------------------------------------------------------- seesaw
def seesaw_ce_loss(logits: Tensor, labels: Tensor, cum_samples: Tensor, p: float = 0.8,
                   q: float = 2.0, eps: float = 1e-2) -> Tensor:
    r"""Seesaw cross-entropy per sample (the classification branch of Seesaw loss):

    .. math::
        L = -\log\frac{e^{z_y}}{e^{z_y} + \sum_{j \ne y} S_{yj}\, e^{z_j}},\quad
        S_{yj} = M_{yj} C_{yj}

    with the mitigation factor :math:`M_{yj} = (N_j / N_y)^p` if :math:`N_j < N_y`, else
    1 (:math:`N` the cumulative number of training samples per class, each clamped at
    1), and the compensation factor :math:`C_{yj} = (\sigma_j / \sigma_y)^q` if
    :math:`\sigma_j > \sigma_y`, else 1 (:math:`\sigma` the softmax scores, detached,
    :math:`\sigma_y` clamped at ``eps``).

    Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021,
    https://arxiv.org/abs/2008.10032 (p 0.8, q 2.0; eps 1e-2 as mmdet). Equal to mmdet's
    ``seesaw_ce_loss`` (the factors are built per sample, ``Tensor[N, C]``, instead of
    mmdet's ``C x C`` matrix, which gives the same numbers).

    Args:
        logits: ``Tensor[N, C]`` class logits (no background / objectness columns).
        labels: ``Tensor[N]`` in [0, C); callers mask the other rows (their value here
            is computed on label 0 and is meaningless).
        cum_samples: ``Tensor[C]`` cumulative class counts.
    """
    _check_labels(logits, labels)
    check_positive('p', p, allow_zero=True)
    check_positive('q', q, allow_zero=True)
    check_positive('eps', eps)
    logits, dtype = upcast(logits)
    num = logits.shape[1]
    if cum_samples.shape != (num,):
        raise ValueError(f'cum_samples must have shape ({num},), got {tuple(cum_samples.shape)}')
    safe = labels.clamp(0, num - 1)
    onehot = labels_to_one_hot(safe, num, logits.dtype)
    log_s = torch.zeros_like(logits)
    with torch.no_grad():  # both factors are weights without gradient (as in mmdet)
        if p > 0:
            counts = cum_samples.to(logits.dtype).clamp(min=1)
            ratio = counts.unsqueeze(0) / counts[safe].unsqueeze(1)
            log_s = log_s + torch.where(ratio < 1, ratio.pow(p), torch.ones_like(ratio)).log()
        if q > 0:
            scores = logits.detach().softmax(-1)
            self_scores = scores.gather(1, safe.unsqueeze(1)).clamp(min=eps)
            ratio = scores / self_scores
            log_s = log_s + torch.where(ratio > 1, ratio.pow(q), torch.ones_like(ratio)).log()
    adjusted = logits + log_s * (1 - onehot)
    loss = -_label_log_prob(adjusted, safe)
    return loss.to(dtype)
