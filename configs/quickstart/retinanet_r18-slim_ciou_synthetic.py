_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# CIoU loss (Zheng et al., AAAI 2020; alpha always on, true gradient) on decoded boxes.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.CIoULoss', alpha_gate=False, loss_weight=2.0)))
