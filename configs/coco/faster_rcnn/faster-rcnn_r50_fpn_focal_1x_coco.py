_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Multi-class (softmax) focal loss over the 80 classes + background of the RoI head
# (hedgefair/Focal-Loss-Pytorch's form): gamma 2, no alpha weighting (alpha=None; give
# a list of 81 values for per-class weights, background last). No published result for
# Faster R-CNN: an experiment, not a reproduction.
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.FocalLoss', use_sigmoid=False,
                  gamma=2.0, alpha=None, loss_weight=1.0))))
