"""RoI heads: integration code (imports mmdet).

Not imported by ``import detloss_plugin`` (mmdet costs seconds to import): detloss's
``MODELS`` registry lists this package among its ``locations``, so mmengine imports it the
first time a name is looked up in that registry (``type='detloss_plugin.KLBBoxHead'``).
Without mmdet installed it registers nothing.
"""
import importlib.util

__all__ = []

if importlib.util.find_spec('mmdet') is not None:
    from .kl_bbox_head import KLBBoxHead, delta_std_to_box_std  # noqa: F401

    __all__ = ['KLBBoxHead', 'delta_std_to_box_std']
