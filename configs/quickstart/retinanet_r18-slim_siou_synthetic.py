_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# SIoU loss (Gevorgyan, arXiv 2205.12740; the paper's distance cost, theta 4) on decoded
# boxes. Not mmdet's SIoULoss, whose default neg_gamma=False reverses the distance cost.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.SIoULoss', form='paper', theta=4.0, loss_weight=2.0)))
