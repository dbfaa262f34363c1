"""detloss's registries: children of mmengine's root registries, scope ``detloss_plugin``.

A stock mmdet config (``default_scope = 'mmdet'``) reaches every class as
``type='detloss_plugin.<Name>'``. mmengine resolves the prefix by importing this module
(``import_module('detloss_plugin.registry')``) and then the ``locations`` below, so the
prefixed names work even before ``custom_imports`` has imported the package. Nothing
is registered into mmdet's own registry: mmdet's ``IoULoss``, ``FocalLoss``, ... stay
untouched.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

__all__ = ['MODELS', 'HOOKS']

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='detloss_plugin',
                  locations=['detloss_plugin.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='detloss_plugin',
                 locations=['detloss_plugin.engine'])
