from .ranking_retina_head import RankingRetinaHead
from .alrp_retina_head import ALRPRetinaHead, ALRPSelfBalanceHook
from .rank_sort_atss_head import RankSortATSSHead

__all__ = ['RankingRetinaHead', 'ALRPRetinaHead', 'ALRPSelfBalanceHook', 'RankSortATSSHead']
