_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# detloss's FocalLoss in place of mmdet's (sigmoid, gamma 2, alpha 0.25): same values.
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.FocalLoss', use_sigmoid=True,
                  gamma=2.0, alpha=0.25, loss_weight=1.0)))
