_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# CIoU loss (Zheng et al., AAAI 2020; alpha always on, true gradient).
# FCOS always regresses decoded boxes (weighted by the centerness targets); loss_weight 1.0
# as mmdet's FCOS configs use for IoULoss and GIoULoss.
model = dict(bbox_head=dict(
    loss_bbox=dict(type='detloss_plugin.CIoULoss', alpha_gate=False, loss_weight=1.0)))
