_base_ = './retinanet_r18-slim_ciou_synthetic.py'
# CIoU loss + DIoU-NMS (Zheng et al., AAAI 2020): a box is suppressed when
# IoU - (rho^2 / c^2)^beta > iou_threshold; beta 0.6 as in their YOLOv3 experiments.
model = dict(test_cfg=dict(nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6)))
