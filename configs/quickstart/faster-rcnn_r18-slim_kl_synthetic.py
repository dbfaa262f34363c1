_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# KL loss (He et al., CVPR 2019): the RoI head predicts alpha = log sigma^2 for each
# regressed delta (KLBBoxHead: Shared2FCBBoxHead + an fc branch initialised N(0, 1e-4))
# and is trained with exp(-alpha) * SmoothL1(delta) + alpha / 2. Test: plain NMS; the
# predictions carry `bboxes_std`. Control: faster-rcnn_r18-slim_smoothl1_synthetic.py;
# with var voting: faster-rcnn_r18-slim_kl-varvote_synthetic.py.
model = dict(roi_head=dict(bbox_head=dict(
    type='detloss_plugin.KLBBoxHead',
    loss_bbox=dict(_delete_=True, type='detloss_plugin.KLLoss', beta=1.0,
                   loss_weight=1.0))))
