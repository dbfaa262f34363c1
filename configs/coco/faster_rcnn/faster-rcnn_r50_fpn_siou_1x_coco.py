_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# SIoU loss (Gevorgyan, arXiv 2205.12740; the paper's distance cost, theta 4).
# Not mmdet's SIoULoss, whose default neg_gamma=False reverses the distance cost's sign.
# RoI head regression on decoded boxes. The RoI head averages over all sampled RoIs
# (512 per image), not over positives, hence the large weight: 10.0 as mmdet's IoU / GIoU
# configs (our choice; the paper gives no Faster R-CNN value). The RPN keeps mmdet's L1.
model = dict(roi_head=dict(bbox_head=dict(
    reg_decoded_bbox=True,
    loss_bbox=dict(type='detloss_plugin.SIoULoss', form='paper', theta=4.0, loss_weight=10.0))))
