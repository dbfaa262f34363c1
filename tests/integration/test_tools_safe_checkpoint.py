"""Safe loading of mmengine checkpoints under torch >= 2.6 (detloss_plugin.engine).

mmengine 0.10.7's checkpoints hold HistoryBuffer objects and numpy data; torch's
restricted unpickler refuses them unless they are allow-listed. The fix must load them
and still refuse anything else."""
import io
import os
import os.path as osp
import pickle
import pickletools
import zipfile

import numpy as np
import pytest
import torch

from detloss_plugin.engine import (enable_safe_checkpoint_loading, load_from_local_safe,
                                   mmengine_safe_globals)


def _mmengine_like_checkpoint(path):
    """What mmengine's Runner.save_checkpoint writes, without building a runner."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('detloss_test_safe_ckpt')
    for v in (1.5, 1.25, 1.0):
        hub.update_scalar('train/loss', v)
    hub.update_info('iter', np.int64(7))
    hub.update_info('some_array', np.arange(4, dtype=np.float32))
    ckpt = dict(
        meta=dict(iter=7, seed=np.int64(0), time=np.float64(3.5), cfg='x = 1',
                  dataset_meta=dict(classes=('a', 'b'), palette=[(1, 2, 3)]),
                  dtypes=[np.dtype('float16'), np.dtype('int32'), np.dtype('bool')],
                  objects=np.array([1, 'x', None], dtype=object)),
        state_dict={'w': torch.arange(3.0)},
        message_hub=hub.state_dict())
    torch.save(ckpt, path)


def test_plain_torch_refuses_then_the_fix_loads(tmp_path):
    path = str(tmp_path / 'ck.pth')
    _mmengine_like_checkpoint(path)
    if not hasattr(torch.serialization, 'add_safe_globals'):
        pytest.fail('this stack pins torch >= 2.6; add_safe_globals is missing')
    # The globals the file names, read from its pickle (independent of any allow-list
    # already installed in this process), minus torch's defaults.
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    named = {arg.replace(' ', '.').replace('__builtin__.', 'builtins.')  # protocol 2
             for op, arg, _ in pickletools.genops(data) if op.name == 'GLOBAL'}
    from torch._weights_only_unpickler import _get_allowed_globals
    needed = named - set(_get_allowed_globals())
    # the problem exists: HistoryBuffer, numpy and getattr are not allowed by default
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr',
            'numpy.core.multiarray._reconstruct', 'numpy.dtype'} <= needed
    names = {name for _, name in mmengine_safe_globals()}
    assert needed <= names, needed - names
    assert enable_safe_checkpoint_loading() is True
    assert enable_safe_checkpoint_loading() is True  # idempotent

    from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
    assert CheckpointLoader._get_checkpoint_loader(path) is load_from_local_safe
    ck = _load_checkpoint(path, map_location='cpu')
    assert ck['meta']['seed'] == 0 and ck['meta']['time'] == 3.5
    assert ck['meta']['dtypes'] == [np.dtype('float16'), np.dtype('int32'), np.dtype('bool')]
    assert list(ck['meta']['objects']) == [1, 'x', None]
    assert torch.equal(ck['state_dict']['w'], torch.arange(3.0))
    buf = ck['message_hub']['log_scalars']['train/loss']
    assert buf.mean() == pytest.approx(1.25)
    assert buf.statistics('min') == 1.0 and buf.current() == 1.0
    np.testing.assert_array_equal(ck['message_hub']['runtime_info']['some_array'],
                                  np.arange(4, dtype=np.float32))
    # it goes through the restricted unpickler: plain torch.load with weights_only=True
    # now accepts the file as well
    assert torch.load(path, weights_only=True)['meta']['iter'] == 7


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class _EscapesViaGetattr:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('payload', ['code', 'getattr'])
def test_arbitrary_objects_are_still_refused(tmp_path, payload):
    enable_safe_checkpoint_loading()
    marker = str(tmp_path / 'was_executed')
    obj = _RunsCode(marker) if payload == 'code' else _EscapesViaGetattr()
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': {'x': obj}}, path)
    from mmengine.runner.checkpoint import _load_checkpoint
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(path, map_location='cpu')
    assert not osp.exists(marker)


def test_restricted_getattr_only_returns_history_buffer_methods():
    from mmengine.logging.history_buffer import HistoryBuffer
    getattr_ = dict((name, obj) for obj, name in mmengine_safe_globals())['builtins.getattr']
    assert getattr_ is not getattr
    assert getattr_(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer, '__class__'),
                      (os, 'system'), (HistoryBuffer.mean, '__globals__')):
        with pytest.raises(pickle.UnpicklingError, match='not allowed'):
            getattr_(obj, name)


def test_numpy_arrays_and_scalars_round_trip():
    enable_safe_checkpoint_loading()
    values = dict(f16=np.float16(1.5), i8=np.int8(-3), u64=np.uint64(7), b=np.bool_(True),
                  c=np.complex64(1 + 2j), arr=np.arange(6, dtype=np.int16).reshape(2, 3),
                  fortran=np.asfortranarray(np.ones((2, 3), np.float64)),
                  rec=np.zeros(2, dtype=[('a', 'i4'), ('b', 'f8')]))
    buf = io.BytesIO()
    torch.save(values, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    for k, v in values.items():
        assert type(back[k]) is type(v), k
        np.testing.assert_array_equal(back[k], v)
        assert np.asarray(back[k]).dtype == np.asarray(v).dtype, k


def test_missing_local_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_from_local_safe(str(tmp_path / 'nope.pth'))
