"""detloss's functional core: element-wise losses and NMS in pure torch (no mmdet)."""
from .box_geometry import BoxPairGeometry, box_pair_geometry
from .coordinate_losses import focal_l1_loss, l1_loss, mse_loss, smooth_l1_loss
from .iou_losses import ciou_loss, diou_loss, eiou_loss, focal_eiou_loss, giou_loss, iou_loss
from .nms import batched_diou_nms, diou_nms

__all__ = [
    'BoxPairGeometry', 'box_pair_geometry',
    'iou_loss', 'giou_loss', 'diou_loss', 'ciou_loss', 'eiou_loss', 'focal_eiou_loss',
    'l1_loss', 'mse_loss', 'smooth_l1_loss', 'focal_l1_loss',
    'diou_nms', 'batched_diou_nms',
]
