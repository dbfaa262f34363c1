# The quick-start Faster R-CNN on the tiny-object synthetic dataset
# (python tools/make_dataset.py --tiny --out data/tiny_coco): 192x192 images with 8-30
# objects of 2-32 px each (sqrt(area), AI-TOD-like: ~13 % below 8 px, mean ~12 px).
#
# Changes from faster-rcnn_r18-slim_synthetic.py, all for the object sizes:
# - FPN on strides 4/8/16 (ResNet stages 1-3: 16-32-64 channels), anchors of scale 2
#   (8, 16 and 32 px), RoIAlign on the same strides;
# - more detections per image (max_per_img 100 after the R-CNN, 1000 proposals), and
#   COCO evaluation with maxDets up to 100;
# - the RPN and R-CNN assigners are mmdet's (MaxIoU 0.7 / 0.3 and 0.5 / 0.5): this file
#   is the IoU baseline; the *_nwd*_tiny.py configs next to it switch the RPN to NWD.
_base_ = './faster-rcnn_r18-slim_synthetic.py'

data_root = 'data/tiny_coco/'
img_scale = (192, 192)
strides = [4, 8, 16]

model = dict(
    backbone=dict(out_indices=(0, 1, 2)),
    neck=dict(in_channels=[16, 32, 64], out_channels=64, num_outs=3),
    rpn_head=dict(anchor_generator=dict(scales=[2], strides=strides)),
    roi_head=dict(bbox_roi_extractor=dict(featmap_strides=strides)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=2000, max_per_img=1000)),
    test_cfg=dict(rpn=dict(nms_pre=2000, max_per_img=1000),
                  rcnn=dict(max_per_img=100)))

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
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
