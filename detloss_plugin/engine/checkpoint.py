"""Resuming and ``load_from`` with mmengine 0.10.x under torch >= 2.6, safely.

mmengine 0.10.7 reads checkpoints with ``torch.load(filename, map_location=...)``.
Since torch 2.6 that call means ``weights_only=True``, and mmengine's own checkpoints
hold more than tensors: the ``message_hub`` stores
:class:`mmengine.logging.HistoryBuffer` objects (numpy arrays inside, and the names of
its statistics methods), and ``meta`` / ``runtime_info`` may hold numpy scalars and
dtypes. torch then refuses the file (``UnpicklingError: Weights only load failed``),
which breaks ``--resume`` and ``load_from``.

The fix keeps the restricted unpickler and lists exactly the classes and functions these
checkpoints need (:func:`mmengine_safe_globals`):

- ``mmengine.logging.HistoryBuffer`` (built with ``__new__`` and ``__setstate__``); its
  state holds its statistics methods, which pickle writes as
  ``builtins.getattr(HistoryBuffer, 'mean')``: that name is bound to a restricted
  ``getattr`` that returns HistoryBuffer's own public methods and refuses anything else
  (the real ``getattr`` is never allow-listed);
- numpy's array and scalar reconstructors (``numpy.core.multiarray._reconstruct``,
  ``numpy.core.multiarray.scalar``, under the names both numpy 1 and numpy 2 write),
  ``numpy.ndarray``, ``numpy.dtype`` and the concrete dtype classes (``Float64DType``,
  ...) that ``dtype.__setstate__`` is called on.

Each of these only rebuilds data: none imports a module, calls an arbitrary callable or
evaluates code, and the contents of object arrays are themselves unpickled by the same
restricted unpickler. Anything else in a file is still refused. Unsafe loading
(``weights_only=False``) is never switched on.

:func:`enable_safe_checkpoint_loading` adds that list with
``torch.serialization.add_safe_globals`` (which fixes every ``torch.load`` of mmengine:
local files, http and the other schemes) and re-registers mmengine's local-file loader
(``CheckpointLoader.register_scheme(prefixes='', force=True)``) with one that passes
``weights_only=True`` explicitly, so local checkpoints are loaded safely even with
torch 2.4/2.5, whose default is still unsafe. With torch < 2.4 (no
``add_safe_globals``) it changes nothing and returns False.

What that changes for other code in the process (the README says it too):

- ``torch.load(..., weights_only=True)`` anywhere also accepts the objects listed above
  (numpy arrays, scalars and dtypes, mmengine's ``HistoryBuffer``); a load with
  ``weights_only=False`` is unaffected, and nothing that was accepted before is refused.
- mmengine's loader for local paths (the empty prefix of ``CheckpointLoader``) is
  replaced **only if it is still mmengine's own** ``load_from_local``: a loader that the
  user or another plugin registered is left in place (with a warning). The other
  schemes (``http://``, ``s3://``, ...) keep their loaders. With torch >= 2.6 the
  replacement loads exactly what mmengine's own loader loads; with torch 2.4/2.5 a local
  checkpoint holding other pickled objects is now refused instead of unpickled without
  restriction.
- :func:`disable_safe_checkpoint_loading` puts mmengine's previous local loader back.
"""
import os.path as osp
from typing import Callable, List, Optional, Tuple

import torch

__all__ = ['CorruptCheckpointError', 'enable_safe_checkpoint_loading',
           'disable_safe_checkpoint_loading',
           'load_from_local_safe', 'mmengine_safe_globals']

_ENABLED = False
_PREVIOUS_LOCAL_LOADER = None


def _numpy_globals() -> List[Tuple[Callable, str]]:
    import numpy as np
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    out: List[Tuple[Callable, str]] = []
    # Pickles name these by module path: numpy 1.x writes numpy.core.multiarray.*,
    # numpy 2 writes numpy._core.multiarray.*. Accept both, so a checkpoint written
    # under one numpy loads under the other.
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        out.append((multiarray._reconstruct, f'{mod}._reconstruct'))
        out.append((multiarray.scalar, f'{mod}.scalar'))
    out.append((np.ndarray, 'numpy.ndarray'))
    out.append((np.dtype, 'numpy.dtype'))
    # dtype.__setstate__ runs on an instance of the concrete class (Float64DType...).
    dtype_classes = set()
    for t in set(np.sctypeDict.values()):
        try:
            dtype_classes.add(type(np.dtype(t)))
        except TypeError:
            continue
    for cls in sorted(dtype_classes, key=lambda c: c.__name__):
        out.append((cls, f'{cls.__module__}.{cls.__qualname__}'))
    return out


def _history_buffer_getattr_factory():
    import inspect
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = frozenset(n for n, v in vars(HistoryBuffer).items()
                        if inspect.isfunction(v) and not n.startswith('_'))

    def history_buffer_getattr(obj, name):
        """``getattr`` restricted to HistoryBuffer's public methods."""
        if obj is HistoryBuffer and name in allowed:
            return getattr(obj, name)
        raise pickle.UnpicklingError(
            f'detloss safe loading: getattr({obj!r}, {name!r}) is not allowed; only '
            f'HistoryBuffer methods {sorted(allowed)} are')

    return history_buffer_getattr


def _mmengine_globals() -> List[Tuple[Callable, str]]:
    from mmengine.logging.history_buffer import HistoryBuffer
    path = f'{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}'
    # HistoryBuffer.__getstate__ saves its statistics methods (min, max, current,
    # mean): torch.save's pickle protocol 2 writes a method as
    # getattr(HistoryBuffer, 'min'). builtins.getattr itself would reach anything
    # (``__globals__``...), so the name is bound to a getattr that only returns
    # HistoryBuffer's own public methods and refuses everything else.
    return [(HistoryBuffer, path), (_history_buffer_getattr_factory(), 'builtins.getattr')]


