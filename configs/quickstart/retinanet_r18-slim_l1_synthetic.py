_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# detloss's L1 loss on the encoded deltas (what mmdet's RetinaNet uses).
model = dict(bbox_head=dict(
    reg_decoded_bbox=False,
    loss_bbox=dict(type='detloss_plugin.L1Loss', loss_weight=1.0)))
