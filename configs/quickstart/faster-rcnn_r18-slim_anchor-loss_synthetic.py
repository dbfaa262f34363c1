_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Anchor loss (Ryou et al., ICCV 2019) on the RoI head's softmax over 4 classes +
# background (detloss's adaptation of the per-class formula): gamma 0.5, slack 0.05,
# anchor 'neg'.
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.AnchorLoss', use_sigmoid=False,
                  gamma=0.5, slack=0.05, anchor='neg', loss_weight=1.0))))
