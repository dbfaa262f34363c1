"""detloss: box-regression and classification losses of the detection literature, and
DIoU-NMS, as an mmdetection 3.x plugin.

``custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)`` in a
config registers every class under the scope ``detloss_plugin`` (use
``type='detloss_plugin.<Name>'``) and adds ``diou_nms`` to the NMS types mmcv's
``batched_nms`` understands (``nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6)``).
"""
from . import functional  # noqa: F401  (pure torch, importable without mmdet)
from .registry import HOOKS, MODELS  # noqa: F401
from . import models  # noqa: F401,E402  (registers the losses)
from .ops import register_diou_nms  # noqa: E402

__version__ = '0.1.0'

register_diou_nms()
