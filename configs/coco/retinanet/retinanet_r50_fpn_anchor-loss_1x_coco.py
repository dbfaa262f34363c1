_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
# Anchor loss (Ryou et al., ICCV 2019) in its one-vs-all sigmoid form, the reference's
# defaults (gamma 0.5, slack 0.05, anchor 'neg'). A background anchor's reference score
# is its background probability 1 - max_k p_k (detloss's adaptation; the paper
# classifies images). No published detection result: an experiment, not a reproduction.
model = dict(bbox_head=dict(
    loss_cls=dict(_delete_=True, type='detloss_plugin.AnchorLoss', use_sigmoid=True,
                  gamma=0.5, slack=0.05, anchor='neg', loss_weight=1.0)))
