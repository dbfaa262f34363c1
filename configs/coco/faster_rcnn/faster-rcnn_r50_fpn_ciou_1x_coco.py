_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# CIoU loss (Zheng et al., AAAI 2020; alpha always on, true gradient).
# RoI head regression on decoded boxes. The RoI head averages over all sampled RoIs
# (512 per image), not over positives, hence the large weights: mmdet's configs use 10.0
# for IoU / GIoU and 12.0 for CIoU (the DIoU authors' Faster R-CNN setting, used here for
# DIoU too); 10.0 for Efficient-IoU / Focal-EIoU is our choice (the paper gives none).
# The RPN keeps mmdet's L1 loss.
model = dict(roi_head=dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.CIoULoss', alpha_gate=False, loss_weight=12.0))))
