"""What importing detloss needs and what it changes.

- ``import detloss_plugin.functional`` works with torch alone: run in a subprocess
  whose import system refuses mmengine, mmcv and mmdet (a ``sys.meta_path`` finder
  that raises ``ModuleNotFoundError`` for them, as if they were not installed).
- Importing the package with the stack registers the classes and ``diou_nms`` and
  replaces mmengine's *own* local checkpoint loader by the safe one; a loader somebody
  else registered stays, and :func:`disable_safe_checkpoint_loading` undoes it.
"""
import subprocess
import sys
import textwrap

import pytest

from _tools_helpers import REPO

BLOCKER = '''
import sys

class _Blocked:
    """Import finder: mmengine, mmcv and mmdet are not installed."""
    BLOCKED = ('mmengine', 'mmcv', 'mmdet')

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.BLOCKED:
            raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)
        return None

sys.meta_path.insert(0, _Blocked())
'''


def _run(code: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={'PYTHONPATH': REPO, 'OMP_NUM_THREADS': '1',
                               'PATH': '/usr/bin:/bin'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_functional_imports_with_torch_alone():
    proc = _run(BLOCKER + '''
try:
    import mmengine  # the blocker works
except ModuleNotFoundError:
    pass
else:
    raise SystemExit('mmengine was importable')
import torch
import detloss_plugin.functional as dlf
pred = torch.tensor([[0., 0., 2., 2.]], requires_grad=True)
target = torch.tensor([[1., 0., 3., 2.]])
loss = dlf.giou_loss(pred, target)
loss.sum().backward()
# IoU = 2 / 6 and the enclosing box is the union: GIoU loss = 1 - 1/3
assert abs(loss.item() - 2 / 3) < 1e-6, loss
keep = dlf.diou_nms(torch.tensor([[0., 0., 2., 2.], [0., 0., 2., 2.1]]),
                  torch.tensor([0.9, 0.8]), 0.5)
assert keep.tolist() == [0], keep
fl = dlf.sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(2, 3))
import detloss_plugin
assert detloss_plugin.HAS_MMENGINE is False
assert not hasattr(detloss_plugin, 'MODELS')
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mmengine', 'mmcv', 'mmdet'))
assert not loaded, loaded
print('ok', detloss_plugin.__version__)
''')
    assert proc.stdout.startswith('ok ')


def test_import_with_the_stack_registers_and_enables_safe_loading():
    pytest.importorskip('mmdet')
    _run('''
from mmengine.runner import checkpoint as mm
assert mm.CheckpointLoader._schemes[''] is mm.load_from_local
import detloss_plugin
from detloss_plugin.engine import checkpoint as ours
assert detloss_plugin.HAS_MMENGINE is True
assert 'GIoULoss' in detloss_plugin.MODELS.module_dict
import importlib
assert importlib.import_module('mmcv.ops.nms').diou_nms.__module__ == 'detloss_plugin.ops.nms'
assert mm.CheckpointLoader._schemes[''] is ours.load_from_local_safe
http = mm.CheckpointLoader._schemes['http://']
assert http is mm.load_from_http   # the other schemes keep mmengine's loaders
ours.disable_safe_checkpoint_loading()
assert mm.CheckpointLoader._schemes[''] is mm.load_from_local
assert ours.enable_safe_checkpoint_loading()
assert mm.CheckpointLoader._schemes[''] is ours.load_from_local_safe
''')


def test_a_users_own_local_loader_is_left_in_place():
    pytest.importorskip('mmengine')
    proc = _run('''
import warnings
from mmengine.runner import checkpoint as mm

def my_loader(filename, map_location):
    return {'state_dict': {}}

mm.CheckpointLoader.register_scheme(prefixes='', loader=my_loader, force=True)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    import detloss_plugin
assert mm.CheckpointLoader._schemes[''] is my_loader
assert any('leaves it in place' in str(w.message) for w in caught), caught
print('kept')
''')
    assert 'kept' in proc.stdout
