from importlib.util import find_spec

from .losses import *  # noqa: F401,F403

# the heads subclass mmdet's; the losses and the functional core work without mmdet
if find_spec('mmdet') is not None:
    from .dense_heads import *  # noqa: F401,F403
    from .roi_heads import *  # noqa: F401,F403
    from .task_modules import *  # noqa: F401,F403
