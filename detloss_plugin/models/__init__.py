import importlib.util

from .losses import *  # noqa: F401,F403

if importlib.util.find_spec('mmdet') is not None:  # heads are integration code (mmdet)
    from .roi_heads import *  # noqa: F401,F403
