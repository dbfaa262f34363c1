_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# CIoU loss (Zheng et al., AAAI 2020; alpha always on, true gradient).
# RetinaNet regresses encoded deltas with L1 (weight 1.0) in mmdet; an IoU-family loss needs
# decoded boxes (reg_decoded_bbox=True). loss_weight 2.0 is what mmdet uses for GIoU in the
# RetinaNet-style heads of ATSS, GFL and TOOD (no paper gives a RetinaNet value).
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.CIoULoss', alpha_gate=False, loss_weight=2.0)))
