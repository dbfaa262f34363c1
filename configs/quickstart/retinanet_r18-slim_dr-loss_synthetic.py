_base_ = './_base_/retinanet_r18-slim_synthetic.py'
# DR loss (Qian et al., CVPR 2020) on the quick-start RetinaNet: RankingRetinaHead calls
# it once for the 16-image batch (lambda+ 1, lambda- 0.1/ln 3.5, L 6, tau 4, margin 0.5)
# with the reference's RetinaNet settings (idstcv/DR_loss configs/dr_retina): prior
# probability 0.5 for the classification bias, IoU 0.5 / 0.5 (no ignored anchors),
# inference score threshold 0.2. Box regression stays the base's L1 on deltas, as in the
# focal config, so that only the classification side differs.
model = dict(
    bbox_head=dict(
        type='detloss_plugin.RankingRetinaHead',
        # neg_lambda = 0.1 / ln 3.5
        loss_cls=dict(_delete_=True, type='detloss_plugin.DRLoss', pos_lambda=1.0,
                      neg_lambda=0.1 / 1.252762968495368, L=6.0, tau=4.0, margin=0.5,
                      loss_weight=1.0),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.01,
                      override=dict(type='Normal', name='retina_cls', std=0.01,
                                    bias_prob=0.5))),
    train_cfg=dict(assigner=dict(neg_iou_thr=0.5)),
    test_cfg=dict(score_thr=0.2))
