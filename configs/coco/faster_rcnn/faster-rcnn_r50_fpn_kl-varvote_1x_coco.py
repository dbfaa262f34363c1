_base_ = './faster-rcnn_r50_fpn_kl_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# KL loss + Gaussian soft-NMS + variance voting, the reference's test setting
# (soft-NMS sigma 0.5, var voting sigma_t 0.01). Same training as
# faster-rcnn_r50_fpn_kl_1x_coco.py: test a checkpoint of that config with this one.
model = dict(test_cfg=dict(rcnn=dict(
    nms=dict(type='soft_nms', iou_threshold=0.5, method='gaussian', sigma=0.5,
             min_score=0.001),
    var_voting=dict(sigma_t=0.01))))
