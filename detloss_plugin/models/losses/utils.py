"""Weighting and reduction, the mmdet way, for detloss's registered loss modules.

The semantics are those of mmdet's ``weight_reduce_loss``: multiply by ``weight``;
with ``avg_factor`` and ``reduction='mean'`` divide the sum by ``avg_factor + eps``;
``avg_factor`` with ``'sum'`` is an error. Unlike mmdet's IoU losses there is no
``torch.any(weight > 0)`` shortcut (a host synchronisation): the element-wise losses
are finite everywhere, so zero weights give an exact zero with the graph connected.
"""
import difflib
import inspect
import numbers
from typing import List, Optional, Union

import torch
from torch import Tensor, nn

from detloss_plugin.functional._checks import check_choice, upcast

__all__ = ['REDUCTIONS', 'BaseLoss', 'check_reduction', 'float32_inputs',
           'weight_reduce_loss']

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


def _init_options(cls) -> List[str]:
    """The keyword options ``cls(...)`` accepts: the named parameters of its
    ``__init__`` and, while an ``__init__`` passes ``**kwargs`` on, of its bases'."""
    names: List[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        if klass is nn.Module or klass is object:
            break
        params = list(inspect.signature(init).parameters.values())[1:]
        names += [p.name for p in params if p.name not in names and p.kind in (
            p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


class BaseLoss(nn.Module):
    """``loss_weight`` and ``reduction`` with mmdet's call contract.

    Subclasses implement ``forward`` by computing the element-wise loss and returning
    ``self.reduce(loss, weight, avg_factor, reduction_override)``.

    An unknown keyword option (a typo in a config) raises a ``TypeError`` that names
    the public class, the option, the closest valid one and the full list (instead of
    Python's message about a private base class's ``__init__``).
    """

    def __new__(cls, *args, **kwargs):
        if kwargs:
            options = _init_options(cls)
            unknown = [k for k in kwargs if k not in options]
            if unknown:
                close = difflib.get_close_matches(unknown[0], options, n=1)
                hint = f' (did you mean {close[0]!r}?)' if close else ''
                raise TypeError(f'{cls.__name__} got an unknown option {unknown[0]!r}{hint}; '
                                f'its options are {", ".join(options)}')
        return super().__new__(cls)

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        check_reduction('reduction', reduction)
        if not isinstance(loss_weight, (int, float)) or isinstance(loss_weight, bool):
            raise TypeError(f'loss_weight must be a number, got {type(loss_weight).__name__}')
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


def box_weight(weight: Optional[Tensor], pred: Tensor, per_box: bool) -> Optional[Tensor]:
    """Bring a head's ``weight`` (``(n,)`` or ``(n, 4)`` for ``pred`` of ``(n, 4)``) to
    the shape of the element-wise loss: ``(n,)`` for per-box losses (a ``(n, 4)``
    weight is averaged over the coordinates, as mmdet does) and ``(n, 4)`` for
    coordinate-wise losses."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f'weight must be a torch.Tensor or None, got {type(weight).__name__}')
    box_shape = tuple(pred.shape[:-1])
    if tuple(weight.shape) == tuple(pred.shape):
        return weight.mean(-1) if per_box else weight
    if tuple(weight.shape) == box_shape:
        return weight if per_box else weight.unsqueeze(-1)
    raise ValueError(
        f'weight must have shape {box_shape} or {tuple(pred.shape)} for pred of shape '
        f'{tuple(pred.shape)}, got {tuple(weight.shape)}')
