_base_ = 'mmdet::atss/atss_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Rank & Sort loss (Oksuz et al., ICCV 2021, https://arxiv.org/abs/2107.11669) on ATSS,
# with the settings of the reference code (kemaloksuz/RankSortLoss,
# configs/ranksort_loss/ranksort_atss_r50_fpn_1x_coco.py):
# - RankSortATSSHead: mmdet's ATSS without the centerness branch; one Rank & Sort loss
#   (delta 0.5) over every anchor of the images of one GPU; IoU targets from the decoded
#   predictions; GIoU box loss weighted by each positive's best class probability and
#   rescaled to ranking + sorting (its loss_weight has no effect);
# - anchors: 3 scales per octave (octave base scale 4), ratio 1;
# - ATSS assigner top 9, NMS 0.6, score threshold 0.05 (mmdet's already);
# - SGD lr 0.008 for 16 images (the reference: 4 images per GPU x 4 GPUs), 1x schedule.
# The reference reports 39.9 box AP (R50, 1x) against 39.3 for ATSS with focal loss.
model = dict(
    bbox_head=dict(
        type='detloss_plugin.RankSortATSSHead',
        anchor_generator=dict(octave_base_scale=4, scales_per_octave=3),
        loss_cls=dict(_delete_=True, type='detloss_plugin.RankSortLoss', delta=0.5),
        loss_bbox=dict(_delete_=True, type='detloss_plugin.GIoULoss', loss_weight=1.0)))
optim_wrapper = dict(optimizer=dict(lr=0.008))
