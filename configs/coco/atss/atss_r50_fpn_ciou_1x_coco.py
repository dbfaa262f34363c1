_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# CIoU loss (Zheng et al., AAAI 2020; alpha always on, true gradient).
# ATSS regresses decoded boxes (mmdet's config: GIoULoss, loss_weight 2.0, kept here).
model = dict(bbox_head=dict(
    loss_bbox=dict(type='detloss_plugin.CIoULoss', alpha_gate=False, loss_weight=2.0)))
