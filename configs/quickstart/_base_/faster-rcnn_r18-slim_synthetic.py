# The quick-start two-stage detector on detloss's synthetic dataset: mmdet's Faster R-CNN
# (R50-FPN 1x) made small enough to train from scratch on 2 CPU cores, for the softmax
# classification losses of the RoI head (the configs next to this file change only
# `roi_head.bbox_head.loss_cls`).
#
# - backbone: ResNet-18 at a quarter of its width (16-32-64-128 channels), no pretrained
#   weights (init_cfg=None), BN trained, as the quick-start RetinaNet
#   (retinanet_r18-slim_synthetic.py);
# - neck: FPN on strides 8/16/32, 64 channels; RPN anchors 16..96 px (scales 2 and 3) for
#   objects of 12..56 px; RoIAlign 7x7 on the same levels; 2 shared fc of 256 channels;
#   4 classes; fewer proposals and sampled RoIs than mmdet's COCO settings (small images,
#   a few objects each);
# - data, schedule and runtime: the quick-start RetinaNet's (128x128 images, 16 a batch,
#   AdamW 4e-3 with warm-up and cosine decay, 1500 iterations, val every 250). mmengine
#   does not merge two bases that both define the data keys, so the values below repeat
#   the RetinaNet base's; keep the two files in step (tests/integration/test_quickstart_softmax_configs.py
#   checks that they agree).
# - measured (CE, 2 busy CPU cores, OMP_NUM_THREADS=1): ~0.75 s per iteration of 16
#   images, so the 1500 iterations take ~20 minutes; shortened to 700 iterations
#   (--cfg-options train_cfg.max_iters=700 param_scheduler.1.end=700
#   param_scheduler.1.T_max=600) it reached val mAP 0.597 / AP50 0.853 / AP75 0.702 in
#   about 9 minutes (docs/classification_losses.md).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)

data_root = 'data/synthetic_coco/'
classes = ('rectangle', 'ellipse', 'triangle', 'cross')
palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48)]
metainfo = dict(classes=classes, palette=palette)
img_scale = (128, 128)
max_iters = 1500
val_interval = 250
batch_size = 16
strides = [8, 16, 32]

model = dict(
    backbone=dict(depth=18, base_channels=16, out_indices=(1, 2, 3), frozen_stages=-1,
                  norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128], out_channels=64, num_outs=3),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[2, 3], strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64, featmap_strides=strides),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300)))

# ------------------------------------------- data (as retinanet_r18-slim_synthetic.py)
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
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(min_size=1),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=1,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# ------------------------------------------------------------------------- schedule
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=val_interval)
# ValLoop that also logs every loss term on the val set (val/loss, val/loss_rpn_cls, ...)
val_cfg = dict(type='detloss_plugin.ValLossLoop')
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=4e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters,
         T_max=max_iters - 100, eta_min=4e-5),
]
auto_scale_lr = dict(base_batch_size=batch_size)

# ------------------------------------------------------------------------ runtime
default_hooks = dict(
    logger=dict(interval=25, log_metric_by_epoch=False),
    # one checkpoint kept, written atomically (docs/training.md)
    checkpoint=dict(type='detloss_plugin.AtomicCheckpointHook', by_epoch=False,
                    interval=val_interval, max_keep_ckpts=1, save_last=True))
custom_hooks = [dict(type='detloss_plugin.TrainingCurvesHook')]
log_processor = dict(window_size=25, by_epoch=False)
randomness = dict(seed=0)
