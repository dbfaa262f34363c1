_base_ = './_base_/faster-rcnn_r18-slim_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Rank & Sort loss (Oksuz et al., ICCV 2021) on the quick-start Faster R-CNN, as the
# reference's RS-R-CNN (kemaloksuz/RankSortLoss,
# configs/ranksort_loss/ranksort_faster_rcnn_r50_fpn_1x_coco.py):
# - RPN: RankSortRPNHead, objectness ranked over every anchor of the batch (all anchors
#   sampled), GIoU on decoded boxes weighted and rescaled to ranking + sorting, every
#   RPN loss times 0.2;
# - RoI head: RankSortBBoxHead, sigmoid scores (no background output), every proposal
#   kept (sampler num very large), decoded-box GIoU weighted and rescaled the same way;
# - stds (0.1, 0.1, 0.2, 0.2) for both coders. Inference keeps every score (score_thr
#   0.0; the reference: 0.4 on COCO): a ranking loss orders the scores but does not
#   calibrate them, and a short schedule leaves them low.
model = dict(
    rpn_head=dict(
        type='detloss_plugin.RankSortRPNHead',
        bbox_coder=dict(target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(_delete_=True, type='detloss_plugin.RankSortLoss', delta=0.5),
        loss_bbox=dict(_delete_=True, type='detloss_plugin.GIoULoss', loss_weight=1.0),
        head_weight=0.2),
    roi_head=dict(bbox_head=dict(
        type='detloss_plugin.RankSortBBoxHead',
        reg_decoded_bbox=True,
        bbox_coder=dict(target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(_delete_=True, type='detloss_plugin.RankSortLoss', delta=0.5),
        loss_bbox=dict(_delete_=True, type='detloss_plugin.GIoULoss', loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(sampler=dict(_delete_=True, type='PseudoSampler')),
        rcnn=dict(sampler=dict(num=100000))),
    test_cfg=dict(rcnn=dict(score_thr=0.0)))
