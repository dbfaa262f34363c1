_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# Rank & Sort loss (Oksuz et al., ICCV 2021) on an ATSS version of the quick-start
# detector: the base's backbone, neck, data and schedule; RankSortATSSHead (mmdet's
# ATSS head without centerness: ATSS assigner top 9, ratio-1 anchors, 3 scales per
# octave as the reference) with one Rank & Sort loss (delta 0.5) over every
# (anchor, class) entry of the 16-image batch, IoU targets from the decoded
# predictions, and the GIoU box loss weighted by each positive's best class
# probability and rescaled to ranking + sorting. Compare with
# atss_r18-slim_focal_synthetic.py (the same detector with focal + GIoU + centerness).
# Inference keeps every score (score_thr 0.0, 100 boxes per image after NMS 0.6): the
# ranking loss orders the scores but does not calibrate them, and after the quick-start
# schedule the best sigmoid scores are about 0.06 (measured at iteration 1000), below
# the 0.05 of the COCO config for most objects.
model = dict(
    type='ATSS',
    bbox_head=dict(
        _delete_=True,
        type='detloss_plugin.RankSortATSSHead',
        num_classes=4,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                              scales_per_octave=3, strides=[8, 16, 32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        reg_decoded_bbox=True,
        loss_cls=dict(type='detloss_plugin.RankSortLoss', delta=0.5),
        loss_bbox=dict(type='detloss_plugin.GIoULoss', loss_weight=1.0)),
    train_cfg=dict(_delete_=True, assigner=dict(type='ATSSAssigner', topk=9),
                   allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.6)))
