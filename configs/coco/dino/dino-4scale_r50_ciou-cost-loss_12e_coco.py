_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# DINO with CIoU in both the loss and the Hungarian matching, so that matching and
# regression agree (mmdet's IoUCost knows 'iou' and 'giou' only). Weights as mmdet's
# GIoU ones (2.0).
model = dict(
    bbox_head=dict(loss_iou=dict(_delete_=True, type='detloss_plugin.CIoULoss',
                                 loss_weight=2.0)),
    train_cfg=dict(assigner=dict(match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='detloss_plugin.IoUCost', iou_mode='ciou', weight=2.0)])))
