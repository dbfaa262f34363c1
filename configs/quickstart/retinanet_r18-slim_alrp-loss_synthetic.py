_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# aLRP loss (Oksuz et al., NeurIPS 2020) on the quick-start RetinaNet: ALRPRetinaHead
# ranks every (anchor, class) entry of the 16-image batch (delta 1.0) and weights the
# positives' GIoU losses by the ranking; the self-balance weight starts at 50 and is
# updated once per pass over the training set (ALRPSelfBalanceHook, period from the
# dataloader). Decoded-box regression (GIoU, as the reference) instead of the base's L1
# on deltas; the other settings are the base's (prior 0.01, IoU 0.5 / 0.4). Inference
# keeps every score (score_thr 0.0, 100 boxes per image after NMS): a ranking loss
# orders the scores but does not calibrate them.
model = dict(
    bbox_head=dict(
        type='detloss_plugin.ALRPRetinaHead',
        loss_cls=dict(_delete_=True, type='detloss_plugin.ALRPLoss', delta=1.0),
        reg_decoded_bbox=True,
        loss_bbox=dict(_delete_=True, type='detloss_plugin.GIoULoss', loss_weight=1.0),
        sb_init=50.0),
    test_cfg=dict(score_thr=0.0))
custom_hooks = [dict(type='detloss_plugin.TrainingCurvesHook'),
                dict(type='detloss_plugin.ALRPSelfBalanceHook')]
