_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# GIoU loss (Rezatofighi et al., CVPR 2019) on decoded boxes.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.GIoULoss', loss_weight=2.0)))
