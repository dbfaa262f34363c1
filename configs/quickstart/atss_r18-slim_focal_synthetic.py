_base_ = './atss_r18-slim_rank-sort_synthetic.py'
# The baseline of atss_r18-slim_rank-sort_synthetic.py: mmdet's ATSS head on the same
# detector, with its own losses (sigmoid focal loss, GIoU loss weight 2.0, centerness
# cross-entropy), as mmdet's atss_r50_fpn_1x_coco.py; the same inference settings
# (score_thr 0.0), so that both are evaluated alike.
model = dict(
    bbox_head=dict(
        type='ATSSHead',
        loss_cls=dict(_delete_=True, type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)))
