_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# GHM-C + GHM-R (Li et al., AAAI 2019), the settings of mmdet's ghm config (zoo: 37.0 AP
# with mmdet's classes): GHM-C with 30 regions and momentum 0.75, GHM-R with mu 0.02, 10
# regions, momentum 0.7 and weight 10, gradient clipping at 35. detloss's classes are
# vectorised and sum the region counts over GPUs (sync=True; mmdet counts per GPU).
# Both moving averages are buffers: saved in checkpoints, restored by --resume.
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.GHMC', use_sigmoid=True, bins=30,
                  momentum=0.75, loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='detloss_plugin.GHMR', mu=0.02, bins=10,
                   momentum=0.7, loss_weight=10.0)))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
