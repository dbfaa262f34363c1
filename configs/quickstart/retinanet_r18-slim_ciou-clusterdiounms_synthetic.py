_base_ = './retinanet_r18-slim_ciou_synthetic.py'
# CIoU loss + Cluster-DIoU-NMS (Zheng et al., TCYB 2021): the boxes greedy DIoU-NMS keeps,
# computed in matrix form; beta 0.6 as the DIoU-NMS quick-start config.
model = dict(test_cfg=dict(nms=dict(type='cluster_diou_nms', iou_threshold=0.5, beta=0.6)))
