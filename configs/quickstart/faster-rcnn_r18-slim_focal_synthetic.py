_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Multi-class (softmax) focal loss over the 4 classes + background of the RoI head:
# gamma 2, no alpha weighting (alpha=None; a list of 5 values, background last, gives
# per-class weights).
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.FocalLoss', use_sigmoid=False,
                  gamma=2.0, alpha=None, loss_weight=1.0))))
