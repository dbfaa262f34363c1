_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# mmdet's own regression loss, DIoU-NMS at test time.
# DIoU-NMS (Zheng et al., AAAI 2020): suppress a box when IoU - (rho^2 / c^2)^beta exceeds
# iou_threshold. beta 1.0 as the authors use with SSD and Faster R-CNN (0.6 with YOLOv3).
model = dict(test_cfg=dict(rcnn=dict(nms=dict(type='diou_nms', iou_threshold=0.5, beta=1.0))))
