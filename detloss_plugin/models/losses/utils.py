"""Weighting and reduction, the mmdet way, for detloss's registered loss modules.

The semantics are those of mmdet's ``weight_reduce_loss``: multiply by ``weight``;
with ``avg_factor`` and ``reduction='mean'`` divide the sum by ``avg_factor + eps``;
``avg_factor`` with ``'sum'`` is an error. Unlike mmdet's IoU losses there is no
``torch.any(weight > 0)`` shortcut (a host synchronisation): the element-wise losses
are finite everywhere, so zero weights give an exact zero with the graph connected.
"""
import math
import numbers
from typing import Optional, Union

import torch
from torch import Tensor, nn

from detloss_plugin.functional._checks import check_choice, check_finite_number, upcast

__all__ = ['REDUCTIONS', 'BaseLoss', 'box_weight', 'broadcast_weight', 'check_reduction',
           'float32_inputs', 'weight_reduce_loss']

REDUCTIONS = ('none', 'mean', 'sum')
_AVG_EPS = torch.finfo(torch.float32).eps


def check_reduction(name: str, reduction: str) -> None:
    check_choice(name, reduction, REDUCTIONS)


def check_avg_factor(avg_factor) -> None:
    """``avg_factor`` is None, a real number or a one-element tensor (shapes only: no
    host synchronisation)."""
    if avg_factor is None:
        return
    if isinstance(avg_factor, Tensor):
        if avg_factor.numel() != 1:
            raise ValueError(f'avg_factor must be a number or a one-element tensor, got a '
                             f'tensor of shape {tuple(avg_factor.shape)}')
        return
    if not isinstance(avg_factor, numbers.Real) or isinstance(avg_factor, bool):
        raise TypeError(f'avg_factor must be a number, a one-element tensor or None, got '
                        f'{type(avg_factor).__name__} {avg_factor!r}')


def float32_inputs(*tensors):
    """Half-precision tensors as float32 (their gradients go back to half precision
    with saturation, :func:`detloss_plugin.functional._checks.upcast`); anything else
    unchanged. Modules call it before the element-wise function, so that the loss they
    reduce is the float32 one (a value that float32 holds but float16 does not, such
    as a squared error of 1e8, must not become Inf before the reduction)."""
    return tuple(upcast(t)[0] if isinstance(t, Tensor)
                 and t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


def weight_reduce_loss(loss: Tensor, weight: Optional[Tensor] = None, reduction: str = 'mean',
                       avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
    """Apply an element-wise ``weight`` and reduce.

    Shapes: ``loss`` any; ``weight`` broadcastable to it. Returns ``loss`` for
    ``'none'`` and a scalar otherwise.
    """
    check_avg_factor(avg_factor)
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        if reduction == 'mean':
            # mean of an empty tensor is NaN; keep the graph and return zero.
            return loss.sum() if loss.numel() == 0 else loss.mean()
        if reduction == 'sum':
            return loss.sum()
        return loss
    if reduction == 'mean':
        return loss.sum() / (avg_factor + _AVG_EPS)
    if reduction == 'none':
        return loss
    raise ValueError('avg_factor can not be used with reduction="sum"')


class BaseLoss(nn.Module):
    """``loss_weight`` and ``reduction`` with mmdet's call contract, and the option
    rules of every detloss module.

    Subclasses implement ``forward`` by computing the element-wise loss and returning
    ``self.reduce(loss, weight, avg_factor, reduction_override)``.

    Options. Every registered class names its options in its own ``__init__``, so a
    typo in a config raises Python's ``TypeError`` naming the class and the option
    (``CIoULoss.__init__() got an unexpected keyword argument 'alpha_gat'``); a class
    that passes ``**kwargs`` on to its base ends here, where the same error names the
    public class. ``loss_weight`` is a finite number >= 0 (0 switches a term off) and
    ``reduction`` one of ``'none'``, ``'mean'``, ``'sum'``, in every module.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0, **unknown) -> None:
        if unknown:
            raise TypeError(f'{type(self).__name__}.__init__() got an unexpected keyword '
                            f'argument {next(iter(unknown))!r}')
        super().__init__()
        check_reduction('reduction', reduction)
        check_finite_number('loss_weight', loss_weight)
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def reduce(self, loss: Tensor, weight: Optional[Tensor] = None,
               avg_factor: Optional[Union[float, Tensor]] = None,
               reduction_override: Optional[str] = None) -> Tensor:
        if reduction_override is not None:
            check_reduction('reduction_override', reduction_override)
        reduction = reduction_override or self.reduction
        if loss.dtype in (torch.float16, torch.bfloat16):
            # one convention for every module: half precision is reduced (and returned)
            # in float32, since a sum over ~10^5 anchors overflows float16. (The modules
            # also compute the element-wise loss in float32: float32_inputs.)
            loss = loss.float()
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)

    def extra_repr(self) -> str:
        return f'reduction={self.reduction!r}, loss_weight={self.loss_weight}'


def broadcast_weight(weight: Optional[Tensor], shape) -> Optional[Tensor]:
    """Bring a head's ``weight`` to an element-wise loss of ``shape``, accepting every
    shape mmdet's losses accept:

    - ``shape`` itself;
    - ``shape[:-1]``: one weight per row (per sample, per box), applied to every column;
    - any shape that broadcasts to ``shape`` (``(N, 1)``, ``(B, N, 1)``, a scalar);
    - ``shape`` flattened (``(N * C,)`` for a ``(N, C)`` loss, as FSAF passes to
      ``FocalLoss``).
    """
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f'weight must be a torch.Tensor or None, got {type(weight).__name__}')
    shape = tuple(shape)
    if tuple(weight.shape) == shape:
        return weight
    if shape and tuple(weight.shape) == shape[:-1]:
        return weight.unsqueeze(-1)
    try:
        if tuple(torch.broadcast_shapes(weight.shape, shape)) == shape:
            return weight
    except RuntimeError:
        pass
    if shape and weight.dim() == 1 and weight.numel() == math.prod(shape):
        return weight.reshape(shape)
    per_row = f', one value per row {shape[:-1]}' if len(shape) > 1 else ''
    raise ValueError(
        f'weight must have the shape of the loss {shape}{per_row}, a shape that broadcasts '
        f'to it or its {math.prod(shape)} values flattened, got {tuple(weight.shape)}')


def box_weight(weight: Optional[Tensor], pred: Tensor, per_box: bool) -> Optional[Tensor]:
    """Bring a head's ``weight`` (``(n,)`` or ``(n, 4)`` for ``pred`` of ``(n, 4)``) to
    the shape of the element-wise loss: ``(n,)`` for per-box losses (a ``(n, 4)``
    weight is averaged over the coordinates, as mmdet does) and ``(n, 4)`` for
    coordinate-wise losses (any weight :func:`broadcast_weight` accepts)."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f'weight must be a torch.Tensor or None, got {type(weight).__name__}')
    if not per_box:
        return broadcast_weight(weight, pred.shape)
    if tuple(weight.shape) == tuple(pred.shape):
        return weight.mean(-1)
    box_shape = tuple(pred.shape[:-1])
    if tuple(weight.shape) == box_shape:
        return weight
    raise ValueError(
        f'weight must have shape {box_shape} or {tuple(pred.shape)} for pred of shape '
        f'{tuple(pred.shape)}, got {tuple(weight.shape)}')
