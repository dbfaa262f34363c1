_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# KL loss (He et al., "Bounding Box Regression with Uncertainty for Accurate Object
# Detection", CVPR 2019, https://arxiv.org/abs/1809.08545): KLBBoxHead predicts
# alpha = log sigma^2 per regressed delta (fc initialised N(0, 1e-4), bias 0) and is
# trained with exp(-alpha) * SmoothL1_1(delta) + alpha / 2, normalised by the number of
# sampled RoIs as the reference. Plain NMS at test time; pred_instances.bboxes_std holds
# the standard deviation of x1, y1, x2, y2. Var voting:
# faster-rcnn_r50_fpn_kl-varvote_1x_coco.py. Paper (abstract, Mask R-CNN R50-FPN on
# COCO, with var voting and soft-NMS): +1.8 AP, +6.2 AP90. Not trained here (no GPU).
model = dict(roi_head=dict(bbox_head=dict(
    type='detloss_plugin.KLBBoxHead',
    loss_bbox=dict(_delete_=True, type='detloss_plugin.KLLoss', beta=1.0,
                   loss_weight=1.0))))
