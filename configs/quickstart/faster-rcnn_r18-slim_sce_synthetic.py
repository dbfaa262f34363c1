_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Symmetric cross-entropy (Wang et al., ICCV 2019), softmax form, the paper's CIFAR-10
# defaults: alpha 0.1 (CE), beta 1.0 (reverse CE), A = -4.
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.SymmetricCELoss', use_sigmoid=False,
                  alpha=0.1, beta=1.0, log_zero=-4.0, loss_weight=1.0))))
