# tools/gpu_check.sh's training check: mmdet's stock RetinaNet R50-FPN with detloss's
# GIoULoss (configs/coco/retinanet/retinanet_r50_fpn_giou_1x_coco.py, unchanged model
# apart from the number of classes and no pretrained weights: the check machine may be
# offline), trained for `max_iters` iterations on the synthetic dataset
# (tools/make_dataset.py) and evaluated once at the end. Run it with --amp on a GPU:
#   python tools/train.py configs/gpu_check/retinanet_r50_fpn_giou_synthetic.py --amp
# It checks that the loss trains a stock detector on CUDA under mixed precision (finite
# losses, a sane s/iter, an mAP above chance), not accuracy.
_base_ = '../coco/retinanet/retinanet_r50_fpn_giou_1x_coco.py'

data_root = 'data/synthetic_coco/'
classes = ('rectangle', 'ellipse', 'triangle', 'cross')
palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48)]
metainfo = dict(classes=classes, palette=palette)
img_scale = (320, 320)
max_iters = 300
batch_size = 8

model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=len(classes)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
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
    batch_size=batch_size, num_workers=4, persistent_workers=True,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
# from scratch: warm-up and gradient clipping keep SGD stable in 300 iterations
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1, save_last=True))
log_processor = dict(by_epoch=False)
