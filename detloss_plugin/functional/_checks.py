"""Argument checks shared by the functional core.

Every check raises ``ValueError``/``TypeError`` naming the argument, the value that
was received and what is allowed. They look at shapes and Python values only, never
at tensor contents, so they cost no host synchronisation.
"""
from typing import Iterable

import torch
from torch import Tensor

__all__ = ['check_boxes', 'check_choice', 'check_positive', 'check_same_shape',
           'check_tensor', 'upcast']


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


def check_same_shape(pred: Tensor, target: Tensor, target_name: str = 'target') -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f'{target_name} must have the shape of pred {tuple(pred.shape)}, got '
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


def upcast(*tensors: Tensor):
    """Half-precision inputs are computed in float32 (returned last: the dtype to
    cast the result back to)."""
    dtype = tensors[0].dtype
    if dtype in (torch.float16, torch.bfloat16):
        return tuple(t.float() for t in tensors) + (dtype,)
    return tuple(tensors) + (dtype,)
