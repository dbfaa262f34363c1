_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Symmetric cross-entropy (Wang et al., ICCV 2019), sigmoid form: alpha 0.1, beta 1.0,
# A = -4.
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.SymmetricCELoss', use_sigmoid=True,
                  alpha=0.1, beta=1.0, log_zero=-4.0, loss_weight=1.0)))
