_base_ = './faster-rcnn_r18-slim_nwd_tiny.py'
# NWD-RKA (Xu et al., ISPRS 2022): the RPN's anchors are assigned by ranking, the top 2
# anchors by NWD of every ground truth are positives, anchors whose best NWD is below
# 0.3 negatives, so every tiny object gets positives.
model = dict(train_cfg=dict(rpn=dict(assigner=dict(
    _delete_=True, type='detloss_plugin.RankingAssigner', topk=2, neg_iou_thr=0.3,
    iou_calculator=dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd',
                        constant=12.8)))))
