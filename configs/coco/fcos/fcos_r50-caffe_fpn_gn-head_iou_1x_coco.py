_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# IoU loss -ln(IoU) (UnitBox, Yu et al. 2016; mmdet's IoULoss computes the same).
# FCOS always regresses decoded boxes (weighted by the centerness targets); loss_weight 1.0
# as mmdet's FCOS configs use for IoULoss and GIoULoss.
model = dict(bbox_head=dict(
    loss_bbox=dict(type='detloss_plugin.IoULoss', mode='log', loss_weight=1.0)))
