_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# GHM-C + GHM-R (Li et al., AAAI 2019) with mmdet's RetinaNet settings (GHM-C: 30
# regions, momentum 0.75; GHM-R: mu 0.02, 10 regions, momentum 0.7, weight 10).
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.GHMC', use_sigmoid=True, bins=30,
                  momentum=0.75, loss_weight=1.0),
    loss_bbox=dict(_delete_=True, type='detloss_plugin.GHMR', mu=0.02, bins=10,
                   momentum=0.7, loss_weight=10.0)))
