_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Wise-IoU v3 (Tong et al., arXiv 2301.10051): alpha 1.9, delta 3 as in the paper (the
# reference's current code uses 1.7 / 2.7). The running mean of 1 - IoU is a buffer of the
# loss module, saved in checkpoints and restored by --resume, synchronised across GPUs.
# RoI head regression on decoded boxes. The RoI head averages over all sampled RoIs
# (512 per image), not over positives, hence the large weight: 10.0 as mmdet's IoU / GIoU
# configs (our choice; the paper gives no Faster R-CNN value). The RPN keeps mmdet's L1.
model = dict(roi_head=dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.WIoULoss', version='v3', alpha=1.9, delta=3.0,
                   momentum=0.01, loss_weight=10.0))))
