_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# DR loss (Qian et al., CVPR 2020, https://arxiv.org/abs/1907.10156) with the settings of
# the reference (idstcv/DR_loss, configs/dr_retina/dr_R-50-FPN_1x.yaml on
# maskrcnn-benchmark; reference: 37.4 AP on minival):
# - RankingRetinaHead: one DR loss (lambda+ 1, lambda- 0.1 / ln 3.5, L 6, tau 4, margin
#   0.5) over every anchor of the images of one GPU, unnormalised (the reference's
#   scalar);
# - prior probability 0.5 for the classification bias; IoU 0.5 / 0.5 (no ignored
#   anchors); inference score threshold 0.2;
# - box regression: maskrcnn-benchmark's RetinaNet Smooth L1 (beta 0.11) on deltas with
#   weights (10, 10, 5, 5) = stds (0.1, 0.1, 0.2, 0.2), divided by 4 x positives, hence
#   loss_weight 0.25 with mmdet's avg_factor (the number of positives);
# - schedule: 1x (90k iterations of 16 images, steps at 60k / 80k, lr 0.01), which is
#   mmdet's 12 epochs with steps at 8 and 11.
model = dict(
    bbox_head=dict(
        type='detloss_plugin.RankingRetinaHead',
        bbox_coder=dict(target_stds=[0.1, 0.1, 0.2, 0.2]),
        # neg_lambda = 0.1 / ln 3.5
        loss_cls=dict(_delete_=True, type='detloss_plugin.DRLoss', pos_lambda=1.0,
                      neg_lambda=0.1 / 1.252762968495368, L=6.0, tau=4.0, margin=0.5,
                      loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='detloss_plugin.SmoothL1Loss', beta=0.11,
                       loss_weight=0.25),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.01,
                      override=dict(type='Normal', name='retina_cls', std=0.01,
                                    bias_prob=0.5))),
    train_cfg=dict(assigner=dict(neg_iou_thr=0.5)),
    test_cfg=dict(score_thr=0.2))
