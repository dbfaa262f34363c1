"""detloss's registries: children of mmengine's root registries, scope ``detloss_plugin``.

A stock mmdet config (``default_scope = 'mmdet'``) reaches every class as
``type='detloss_plugin.<Name>'``. mmengine resolves the prefix by importing this module
(``import_module('detloss_plugin.registry')``) and then the ``locations`` below, so the
prefixed names work even before ``custom_imports`` has imported the package. Nothing
is registered into mmdet's own registry: mmdet's ``IoULoss``, ``FocalLoss``, ... stay
untouched.

A mistyped name (``type='detloss_plugin.GIoULos'``) raises a ``KeyError`` that names the
closest registered class (``detloss_plugin.GIoULoss``) instead of mmengine's bare
"not in the registry".
"""
import difflib

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS

__all__ = ['MODELS', 'HOOKS', 'LOOPS', 'TASK_UTILS']


class _SuggestingRegistry(Registry):
    """mmengine's ``Registry`` whose ``get`` suggests the closest registered name
    when a name is not found anywhere (it returns None otherwise, as mmengine's)."""

    def get(self, key):
        obj = super().get(key)
        if obj is None and isinstance(key, str):
            scope, name = self.split_scope_key(key)
            if scope in (None, self.scope):
                close = difflib.get_close_matches(name, list(self._module_dict), n=1)
                if close:
                    raise KeyError(
                        f'{name!r} is not registered in the {self.scope}::{self.name} '
                        f'registry; did you mean {self.scope}.{close[0]}? (registered: '
                        f'{", ".join(sorted(self._module_dict))})')
        return obj

    def __contains__(self, key) -> bool:
        try:
            return super().get(key) is not None
        except KeyError:
            return False


MODELS = _SuggestingRegistry('model', parent=MMENGINE_MODELS, scope='detloss_plugin',
                             locations=['detloss_plugin.models'])
HOOKS = _SuggestingRegistry('hook', parent=MMENGINE_HOOKS, scope='detloss_plugin',
                            locations=['detloss_plugin.engine'])
# matching costs, IoU calculators and assigners (built by mmdet's heads and assigners
# from their ``assigner`` / ``iou_calculator`` / ``match_costs`` configs)
TASK_UTILS = _SuggestingRegistry('task util', parent=MMENGINE_TASK_UTILS,
                                 scope='detloss_plugin',
                                 locations=['detloss_plugin.models.task_modules'])
LOOPS = _SuggestingRegistry('loop', parent=MMENGINE_LOOPS, scope='detloss_plugin',
                            locations=['detloss_plugin.engine'])
