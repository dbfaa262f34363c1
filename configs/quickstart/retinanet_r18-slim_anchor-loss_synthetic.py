_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Anchor loss (Ryou et al., ICCV 2019), sigmoid one-vs-all form: gamma 0.5, slack 0.05,
# anchor 'neg'.
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.AnchorLoss', use_sigmoid=True,
                  gamma=0.5, slack=0.05, anchor='neg', loss_weight=1.0)))
