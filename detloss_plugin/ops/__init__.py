from .nms import diou_nms_mmcv, register_diou_nms
from .cluster_nms import cluster_diou_nms_mmcv, register_cluster_diou_nms
from .nwd_nms import nwd_nms_mmcv, register_nwd_nms

__all__ = ['diou_nms_mmcv', 'register_diou_nms',
           'cluster_diou_nms_mmcv', 'register_cluster_diou_nms',
           'nwd_nms_mmcv', 'register_nwd_nms']
