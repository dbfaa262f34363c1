_base_ = './faster-rcnn_r18-slim_kl_synthetic.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# KL loss + variance voting at test time (the paper's Algorithm 1, sigma_t = 0.01 as
# the reference): after NMS each kept box becomes the average of the candidates of its
# class that overlap it, weighted by exp(-(1 - IoU)^2 / sigma_t) / sigma^2 per
# coordinate. Training is the same as faster-rcnn_r18-slim_kl_synthetic.py.
# The reference runs Gaussian soft-NMS before voting; for that add
#   nms=dict(type='soft_nms', iou_threshold=0.5, method='gaussian', sigma=0.5,
#            min_score=0.001)
# to test_cfg.rcnn.
model = dict(test_cfg=dict(rcnn=dict(var_voting=dict(sigma_t=0.01))))
