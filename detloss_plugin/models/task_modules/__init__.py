"""Box geometry for label assignment and matching: IoU calculators, matching costs and
the ranking assigner, registered in detloss's ``TASK_UTILS`` (scope ``detloss_plugin``;
a stock mmdet config reaches them as ``type='detloss_plugin.<Name>'``)."""
from .iou_calculators import BboxOverlaps2D
from .match_costs import IoUCost
from .ranking_assigner import RankingAssigner

__all__ = ['BboxOverlaps2D', 'IoUCost', 'RankingAssigner']
