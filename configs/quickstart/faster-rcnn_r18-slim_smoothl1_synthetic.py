_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Smooth L1 (beta = 1) on the RoI head's deltas: the control run for the KL loss
# (faster-rcnn_r18-slim_kl_synthetic.py), which is Smooth L1 weighted by exp(-alpha) plus
# alpha / 2 on the same deltas. mmdet's stock Faster R-CNN uses L1 there; Detectron, the
# KL loss reference's baseline, Smooth L1 with beta 1.
model = dict(roi_head=dict(bbox_head=dict(
    loss_bbox=dict(_delete_=True, type='detloss_plugin.SmoothL1Loss', beta=1.0,
                   loss_weight=1.0))))
