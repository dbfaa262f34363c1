_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Softmax cross-entropy, detloss's implementation: the control run for the other
# classification losses (same values as mmdet's CrossEntropyLoss; zoo: 37.4 AP).
# _delete_ drops the keys of the base's mmdet loss dict.
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.CrossEntropyLoss', use_sigmoid=False,
                  loss_weight=1.0))))
