_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Seesaw loss (Wang et al., CVPR 2021), p 0.8, q 2.0, on COCO's 80 classes. The RoI
# head asks the loss for its classifier width (80 + 2: classes and an objectness pair)
# and its inference scores. The paper's setting is LVIS v1 (1203 classes, Mask R-CNN,
# mmdet's zoo: 25.6 box AP at 2x); COCO is balanced enough that seesaw is not expected
# to beat cross-entropy here.
model = dict(roi_head=dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.SeesawLoss', use_sigmoid=False,
                  p=0.8, q=2.0, num_classes=80, eps=1e-2, loss_weight=1.0))))
