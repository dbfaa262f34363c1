from .coordinate_loss import FocalL1Loss, L1Loss, MSELoss, SmoothL1Loss
from .iou_loss import CIoULoss, DIoULoss, EfficientIoULoss, FocalEIoULoss, GIoULoss, IoULoss
from .iou_loss import AlphaIoULoss, SIoULoss, WIoULoss
from .anchor_loss import AnchorLoss
from .cross_entropy_loss import CrossEntropyLoss
from .focal_loss import FocalLoss
from .ghm_loss import GHMC, GHMR
from .sce_loss import SymmetricCELoss
from .seesaw_loss import SeesawLoss
from .ranking_loss import ALRPLoss, APLoss, DRLoss, RankSortLoss
from .kl_loss import KLLoss
from .nwd_loss import NWDLoss

__all__ = [
    'IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'EfficientIoULoss', 'FocalEIoULoss',
    'L1Loss', 'MSELoss', 'SmoothL1Loss', 'FocalL1Loss',
    'CrossEntropyLoss', 'FocalLoss', 'GHMC', 'GHMR', 'AnchorLoss', 'SymmetricCELoss',
    'SeesawLoss',
    'SIoULoss', 'AlphaIoULoss', 'WIoULoss',
    'APLoss', 'DRLoss', 'RankSortLoss', 'ALRPLoss', 'KLLoss', 'NWDLoss',
]
