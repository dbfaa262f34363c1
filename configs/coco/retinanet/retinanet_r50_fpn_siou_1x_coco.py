_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# SIoU loss (Gevorgyan, arXiv 2205.12740; the paper's distance cost, theta 4).
# Not mmdet's SIoULoss, whose default neg_gamma=False reverses the distance cost's sign.
# RetinaNet regresses encoded deltas with L1 (weight 1.0) in mmdet; an IoU-family loss needs
# decoded boxes (reg_decoded_bbox=True). loss_weight 2.0 as the plugin's other IoU-family
# RetinaNet configs (mmdet's GIoU weight in ATSS, GFL and TOOD).
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.SIoULoss', form='paper', theta=4.0, loss_weight=2.0)))
