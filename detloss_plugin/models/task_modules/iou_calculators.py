r"""``detloss_plugin.BboxOverlaps2D``: mmdet's IoU calculator with every similarity of
:mod:`detloss_plugin.functional.box_geometry`, for any assigner's ``iou_calculator``::

    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                  iou_calculator=dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd'))
    # TaskAligned raises the overlap to the power beta = 6: map it into [0, 1]
    assigner=dict(type='TaskAlignedAssigner', topk=13,
                  iou_calculator=dict(type='detloss_plugin.BboxOverlaps2D', mode='giou',
                                      normalize=True))

With ``mode='iou'`` (the default) it returns mmdet's ``BboxOverlaps2D`` values (up to
the ``eps``, 1e-7 here, 1e-6 in mmdet) and accepts every call mmdet's assigners make:
``(bboxes1, bboxes2, mode=..., is_aligned=...)``, boxes with a fifth (score) column,
mmdet's box structures, ``scale`` / ``dtype='fp16'``.
"""
from typing import Optional

import torch

from detloss_plugin.functional._checks import check_choice, check_positive
from detloss_plugin.functional.box_geometry import (NWD_CONSTANT, SIMILARITY_MODES,
                                                    aligned_similarity, pairwise_similarity)
from detloss_plugin.registry import TASK_UTILS

__all__ = ['BboxOverlaps2D', 'box_tensor']


def box_tensor(boxes, name: str) -> torch.Tensor:
    """``(x1, y1, x2, y2)`` tensor of ``boxes``: mmdet box structures are unwrapped, a
    fifth (score) column is dropped, an empty ``(0,)`` / ``(n, 0)`` tensor becomes
    ``(0, 4)``."""
    if hasattr(boxes, 'tensor') and not isinstance(boxes, torch.Tensor):
        boxes = boxes.tensor   # mmdet's HorizontalBoxes
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor or mmdet boxes, got '
                        f'{type(boxes).__name__}')
    if boxes.numel() == 0 and (boxes.dim() < 2 or boxes.shape[-1] not in (4, 5)):
        return boxes.new_zeros((0, 4))
    if boxes.shape[-1] == 5:
        boxes = boxes[..., :4]
    if boxes.shape[-1] != 4:
        raise ValueError(f'{name} must have shape (..., 4) or (..., 5), got '
                         f'{tuple(boxes.shape)}')
    return boxes


@TASK_UTILS.register_module()
class BboxOverlaps2D:
    r"""Pairwise (or aligned) box similarity for assigners.

    Args:
        mode: ``'iou'`` (default), ``'iof'``, ``'giou'``, ``'diou'``, ``'ciou'``,
            ``'siou'``, ``'eiou'`` (Efficient-IoU) or ``'nwd'``; a ``mode`` passed to
            the call (mmdet's assigners pass ``'iof'`` for ignored boxes) overrides it.
        normalize: map the similarity from its range ``(low, 1]`` linearly onto
            [0, 1], :math:`(x - low) / (1 - low)`, which keeps the order: GIoU and DIoU
            :math:`(1 + x) / 2` (the reference's ``normalized_giou``), CIoU
            :math:`(1.5 + x) / 2.5`, SIoU :math:`(1.16 + x) / 2.16`, EIoU
            :math:`(3 + x) / 4`; IoU, IoF and NWD are already in [0, 1]. Needed where
            an assigner takes a power of the overlap or a geometric mean
            (TaskAlignedAssigner: :math:`s^\alpha u^\beta`, ATSS's mean + std
            threshold is fine either way). Thresholds (MaxIoU's 0.5 / 0.4) apply to
            the mapped value.
        constant: NWD's C in pixels (12.8, AI-TOD).
        theta: SIoU's shape exponent (4). alpha_gate: CIoU's gate (False).
        eps: 1e-7 (mmdet's calculator: 1e-6).
        scale, dtype: mmdet's: with ``dtype='fp16'`` the boxes are divided by
            ``scale`` and cast to half precision (to save memory, as mmdet does); the
            similarity is computed in float32 and returned in float32 on the CPU. NWD's
            constant is divided by ``scale`` too, so the value does not change.
    """

    def __init__(self, mode: str = 'iou', normalize: bool = False,
                 constant: float = NWD_CONSTANT, theta: float = 4.0,
                 alpha_gate: bool = False, eps: float = 1e-7, scale: float = 1.,
                 dtype: Optional[str] = None) -> None:
        check_choice('mode', mode, SIMILARITY_MODES)
        check_choice('dtype', dtype, (None, 'fp16'))
        check_positive('constant', constant)
        check_positive('eps', eps)
        check_positive('scale', scale)
        self.mode = mode
        self.normalize = bool(normalize)
        self.constant = float(constant)
        self.theta = float(theta)
        self.alpha_gate = bool(alpha_gate)
        self.eps = float(eps)
        self.scale = float(scale)
        self.dtype = dtype

    def __call__(self, bboxes1, bboxes2, mode: Optional[str] = None,
                 is_aligned: bool = False) -> torch.Tensor:
        """``Tensor[m, n]`` (``Tensor[m]`` when ``is_aligned``) for ``bboxes1``
        ``(m, 4)`` and ``bboxes2`` ``(n, 4)`` (or ``(..., 5)``, or mmdet boxes)."""
        mode = self.mode if mode is None else mode
        check_choice('mode', mode, SIMILARITY_MODES)
        bboxes1 = box_tensor(bboxes1, 'bboxes1')
        bboxes2 = box_tensor(bboxes2, 'bboxes2')
        constant = self.constant
        if self.dtype == 'fp16':
            bboxes1 = (bboxes1 / self.scale).half()
            bboxes2 = (bboxes2 / self.scale).half()
            constant = constant / self.scale
        options = dict(normalize=self.normalize, constant=constant, theta=self.theta,
                       alpha_gate=self.alpha_gate)
        if is_aligned:
            out = aligned_similarity(bboxes1, bboxes2, mode, self.eps, **options)
        else:
            out = pairwise_similarity(bboxes1, bboxes2, mode, self.eps, **options)
        if out.dtype == torch.float16 and not out.is_cuda:
            out = out.float()   # as mmdet: float32 on the CPU
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mode={self.mode!r}, '
                f'normalize={self.normalize}, constant={self.constant}, '
                f'scale={self.scale}, dtype={self.dtype})')
