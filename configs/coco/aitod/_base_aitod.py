# AI-TOD (Xu et al., ISPRS 2022; COCO-format annotations, 8 classes, 800x800 images,
# objects of mean size 12.8 px) on mmdet's Faster R-CNN R50-FPN 1x. Download AI-TOD and
# put it under data/AI-TOD/ (annotations/aitod_{trainval,test}_v1.json,
# {trainval,test}/images). Up to 3000 proposals / 1500 detections per image, as the
# reference; COCO AP with maxDets 1500 is what the paper reports.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)

data_root = 'data/AI-TOD/'
classes = ('airplane', 'bridge', 'storage-tank', 'ship', 'swimming-pool', 'vehicle',
           'person', 'wind-mill')
metainfo = dict(classes=classes)
model = dict(
    roi_head=dict(bbox_head=dict(num_classes=len(classes))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=3000, max_per_img=3000)),
    test_cfg=dict(rpn=dict(nms_pre=3000, max_per_img=3000),
                  rcnn=dict(max_per_img=1500)))
train_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/aitod_trainval_v1.json',
    data_prefix=dict(img='trainval/images/')))
val_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/aitod_test_v1.json',
    data_prefix=dict(img='test/images/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/aitod_test_v1.json',
                     proposal_nums=(100, 300, 1500))
test_evaluator = val_evaluator
