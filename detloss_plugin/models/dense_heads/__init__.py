from .ranking_retina_head import RankingRetinaHead

__all__ = ['RankingRetinaHead']
