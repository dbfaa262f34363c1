"""RoI heads: integration code (subclasses of mmdet's heads)."""
from .kl_bbox_head import KLBBoxHead, delta_std_to_box_std
from .rank_sort_bbox_head import RankSortBBoxHead

__all__ = ['KLBBoxHead', 'delta_std_to_box_std', 'RankSortBBoxHead']
