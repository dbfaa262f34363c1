_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Wise-IoU v3 (Tong et al., arXiv 2301.10051): alpha 1.9, delta 3 as in the paper (the
# reference's current code uses 1.7 / 2.7). The running mean of 1 - IoU is a buffer of the
# loss module, saved in checkpoints and restored by --resume, synchronised across GPUs.
# RetinaNet regresses encoded deltas with L1 (weight 1.0) in mmdet; an IoU-family loss needs
# decoded boxes (reg_decoded_bbox=True). loss_weight 2.0 as the plugin's other IoU-family
# RetinaNet configs (mmdet's GIoU weight in ATSS, GFL and TOOD).
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.WIoULoss', version='v3', alpha=1.9, delta=3.0,
                   momentum=0.01, loss_weight=2.0)))
