_base_ = './_base_/faster-rcnn_r18-slim_tiny.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# NWD in the RPN, as the reference's faster_rcnn_r50_aitod_rpn_nwd.py (Xu et al. 2022):
# the MaxIoU assigner ranks anchors by NWD (thresholds 0.7 / 0.3 apply to NWD), the
# regression loss is 1 - NWD (weight 10, on decoded boxes) and proposals go through
# NWD-NMS at 0.85. C = 12.8 px, the objects' mean size. The R-CNN stays on IoU.
nwd = dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd', constant=12.8)
model = dict(
    rpn_head=dict(reg_decoded_bbox=True,
                  loss_bbox=dict(_delete_=True, type='detloss_plugin.NWDLoss',
                                 constant=12.8, loss_weight=10.0)),
    train_cfg=dict(
        rpn=dict(assigner=dict(iou_calculator=nwd)),
        rpn_proposal=dict(nms=dict(type='nwd_nms', iou_threshold=0.85))),
    test_cfg=dict(rpn=dict(nms=dict(type='nwd_nms', iou_threshold=0.85))))
