_base_ = './retinanet_r50_fpn_ciou_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Cluster-DIoU-NMS (Zheng et al., TCYB 2021): the boxes greedy DIoU-NMS keeps, computed in
# the paper's matrix form. beta 1.0 (SSD / Faster R-CNN setting; the reference: 0.9).
model = dict(test_cfg=dict(nms=dict(type='cluster_diou_nms', iou_threshold=0.5, beta=1.0)))
