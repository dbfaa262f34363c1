_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Focal L1 (Zhang et al., arXiv 2101.08158, Sec. 3.3) on the encoded deltas; beta 1/e, alpha = -1/ln(beta) = 1.
model = dict(bbox_head=dict(
    reg_decoded_bbox=False,
    loss_bbox=dict(type='detloss_plugin.FocalL1Loss', loss_weight=1.0)))
