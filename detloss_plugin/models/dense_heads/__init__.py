from .ranking_retina_head import RankingRetinaHead
from .alrp_retina_head import ALRPRetinaHead, ALRPSelfBalanceHook
from .rank_sort_heads import RankSortATSSHead, RankSortRPNHead

__all__ = ['RankingRetinaHead', 'ALRPRetinaHead', 'ALRPSelfBalanceHook', 'RankSortATSSHead',
           'RankSortRPNHead']
