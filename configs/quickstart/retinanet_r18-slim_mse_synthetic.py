_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# L2 (MSE) loss on the encoded deltas.
model = dict(bbox_head=dict(
    reg_decoded_bbox=False,
    loss_bbox=dict(type='detloss_plugin.MSELoss', loss_weight=1.0)))
