_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Focal-EIoU loss IoU^0.5 * L_EIoU (Zhang et al., arXiv 2101.08158).
# ATSS regresses decoded boxes (mmdet's config: GIoULoss, loss_weight 2.0, kept here).
model = dict(bbox_head=dict(
    loss_bbox=dict(type='detloss_plugin.FocalEIoULoss', gamma=0.5, loss_weight=2.0)))
