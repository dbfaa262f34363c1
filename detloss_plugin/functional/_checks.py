"""Argument checks shared by the functional core.

Every check raises ``ValueError``/``TypeError`` naming the argument, the value that
was received and what is allowed. They look at shapes and Python values only, never
at tensor contents, so they cost no host synchronisation.
"""
from typing import Iterable

import torch
from torch import Tensor

__all__ = ['check_boxes', 'check_choice', 'check_positive', 'check_same_shape',
           'check_tensor', 'saturating_cast', 'upcast']

_HALF = (torch.float16, torch.bfloat16)


def check_tensor(name: str, value) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(value).__name__}')
    if not value.is_floating_point():
        raise TypeError(f'{name} must be a floating-point tensor, got dtype {value.dtype}')


def check_boxes(pred: Tensor, target: Tensor) -> None:
    """``pred`` and ``target`` are float tensors of the same shape ``(..., 4)``."""
    check_tensor('pred', pred)
    check_tensor('target', target)
    if pred.dim() == 0 or pred.shape[-1] != 4:
        raise ValueError(
            f'pred must hold boxes of shape (..., 4) as (x1, y1, x2, y2), got shape '
            f'{tuple(pred.shape)}')
    check_same_shape(pred, target)


def check_same_shape(pred: Tensor, target: Tensor, target_name: str = 'target',
                     pred_name: str = 'pred') -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f'{target_name} must have the shape of {pred_name} {tuple(pred.shape)}, got '
            f'{tuple(target.shape)}')


def check_choice(name: str, value, allowed: Iterable) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f'{name} must be one of {allowed}, got {value!r}')


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f'{name} must be a number, got {type(value).__name__}')
    if value < 0 or (value == 0 and not allow_zero):
        bound = '>= 0' if allow_zero else '> 0'
        raise ValueError(f'{name} must be {bound}, got {value}')


def saturating_cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Cast to ``dtype``; into half precision, values beyond its range saturate at its
    largest finite value instead of overflowing to Inf."""
    if dtype in _HALF and x.dtype != dtype:
        big = torch.finfo(dtype).max
        x = x.clamp(-big, big)
    return x.to(dtype)


class _HalfToFloat(torch.autograd.Function):
    """``x.float()`` whose gradient goes back to half precision by
    :func:`saturating_cast`: the losses are computed in float32, and a true derivative
    of order 1/eps at a degenerate box (1e7 > float16's 65504) must not come back as
    Inf."""

    @staticmethod
    def forward(ctx, x):
        ctx.dtype = x.dtype
        return x.float()

    @staticmethod
    def backward(ctx, grad):
        return saturating_cast(grad, ctx.dtype)


def upcast(*tensors: Tensor):
    """Half-precision inputs are computed in float32 (returned last: the dtype to
    cast the result back to). Their gradients are cast back with saturation."""
    dtype = tensors[0].dtype
    if dtype in _HALF:
        return tuple(_HalfToFloat.apply(t) if t.requires_grad else t.float()
                     for t in tensors) + (dtype,)
    return tuple(tensors) + (dtype,)


# ---- finite options (the ranking losses) ---------------------------------------------
def check_finite(name: str, value) -> None:
    """``value`` is a finite Python number (NaN and +-Inf refused)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f'{name} must be a number, got {type(value).__name__}')
    if value != value or value in (float('inf'), float('-inf')):
        raise ValueError(f'{name} must be a finite number, got {value}')


def check_finite_positive(name: str, value, allow_zero: bool = False) -> None:
    """:func:`check_positive`, and NaN / Inf refused."""
    check_finite(name, value)
    check_positive(name, value, allow_zero)
