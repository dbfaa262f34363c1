from .nms import diou_nms_mmcv, register_diou_nms

__all__ = ['diou_nms_mmcv', 'register_diou_nms']
