_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Alpha-IoU loss (He et al., NeurIPS 2021): alpha-CIoU with alpha 3 (paper, reference).
# RetinaNet regresses encoded deltas with L1 (weight 1.0) in mmdet; an IoU-family loss needs
# decoded boxes (reg_decoded_bbox=True). loss_weight 2.0 as the plugin's other IoU-family
# RetinaNet configs (mmdet's GIoU weight in ATSS, GFL and TOOD).
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.AlphaIoULoss', alpha=3.0, base='ciou',
                   loss_weight=2.0)))
