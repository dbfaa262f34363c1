# The quick-start detector on detloss's synthetic dataset: a RetinaNet small enough to
# train from scratch on 2 CPU cores in a few minutes.
#
# - backbone: ResNet-18 at a quarter of its width (16-32-64-128 channels), no pretrained
#   weights (init_cfg=None), BN trained (norm_eval=False, frozen_stages=-1);
# - neck: FPN on strides 8/16/32, 64 channels; head: 2 stacked convs of 64 channels
#   with GroupNorm;
# - anchors 16..90 px (octave_base_scale=2, 2 scales per octave) for objects of 12..56 px;
# - data: 128x128 images of 4 shape classes (python tools/make_dataset.py, or
#   scripts/demo.sh, writes data/synthetic_coco);
# - schedule: 1500 iterations, AdamW with warm-up and cosine decay, val every
#   `val_interval` iterations so that the mAP curve has points;
# - measured (GIoU, 2 busy CPU cores, OMP_NUM_THREADS=1): ~0.2 s per iteration of 16
#   images, val mAP 0.508 / AP50 0.792 after 1500 iterations, about 5.5 minutes
#   (docs/training.md).
#
# The configs next to this file only change `loss_bbox` (and `reg_decoded_bbox`) or
# the NMS. Switching to COCO is a change of data_root / ann_file / data_prefix /
# metainfo / num_classes (configs/coco/ has the full-size detectors).
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
default_scope = 'mmdet'

data_root = 'data/synthetic_coco/'
classes = ('rectangle', 'ellipse', 'triangle', 'cross')
palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48)]
metainfo = dict(classes=classes, palette=palette)
img_scale = (128, 128)
max_iters = 1500
val_interval = 250
batch_size = 16

model = dict(
    type='RetinaNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=16,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(
        type='FPN',
        in_channels=[32, 64, 128],
        out_channels=64,
        start_level=0,
        num_outs=3),
    bbox_head=dict(
        type='RetinaHead',
        num_classes=len(classes),
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        # GroupNorm in the head: from scratch, it and lr 4e-3 (instead of no norm and
        # 2e-3) gave val mAP 0.29 instead of 0.14 after 600 iterations in our runs.
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=2,
            scales_per_octave=2,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        reg_decoded_bbox=False,
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))

# ------------------------------------------------------------------------- data
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False)
test_evaluator = val_evaluator

# ----------------------------------------------------------------------- schedule
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
# ValLoop that also logs every loss term on the val set (val/loss, val/loss_cls, ...)
val_cfg = dict(type='detloss_plugin.ValLossLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         T_max=max_iters - 100, eta_min=4e-5),
]
# lr above is for 1 process x 16 images; --auto-scale-lr scales it linearly.
auto_scale_lr = dict(enable=False, base_batch_size=batch_size)

# ------------------------------------------------------------------------ runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # log_metric_by_epoch=False: val metrics are logged at their iteration, not epoch 0
    logger=dict(type='LoggerHook', interval=25, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # one checkpoint kept, written atomically (a kill at any moment leaves a run that
    # --resume continues; docs/training.md)
    checkpoint=dict(type='detloss_plugin.AtomicCheckpointHook', by_epoch=False,
                    interval=val_interval, max_keep_ckpts=1, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
# redraws <work_dir>/curves.png (loss and val mAP curves) after every validation
custom_hooks = [dict(type='detloss_plugin.TrainingCurvesHook')]
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))  # tools/train.py switches to gloo without a GPU
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=25, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
