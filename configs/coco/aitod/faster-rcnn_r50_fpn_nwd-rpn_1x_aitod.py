_base_ = './_base_aitod.py'
# NWD in the RPN: assignment (MaxIoU thresholds on NWD), loss (1 - NWD, weight 10) and
# NMS (NWD > 0.85), as the reference's faster_rcnn_r50_aitod_rpn_nwd.py (17.8 AP there).
nwd = dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd', constant=12.8)
model = dict(
    rpn_head=dict(reg_decoded_bbox=True,
                  loss_bbox=dict(_delete_=True, type='detloss_plugin.NWDLoss',
                                 constant=12.8, loss_weight=10.0)),
    train_cfg=dict(
        rpn=dict(assigner=dict(iou_calculator=nwd, gpu_assign_thr=512)),
        rcnn=dict(assigner=dict(gpu_assign_thr=512)),
        rpn_proposal=dict(nms=dict(type='nwd_nms', iou_threshold=0.85))),
    test_cfg=dict(rpn=dict(nms=dict(type='nwd_nms', iou_threshold=0.85))))
