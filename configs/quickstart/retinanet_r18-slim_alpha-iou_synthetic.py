_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Alpha-IoU loss (He et al., NeurIPS 2021): alpha-CIoU with alpha 3, the paper's and the
# reference's choice, on decoded boxes.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.AlphaIoULoss', alpha=3.0, base='ciou',
                   loss_weight=2.0)))
