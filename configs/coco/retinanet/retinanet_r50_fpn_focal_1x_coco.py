_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Focal loss (Lin et al., ICCV 2017), detloss's implementation: the RetinaNet setting
# (sigmoid, gamma 2, alpha 0.25, normalised by the number of positives). Same values as
# mmdet's FocalLoss (mmdet's zoo: 36.5 AP), one code path on CPU and GPU.
# _delete_ drops the keys of the base's mmdet FocalLoss dict.
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.FocalLoss', use_sigmoid=True,
                  gamma=2.0, alpha=0.25, loss_weight=1.0)))
