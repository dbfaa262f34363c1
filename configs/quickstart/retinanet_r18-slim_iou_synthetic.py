_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# IoU loss 1 - IoU (UnitBox, Yu et al., ACM MM 2016; linear form) on decoded boxes.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.IoULoss', mode='linear', loss_weight=2.0)))
