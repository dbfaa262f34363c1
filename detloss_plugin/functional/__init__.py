"""detloss's functional core: element-wise losses and NMS in pure torch (no mmdet)."""
from .box_geometry import BoxPairGeometry, box_pair_geometry
from .box_geometry import (SIMILARITY_MODES, aligned_similarity, nwd, pairwise_similarity,
                           wasserstein_sq)
from .coordinate_losses import focal_l1_loss, l1_loss, mse_loss, smooth_l1_loss
from .iou_losses import ciou_loss, diou_loss, eiou_loss, focal_eiou_loss, giou_loss, iou_loss
from .nms import batched_diou_nms, diou_nms
from .classification import (labels_to_one_hot, probs_to_logits, seesaw_ce_loss,
                             sigmoid_anchor_loss, sigmoid_cross_entropy, sigmoid_focal_loss,
                             sigmoid_symmetric_ce, softmax_anchor_loss, softmax_cross_entropy,
                             softmax_focal_loss, softmax_symmetric_ce)
from .ghm import authentic_smooth_l1, ghm_edges, ghm_weights, ghmc_loss, ghmr_loss
from .iou_variants import alpha_iou_loss, siou_loss, wiou_loss, wiou_running_mean
from .cluster_nms import cluster_diou_nms, weighted_cluster_diou_nms
from .ranking import ap_loss, dr_loss
from .rank_sort import alrp_loss, rank_sort_loss
from .kl_loss import kl_loss
from .var_voting import var_voting
from .wasserstein import nwd_loss, nwd_nms

__all__ = [
    'BoxPairGeometry', 'box_pair_geometry',
    'iou_loss', 'giou_loss', 'diou_loss', 'ciou_loss', 'eiou_loss', 'focal_eiou_loss',
    'l1_loss', 'mse_loss', 'smooth_l1_loss', 'focal_l1_loss',
    'diou_nms', 'batched_diou_nms',
    'labels_to_one_hot', 'probs_to_logits',
    'sigmoid_cross_entropy', 'softmax_cross_entropy', 'sigmoid_focal_loss',
    'softmax_focal_loss', 'sigmoid_anchor_loss', 'softmax_anchor_loss',
    'sigmoid_symmetric_ce', 'softmax_symmetric_ce', 'seesaw_ce_loss',
    'ghm_edges', 'ghm_weights', 'ghmc_loss', 'ghmr_loss', 'authentic_smooth_l1',
    'siou_loss', 'alpha_iou_loss', 'wiou_loss', 'wiou_running_mean',
    'cluster_diou_nms', 'weighted_cluster_diou_nms',
    'ap_loss', 'dr_loss', 'rank_sort_loss', 'alrp_loss',
    'kl_loss', 'var_voting',
    'SIMILARITY_MODES', 'aligned_similarity', 'pairwise_similarity', 'nwd', 'wasserstein_sq',
    'nwd_loss', 'nwd_nms',
]
