_base_ = './retinanet_r50_fpn_ap-loss_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# aLRP loss (Oksuz et al., NeurIPS 2020, https://arxiv.org/abs/2009.13592) with the
# settings of the reference code (kemaloksuz/aLRPLoss,
# configs/alrp_loss/alrp_loss_retinanet_r50_fpn_100e_coco500.py), which shares the
# AP-loss config's data and schedule (inherited):
# - ALRPRetinaHead: one aLRP loss (delta 1.0) over every anchor of the images of one GPU
#   (the reference: 8 images per GPU x 4 GPUs; here mmdet's 2 per GPU x 8 GPUs: raise
#   train_dataloader.batch_size to rank over more);
# - localisation: GIoU of the decoded positives, weighted by the ranking; the
#   self-balance weight starts at 50 and is updated once per epoch by
#   ALRPSelfBalanceHook (the epoch length comes from the dataloader);
# - 2 anchor scales per octave x 3 ratios, stds (0.1, 0.1, 0.2, 0.2), IoU 0.5 / 0.4;
# - 512 x 512 training with SSD augmentation, testing at 833 x 500, score threshold 0.05
#   (the reference's RetinaNet default);
# - SGD lr 0.008 for 32 images (scaled to 0.004 for mmdet's 16), 100 epochs, steps at
#   60 and 80.
model = dict(
    bbox_head=dict(
        type='detloss_plugin.ALRPRetinaHead',
        loss_cls=dict(_delete_=True, type='detloss_plugin.ALRPLoss', delta=1.0),
        loss_bbox=dict(_delete_=True, type='detloss_plugin.GIoULoss', loss_weight=1.0),
        sb_init=50.0),
    test_cfg=dict(score_thr=0.05))
optim_wrapper = dict(optimizer=dict(lr=0.004))
custom_hooks = [dict(type='detloss_plugin.ALRPSelfBalanceHook')]
