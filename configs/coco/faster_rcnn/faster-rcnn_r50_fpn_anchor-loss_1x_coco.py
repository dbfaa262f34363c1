_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Anchor loss (Ryou et al., ICCV 2019) on the RoI head's softmax over 80 classes +
# background: the paper's per-class formula with softmax probabilities (detloss's
# adaptation), gamma 0.5, slack 0.05, anchor 'neg'. No published detection result: an
# experiment, not a reproduction.
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.AnchorLoss', use_sigmoid=False,
                  gamma=0.5, slack=0.05, anchor='neg', loss_weight=1.0))))
