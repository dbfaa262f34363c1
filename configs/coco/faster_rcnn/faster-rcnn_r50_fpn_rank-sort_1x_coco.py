_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Rank & Sort loss (Oksuz et al., ICCV 2021, https://arxiv.org/abs/2107.11669): RS-R-CNN
# with the settings of the reference code (kemaloksuz/RankSortLoss,
# configs/ranksort_loss/ranksort_faster_rcnn_r50_fpn_1x_coco.py):
# - RankSortRPNHead (every anchor sampled, RPN losses times 0.2) and RankSortBBoxHead
#   (sigmoid scores, every proposal kept), GIoU on decoded boxes weighted by the best
#   class probability and rescaled to ranking + sorting, stds (0.1, 0.1, 0.2, 0.2);
# - test score threshold 0.4; SGD lr 0.012 for 16 images (the reference: 4 images per
#   GPU x 4 GPUs), 1x schedule. The reference reports 39.6 box AP (R50, 1x).
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
    test_cfg=dict(rcnn=dict(score_thr=0.4)))
optim_wrapper = dict(optimizer=dict(lr=0.012))
