_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Symmetric cross-entropy (Wang et al., ICCV 2019), one-vs-all sigmoid form, the paper's
# CIFAR-10 defaults (alpha 0.1, beta 1.0, A = -4). Like plain BCE it has no focal
# down-weighting of the ~10^5 easy negatives per image, which dominate the sum (the
# RCE gradient of a negative is -A p (1 - p)). No published detection result: an
# experiment, not a reproduction.
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.SymmetricCELoss', use_sigmoid=True,
                  alpha=0.1, beta=1.0, log_zero=-4.0, loss_weight=1.0)))
