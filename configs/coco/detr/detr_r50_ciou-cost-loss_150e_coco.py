_base_ = 'mmdet::detr/detr_r50_8xb2-150e_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# DETR with CIoU in both the loss and the Hungarian matching (weights as mmdet's GIoU).
model = dict(
    bbox_head=dict(loss_iou=dict(_delete_=True, type='detloss_plugin.CIoULoss',
                                 loss_weight=2.0)),
    train_cfg=dict(assigner=dict(match_costs=[
        dict(type='ClassificationCost', weight=1.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='detloss_plugin.IoUCost', iou_mode='ciou', weight=2.0)])))
