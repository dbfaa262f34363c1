"""Build-on-first-use loader of the C DIoU-NMS kernel (``detloss_plugin/csrc/diou_nms.c``).

The kernel is a plain C function with no Python or torch headers, compiled once per
source version with the system C compiler (``$CC``, else ``cc``/``gcc``) into
``$DETLOSS_CACHE_DIR`` (default ``~/.cache/detloss_plugin``) and loaded with ctypes.
Concurrent processes (distributed training) each compile to a private temporary file
and move it into place atomically. If no compiler is available, :func:`load_kernel`
returns ``None`` and callers use the portable torch path.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Optional

__all__ = ['load_kernel', 'load_library']

_SOURCE = Path(__file__).resolve().parent.parent / 'csrc' / 'diou_nms.c'
_FLAGS = ['-O3', '-shared', '-fPIC', '-ffp-contract=off', '-std=c99']
_kernel = None
_failed = False


def _compiler() -> Optional[str]:
    for candidate in (os.environ.get('CC'), 'cc', 'gcc', 'clang'):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def _build(source: Path, flags=None) -> Path:
    """Compile ``source`` (a C file) with ``flags`` (default: this kernel's) into the
    cache, once per source and flags; also used for ``csrc/iou_family.c``."""
    flags = _FLAGS if flags is None else list(flags)
    content = source.read_bytes() + b''.join(
        h.read_bytes() for h in sorted(source.parent.glob('*.h')))  # included headers
    digest = hashlib.sha256(content + ' '.join(flags).encode()).hexdigest()[:16]
    cache = Path(os.environ.get('DETLOSS_CACHE_DIR', Path.home() / '.cache' / 'detloss_plugin'))
    target = cache / f'{source.stem}_{digest}.so'
    if target.exists():
        return target
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError('no C compiler found (set $CC)')
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=cache)
    os.close(fd)
    try:
        subprocess.run([compiler, *flags, str(source), '-o', tmp, '-lm'], check=True,
                       capture_output=True, text=True)
        os.replace(tmp, target)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f'{compiler} failed: {err.stderr.strip()}') from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_library(source: Path, flags, what: str, fallback: str):
    """Build (once) and load the C file ``source``; on failure warn, naming ``what``
    and the ``fallback`` that runs instead, and return None."""
    try:
        return ctypes.CDLL(str(_build(source, flags)))
    except (OSError, RuntimeError) as err:
        warnings.warn(f'detloss: the C {what} kernel is unavailable ({err}); using '
                      f'{fallback}, which is slower on CPU.')
        return None


def load_kernel():
    """The ctypes function ``detloss_diou_nms_f32``, or ``None`` if it cannot be built."""
    global _kernel, _failed
    if _kernel is not None or _failed:
        return _kernel
    lib = load_library(_SOURCE, None, 'DIoU-NMS', 'the portable torch implementation')
    if lib is None:
        _failed = True
        return None
    fn = lib.detloss_diou_nms_f32
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_float,
                   ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p]
    _kernel = fn
    return _kernel
