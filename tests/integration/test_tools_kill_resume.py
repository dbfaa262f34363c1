"""A training run killed while it writes a checkpoint can be resumed.

A real ``tools/train.py`` process (the slim quick-start RetinaNet on a tiny synthetic
dataset, one checkpoint kept, as the quick-start configs do) is SIGKILLed by the test
in the middle of writing its second checkpoint; ``--resume`` must then continue it to
the end. With mmengine's own ``CheckpointHook`` the previous checkpoint was deleted
before the new one was written, so ``last_checkpoint`` named a deleted file and the run
was lost.

Also: corrupt and foreign checkpoint files are refused with a message that names the
file and never suggests ``weights_only=False``.
"""
import glob
import os
import os.path as osp
import pickle
import subprocess
import sys
import time

import pytest
import torch

from _tools_helpers import TOOLS, make_tiny_setup, tool_env

# Imported by the training process (custom_imports); with $DETLOSS_KILL_MARKER set,
# the second checkpoint write writes half of its bytes, flushes them, tells the test (a
# marker file) and waits to be killed. Patched at mmengine's lowest level (the local file back-end's ``put``),
# which every checkpoint goes through, whichever hook writes it.
KILL_POINT = '''
import os
import time

from mmengine.fileio.backends import LocalBackend

_put = LocalBackend.put
_calls = []


def put(self, obj, filepath):
    if 'iter_' in str(filepath) and os.environ.get('DETLOSS_KILL_MARKER'):
        _calls.append(str(filepath))
        if len(_calls) == 2:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
            open(os.environ['DETLOSS_KILL_MARKER'], 'w').close()
            time.sleep(120)   # killed here by the test
    return _put(self, obj, filepath)


LocalBackend.put = put
'''

KILL_CONFIG = """
_base_ = {base!r}
custom_imports = dict(imports=['detloss_plugin', 'detloss_kill_point'],
                      allow_failed_imports=False)
train_cfg = dict(max_iters=3, val_interval=1000)
# the quick-start configs keep one checkpoint
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1, save_last=True))
"""


def _env(root, marker=None):
    env = tool_env()
    env['PYTHONPATH'] = root + os.pathsep + env['PYTHONPATH']
    env.pop('DETLOSS_KILL_MARKER', None)
    if marker:
        env['DETLOSS_KILL_MARKER'] = marker
    return env


