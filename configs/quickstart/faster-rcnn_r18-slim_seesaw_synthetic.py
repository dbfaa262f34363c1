_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Seesaw loss (Wang et al., CVPR 2021), p 0.8, q 2.0, on the 4 classes (num_classes must
# equal the head's): the RoI head asks the loss for its classifier width (4 + 2: classes
# and an objectness pair) and its inference scores. The synthetic classes are balanced,
# so this runs the mechanics rather than the long-tail setting seesaw is meant for.
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.SeesawLoss', use_sigmoid=False,
                  p=0.8, q=2.0, num_classes=4, eps=1e-2, loss_weight=1.0))))
