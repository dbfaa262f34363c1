_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Smooth L1 on the encoded deltas, beta 0.11 (Detectron's and mmdet 1.x/2.x RetinaNet).
model = dict(bbox_head=dict(
    reg_decoded_bbox=False,
    loss_bbox=dict(type='detloss_plugin.SmoothL1Loss', beta=0.11, loss_weight=1.0)))
