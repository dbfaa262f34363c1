_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Wise-IoU v3 (Tong et al., arXiv 2301.10051; alpha 1.9, delta 3 as in the paper) on
# decoded boxes. Its running mean of 1 - IoU is a buffer of the loss module: saved in
# checkpoints and restored by --resume.
model = dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.WIoULoss', version='v3', alpha=1.9, delta=3.0,
                   momentum=0.01, loss_weight=2.0)))
