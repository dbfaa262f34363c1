"""detloss: box-regression and classification losses of the detection literature, and
DIoU-NMS, as an mmdetection 3.x plugin.

``custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)`` in a
config registers every class under the scope ``detloss_plugin`` (use
``type='detloss_plugin.<Name>'``) and adds ``diou_nms`` to the NMS types mmcv's
``batched_nms`` understands (``nms=dict(type='diou_nms', iou_threshold=0.5, beta=0.6)``)
and ``cluster_diou_nms`` (Cluster-DIoU-NMS, the same kept boxes in matrix form) and
``nwd_nms`` (greedy NMS on the normalized Wasserstein distance, for tiny objects). It also makes mmengine's
``--resume`` / ``load_from`` work under torch >= 2.6 with safe loading kept on (see
:mod:`detloss_plugin.engine.checkpoint`; the README's "What importing detloss changes"
says exactly what that changes).

With torch alone (no mmengine installed), ``import detloss_plugin.functional`` gives
the pure-torch core and nothing is registered; with mmengine, mmcv and mmdet
installed, importing the package does the registration above.
"""
__version__ = '0.1.0'   # the one place the version is written (pyproject.toml reads it)

from . import functional  # noqa: F401,E402  (pure torch, importable without mmengine)

try:
    import mmengine  # noqa: F401
except ModuleNotFoundError as _err:  # a torch-only environment: the functional core only
    if _err.name != 'mmengine':
        raise
    HAS_MMENGINE = False
else:
    HAS_MMENGINE = True
    from .registry import HOOKS, MODELS, TASK_UTILS  # noqa: F401
    from . import models  # noqa: F401  (registers the losses)
    from .ops import register_cluster_diou_nms, register_diou_nms, register_nwd_nms
    from .engine import enable_safe_checkpoint_loading

    register_diou_nms()
    register_cluster_diou_nms()
    register_nwd_nms()
    # mmengine 0.10.7 + torch >= 2.6: resume / load_from through torch's restricted
    # unpickler, with an allow-list of exactly what mmengine's checkpoints hold
    # (detloss_plugin.engine.checkpoint).
    enable_safe_checkpoint_loading()
