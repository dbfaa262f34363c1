_base_ = './_base_aitod.py'
# NWD-NMS alone, in both stages (threshold on NWD).
model = dict(
    train_cfg=dict(rpn_proposal=dict(nms=dict(type='nwd_nms', iou_threshold=0.85))),
    test_cfg=dict(rpn=dict(nms=dict(type='nwd_nms', iou_threshold=0.85)),
                  rcnn=dict(nms=dict(type='nwd_nms', iou_threshold=0.85))))
