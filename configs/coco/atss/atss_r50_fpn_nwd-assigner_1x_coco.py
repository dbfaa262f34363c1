_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# ATSS with NWD in place of the IoU in its candidate statistics (the reference's
# atss_r50_aitod_nwd.py). For tiny objects set the dataset as configs/coco/aitod/_base_aitod.py.
model = dict(train_cfg=dict(assigner=dict(iou_calculator=dict(
    type='detloss_plugin.BboxOverlaps2D', mode='nwd', constant=12.8))))
