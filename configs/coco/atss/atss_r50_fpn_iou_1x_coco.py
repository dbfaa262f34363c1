_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# IoU loss -ln(IoU) (UnitBox, Yu et al. 2016; mmdet's IoULoss computes the same).
# ATSS regresses decoded boxes (mmdet's config: GIoULoss, loss_weight 2.0, kept here).
model = dict(bbox_head=dict(
    loss_bbox=dict(type='detloss_plugin.IoULoss', mode='log', loss_weight=2.0)))
