_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Focal-EIoU loss IoU^0.5 * L_EIoU (Zhang et al., arXiv 2101.08158) on decoded boxes.
# detach_weight=True (FocalEIoULoss's default, written out): with the weight IoU^0.5
# differentiated (the paper's formula, detach_weight=False), the loss is minimised by
# driving IoU to 0 (weight 0); the quick-start RetinaNet collapsed to mAP 0.000 that
# way, and reached 0.489 with the weight detached (README, 'Which box loss?').
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.FocalEIoULoss', gamma=0.5, detach_weight=True, loss_weight=2.0)))
