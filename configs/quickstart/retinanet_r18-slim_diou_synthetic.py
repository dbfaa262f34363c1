_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# DIoU loss (Zheng et al., AAAI 2020) on decoded boxes.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.DIoULoss', loss_weight=2.0)))