def test_kill_while_writing_a_checkpoint_then_resume(tmp_path):
    root = str(tmp_path)
    tiny = make_tiny_setup(root)
    with open(osp.join(root, 'detloss_kill_point.py'), 'w') as f:
        f.write(KILL_POINT)
    config = osp.join(root, 'kill.py')
    with open(config, 'w') as f:
        f.write(KILL_CONFIG.format(base=tiny))
    work = osp.join(root, 'run')
    marker = osp.join(root, 'writing_checkpoint_2')
    cmd = [sys.executable, osp.join(TOOLS, 'train.py'), config, '--work-dir', work]
    log = open(osp.join(root, 'killed.log'), 'w')
    proc = subprocess.Popen(cmd, cwd=root, env=_env(root, marker), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 600
        while not osp.exists(marker):
            assert proc.poll() is None, open(log.name).read()[-3000:]
            assert time.time() < deadline, 'the run never reached its second checkpoint'
            time.sleep(0.2)
        proc.kill()   # SIGKILL in the middle of the checkpoint write
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert proc.returncode == -9

    # resume in the same work dir (the kill point is imported but inactive)
    proc = subprocess.run(cmd + ['--resume'], cwd=root, env=_env(root),
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert 'resumed epoch: 0, iter: 1' in out
    # it went on to the end: iter_2 and iter_3 written, iter_1 and iter_2 deleted
    with open(osp.join(work, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert last == osp.join(work, 'iter_3.pth')
    assert sorted(osp.basename(p) for p in glob.glob(osp.join(work, '*.pth*'))) == [
        'iter_3.pth']   # one kept, no temporary file left
    from mmengine.runner.checkpoint import _load_checkpoint

    from detloss_plugin.engine import enable_safe_checkpoint_loading
    enable_safe_checkpoint_loading()
    ck = _load_checkpoint(last, map_location='cpu')
    assert ck['meta']['iter'] == 3
    assert ck['message_hub']['runtime_info']['keep_ckpt_ids'] == [3]


def test_train_tool_uses_the_atomic_checkpoint_hook(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location('detloss_tool_train_hard',
                                                  osp.join(TOOLS, 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    cfg_path = tmp_path / 'c.py'
    cfg_path.write_text("default_hooks = dict(checkpoint=dict(type='CheckpointHook', "
                        "interval=3, max_keep_ckpts=2))\n")
    cfg = train.build_cfg(train.parse_args([str(cfg_path)]))
    assert cfg.default_hooks.checkpoint == dict(
        type='detloss_plugin.AtomicCheckpointHook', interval=3, max_keep_ckpts=2)
    # another hook type named by the config is kept
    cfg_path.write_text("default_hooks = dict(checkpoint=dict(type='MyHook'))\n")
    cfg = train.build_cfg(train.parse_args([str(cfg_path)]))
    assert cfg.default_hooks.checkpoint.type == 'MyHook'


# ---- corrupt and foreign checkpoint files -------------------------------------------
def _corrupt_files(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(1000.0)}}, str(good))
    data = good.read_bytes()
    files = {
        'empty.pth': b'',
        'random.pth': bytes((i * 197 + 31) % 256 for i in range(4096)),
        'truncated.pth': data[:len(data) // 2],
        'text.pth': b'not a checkpoint\n',
    }
    # a zip archive whose central directory is intact but whose pickle is cut short
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, 'w') as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename.endswith('data.pkl'):
                content = content[:len(content) // 2]
            dst.writestr(item.filename, content)
    files['short_pickle.pth'] = buf.getvalue()
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return [str(tmp_path / n) for n in files]


def test_corrupt_checkpoint_is_named_and_called_corrupt(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint

    from detloss_plugin.engine import enable_safe_checkpoint_loading
    from detloss_plugin.engine.checkpoint import CorruptCheckpointError
    enable_safe_checkpoint_loading()
    for path in _corrupt_files(tmp_path):
        with pytest.raises(CorruptCheckpointError) as info:
            _load_checkpoint(path, map_location='cpu')
        msg = str(info.value)
        assert path in msg, msg
        assert 'is empty' in msg or 'not a PyTorch checkpoint' in msg or 'damaged' in msg, msg
        assert 'weights_only' not in msg, msg
    # a sound file still loads
    assert _load_checkpoint(str(tmp_path / 'good.pth'))['state_dict']['w'].shape == (1000,)


def test_refused_checkpoint_never_suggests_unsafe_loading(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint

    from detloss_plugin.engine import enable_safe_checkpoint_loading
    enable_safe_checkpoint_loading()
    path = str(tmp_path / 'foreign.pth')
    torch.save({'meta': {'x': _Foreign()}}, path)
    with pytest.raises(pickle.UnpicklingError) as info:
        _load_checkpoint(path, map_location='cpu')
    msg = str(info.value)
    assert path in msg and 'refused' in msg and '_Foreign' in msg, msg
    assert 'weights_only' not in msg, msg


class _Foreign:
    pass


class _FakeRunner:
    """What CheckpointHook uses of a Runner: work_dir, logger, message_hub and
    save_checkpoint (which writes a small file through mmengine's save_checkpoint, or
    dies half-way when told to)."""

    def __init__(self, work_dir):
        import logging

        from mmengine.logging import MessageHub
        self.work_dir = work_dir
        self.logger = logging.getLogger('detloss_fake_runner')
        self.message_hub = MessageHub.get_instance(f'detloss_fake_runner_{id(self)}')
        self.die_in_write = False

    def save_checkpoint(self, out_dir, filename, file_client_args=None, meta=None, **kw):
        path = osp.join(out_dir, filename)
        if self.die_in_write:
            with open(path, 'wb') as f:
                f.write(b'PK\x03\x04 partial')
            raise KeyboardInterrupt('killed while writing ' + path)
        from mmengine.runner.checkpoint import save_checkpoint
        save_checkpoint({'meta': dict(meta or {}), 'w': torch.ones(2)}, path)


def _last(work):
    with open(osp.join(work, 'last_checkpoint')) as f:
        return f.read()


def test_atomic_hook_order_of_writes(tmp_path):
    """The hook's steps, without training: the old checkpoint is deleted only after the
    new one is complete and named by last_checkpoint; a death during the write leaves
    the previous state (checkpoint, last_checkpoint, keep list) usable."""
    from mmengine.hooks import CheckpointHook

    from detloss_plugin.engine import AtomicCheckpointHook
    work = str(tmp_path)
    for cls in (CheckpointHook, AtomicCheckpointHook):
        runner = _FakeRunner(work)
        hook = cls(interval=1, by_epoch=False, max_keep_ckpts=1)
        hook.before_train(runner)
        hook._save_checkpoint_with_step(runner, 1, {})
        hook._save_checkpoint_with_step(runner, 2, {})
        assert sorted(os.listdir(work)) == ['iter_2.pth', 'last_checkpoint']
        assert _last(work) == osp.join(work, 'iter_2.pth')
        runner.die_in_write = True
        with pytest.raises(KeyboardInterrupt):
            hook._save_checkpoint_with_step(runner, 3, {})
        files = sorted(os.listdir(work))
        if cls is CheckpointHook:
            # mmengine: iter_2 deleted first, iter_3 partial, last_checkpoint dangling
            assert files == ['iter_3.pth', 'last_checkpoint']
            assert _last(work) == osp.join(work, 'iter_2.pth')
            for name in files:
                os.remove(osp.join(work, name))
        else:
            assert files == ['iter_2.pth', 'iter_3.pth.tmp', 'last_checkpoint']
            assert _last(work) == osp.join(work, 'iter_2.pth')
            assert torch.load(osp.join(work, 'iter_2.pth'))['w'].sum() == 2
            # the next save of step 3 overwrites the stray temporary file
            runner.die_in_write = False
            hook._save_checkpoint_with_step(runner, 3, {})
            assert sorted(os.listdir(work)) == ['iter_3.pth', 'last_checkpoint']
            assert _last(work) == osp.join(work, 'iter_3.pth')
