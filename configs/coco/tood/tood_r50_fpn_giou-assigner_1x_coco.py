_base_ = 'mmdet::tood/tood_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# TOOD's task-aligned assignment t = s^alpha * u^beta (beta = 6) on GIoU mapped into
# [0, 1] by (1 + GIoU) / 2: a raw GIoU can be negative, and a negative u^6 would rank a
# distant box high.
calc = dict(type='detloss_plugin.BboxOverlaps2D', mode='giou', normalize=True)
model = dict(train_cfg=dict(initial_assigner=dict(iou_calculator=calc),
                            assigner=dict(iou_calculator=calc)))
