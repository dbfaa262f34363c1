_base_ = './faster-rcnn_r50_fpn_ciou_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Cluster-DIoU-NMS (Zheng et al., TCYB 2021) in the RoI head's test_cfg: the boxes greedy
# DIoU-NMS keeps, computed in matrix form; beta 1.0 (the authors' Faster R-CNN setting).
model = dict(test_cfg=dict(rcnn=dict(nms=dict(type='cluster_diou_nms', iou_threshold=0.5,
                                              beta=1.0))))
