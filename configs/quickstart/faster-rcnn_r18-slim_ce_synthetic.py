_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Softmax cross-entropy, detloss's implementation: the control run for the other
# softmax classification losses (same values as mmdet's CrossEntropyLoss).
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.CrossEntropyLoss', use_sigmoid=False,
                  loss_weight=1.0))))