def mmengine_safe_globals() -> List[Tuple[Callable, str]]:
    """The ``(object, 'module.qualname')`` pairs that mmengine checkpoints need beyond
    torch's defaults (see the module docstring for why each is safe)."""
    return _numpy_globals() + _mmengine_globals()


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that is empty, truncated or not a PyTorch checkpoint at all."""


# the start of torch's legacy (pre-zip) format: pickle protocol 2, then its magic number
_LEGACY_MAGIC = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19'


def _damage(filename: str) -> Optional[str]:
    """Why ``filename`` cannot be a readable checkpoint, or None if its container looks
    sound (zip with intact CRCs, or torch's legacy format); read only after a failed
    load."""
    import pickletools
    import zipfile
    size = osp.getsize(filename)
    if size == 0:
        return 'is empty (0 bytes)'
    if zipfile.is_zipfile(filename):
        try:
            with zipfile.ZipFile(filename) as z:
                pkl = [n for n in z.namelist() if n.endswith('data.pkl')]
                if not pkl:
                    return (f'is a zip archive ({size} bytes) without a data.pkl: not a '
                            f'PyTorch checkpoint')
                bad = z.testzip()
                if bad:
                    return f'is damaged ({size} bytes; {bad} fails its CRC check)'
                pickled = z.read(pkl[0])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
            return f'is a damaged zip archive ({size} bytes: {err})'
        try:   # a well-formed opcode stream up to STOP (executes nothing)
            for _ in pickletools.genops(pickled):
                pass
        except Exception as err:
            return f'is damaged ({size} bytes; its data.pkl is cut short or garbled: {err})'
        return None
    with open(filename, 'rb') as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head == _LEGACY_MAGIC:
        return None
    return (f'is not a PyTorch checkpoint ({size} bytes, neither a zip archive nor torch\'s '
            f'legacy format), or it was truncated while being written')


def _refusal_detail(err: Exception) -> str:
    """The part of torch's weights-only error that says what was refused (without its
    advice to load with ``weights_only=False``)."""
    import re
    keep = []
    for part in re.split(r'\n\s*\n', str(err)):   # torch separates its parts by blank lines
        part = ' '.join(part.split())
        part = part.split('WeightsUnpickler error:', 1)[-1].strip()
        if part and not any(w in part for w in ('weights_only', 'Weights only load failed',
                                                'trusted source', 'Check the documentation')):
            keep.append(part)
    return ' '.join(keep).rstrip('.') or 'an object outside the allow-list'



def load_from_local_safe(filename: str, map_location=None):
    """mmengine's local-file loader, with ``weights_only=True`` explicitly.

    A file that cannot be a checkpoint (empty, truncated, random bytes) raises
    :class:`CorruptCheckpointError` naming it; a sound file holding objects outside the
    allow-list raises ``pickle.UnpicklingError`` naming it and the refused object. Neither
    message suggests ``weights_only=False``: that would run code from a file of unknown
    origin."""
    import pickle
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as err:
        damage = _damage(filename)
        if damage is not None:
            raise CorruptCheckpointError(
                f'checkpoint {filename} {damage}. It was not loaded. If a run was killed '
                f'while writing it, resume from the previous checkpoint.') from None
        if isinstance(err, pickle.UnpicklingError):
            raise pickle.UnpicklingError(
                f'checkpoint {filename} was refused by safe loading: '
                f'{_refusal_detail(err)}. Only tensors, numpy data and mmengine\'s '
                f'HistoryBuffer are loaded (detloss_plugin.engine.checkpoint); detloss '
                f'never unpickles anything else, which could run code from the file.'
            ) from None
        raise


def enable_safe_checkpoint_loading() -> bool:
    """Let mmengine load its own checkpoints with torch's restricted unpickler.

    Idempotent and cheap (no I/O). Returns True when enabled, False with torch < 2.4,
    where ``torch.serialization.add_safe_globals`` does not exist (nothing is changed
    then: those torch versions load with full unpickling by default anyway).
    """
    global _ENABLED
    if _ENABLED:
        return True
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return False
    global _PREVIOUS_LOCAL_LOADER
    from mmengine.runner import checkpoint as mm_checkpoint
    CheckpointLoader = mm_checkpoint.CheckpointLoader
    torch.serialization.add_safe_globals(mmengine_safe_globals())
    current = CheckpointLoader._schemes.get('')
    if current is load_from_local_safe:
        pass
    elif current is None or current is getattr(mm_checkpoint, 'load_from_local', None):
        _PREVIOUS_LOCAL_LOADER = current
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    else:
        import warnings
        warnings.warn(f'detloss: mmengine\'s local checkpoint loader was already replaced '
                      f'({getattr(current, "__qualname__", current)!r}); detloss leaves it in '
                      f'place and only adds mmengine\'s checkpoint types to torch\'s safe '
                      f'globals.')
    _ENABLED = True
    return True


def disable_safe_checkpoint_loading() -> None:
    """Undo the loader part of :func:`enable_safe_checkpoint_loading`: mmengine's local
    checkpoint loader goes back to what it was before (the safe globals stay added;
    they only widen what ``weights_only=True`` accepts)."""
    global _ENABLED, _PREVIOUS_LOCAL_LOADER
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._schemes.get('') is load_from_local_safe \
            and _PREVIOUS_LOCAL_LOADER is not None:
        CheckpointLoader.register_scheme(prefixes='', loader=_PREVIOUS_LOCAL_LOADER,
                                         force=True)
    _PREVIOUS_LOCAL_LOADER = None
    _ENABLED = False
