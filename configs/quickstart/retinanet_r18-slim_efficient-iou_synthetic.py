_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Efficient-IoU loss (Zhang et al., arXiv 2101.08158) on decoded boxes.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.EfficientIoULoss', loss_weight=2.0)))
