_base_ = './faster-rcnn_r50_fpn_nwd-rpn_1x_aitod.py'
# NWD-RKA (Xu et al., ISPRS 2022): ranking assignment in the RPN, the top 2 anchors by
# NWD of every ground truth positive, negatives below NWD 0.3.
model = dict(train_cfg=dict(rpn=dict(assigner=dict(
    _delete_=True, type='detloss_plugin.RankingAssigner', topk=2, neg_iou_thr=0.3,
    gpu_assign_thr=512,
    iou_calculator=dict(type='detloss_plugin.BboxOverlaps2D', mode='nwd',
                        constant=12.8)))))
