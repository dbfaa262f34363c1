_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# AP-loss (Chen et al., CVPR 2019, https://arxiv.org/abs/1904.06373) with the settings of
# the reference code (cccorn/AP-loss, lib/config.py, lib/model/*.py, train.py):
# - RankingRetinaHead: one AP-loss (delta 1.0, error-driven update) over every anchor of
#   the images of one GPU (the reference: 8 images per GPU, 2 GPUs; here mmdet's 2 per
#   GPU x 8 GPUs, so each ranking sees 2 images: raise train_dataloader.batch_size to
#   rank over more);
# - prior 0.01; IoU 0.5 / 0.4 with every ground truth's best anchors positive (mmdet's
#   MaxIoUAssigner with min_pos_iou=0, as the base);
# - 2 anchor scales per octave (4 and 4 * 2^0.5 times the stride) x 3 ratios;
# - box regression: Smooth L1 (beta 1.0) on deltas with stds (0.1, 0.1, 0.2, 0.2), the
#   reference's gradient divided by 4 x positives, hence loss_weight 0.25 with mmdet's
#   avg_factor (the number of positives);
# - 512 x 512 training images with SSD augmentation (photometric distortion, expand,
#   min-IoU random crop, flip); testing at shorter side 500, longer at most 833, 1000
#   boxes per level before NMS 0.5, score threshold 0.01, 100 per image;
# - SGD lr 0.001 for 16 images, momentum 0.9, weight decay 1e-4, linear warm-up over 500
#   iterations from 1/3; the paper's COCO schedule is 100 epochs with steps at 60 and 80
#   (not 1x: the file name keeps the "1x" slot of the config family).
model = dict(
    bbox_head=dict(
        type='detloss_plugin.RankingRetinaHead',
        anchor_generator=dict(octave_base_scale=4, scales_per_octave=2),
        bbox_coder=dict(target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(_delete_=True, type='detloss_plugin.APLoss', delta=1.0, loss_weight=1.0),
        loss_bbox=dict(_delete_=True, type='detloss_plugin.SmoothL1Loss', beta=1.0,
                       loss_weight=0.25)),
    test_cfg=dict(nms_pre=1000, score_thr=0.01, nms=dict(type='nms', iou_threshold=0.5),
                  max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Expand', mean=[123.675, 116.28, 103.53], to_rgb=True, ratio_range=(1, 4)),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(512, 512), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(833, 500), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 100
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[60, 80],
         gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0001))
auto_scale_lr = dict(base_batch_size=16)
