from .coordinate_loss import FocalL1Loss, L1Loss, MSELoss, SmoothL1Loss
from .iou_loss import CIoULoss, DIoULoss, EfficientIoULoss, FocalEIoULoss, GIoULoss, IoULoss

__all__ = [
    'IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'EfficientIoULoss', 'FocalEIoULoss',
    'L1Loss', 'MSELoss', 'SmoothL1Loss', 'FocalL1Loss',
]
