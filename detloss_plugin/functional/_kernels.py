"""Build-on-first-use C kernels of ``detloss_plugin/csrc``: the algorithms that torch
expresses badly (greedy DIoU-NMS, the AP-loss ranking). The element-wise losses have no
kernel: their plain torch code is what runs everywhere.

Each kernel is plain C with no Python or torch headers, compiled once per version of
its source and the headers it includes, with the system C compiler (``$CC``, else
``cc``/``gcc``/``clang``), into ``$DETLOSS_CACHE_DIR`` (default
``~/.cache/detloss_plugin``), and loaded with ctypes. Concurrent processes (distributed
training) each compile to a private temporary file and move it into place atomically.
Without a compiler :meth:`CompiledLibrary.load` returns None and callers run their
torch code.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ['CompiledLibrary', 'BASE_FLAGS']

CSRC = Path(__file__).resolve().parent.parent / 'csrc'
# -ffp-contract=off: no fused multiply-add, so the kernels round like torch's operators
BASE_FLAGS = ('-O3', '-shared', '-fPIC', '-ffp-contract=off', '-std=c99')


def _compiler() -> Optional[str]:
    for candidate in (os.environ.get('CC'), 'cc', 'gcc', 'clang'):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def _build(source: Path, flags) -> Path:
    """Compile ``source`` (a C file) with ``flags`` into the cache, once per source,
    included headers and flags."""
    flags = list(flags)
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


class CompiledLibrary:
    """A C file of ``csrc/``, built and loaded on the first :meth:`load` and kept.

    ``bind(lib)`` declares the ctypes signatures and returns what callers use (a
    function, a tuple or a dict of them). If the library cannot be built (no C
    compiler, a compiler error), :meth:`load` warns once, naming ``what`` and the
    ``fallback`` that runs instead, and returns None from then on.
    """

    def __init__(self, source_name: str, flags: Sequence[str], what: str, fallback: str,
                 bind: Callable):
        self.source = CSRC / source_name
        self.flags = tuple(flags)
        self.what, self.fallback, self.bind = what, fallback, bind
        self._bound = None
        self._failed = False

    def load(self):
        if self._bound is None and not self._failed:
            try:
                self._bound = self.bind(ctypes.CDLL(str(_build(self.source, self.flags))))
            except (OSError, RuntimeError) as err:
                self._failed = True
                warnings.warn(f'detloss: the C {self.what} kernel is unavailable ({err}); '
                              f'using {self.fallback}, which is slower on CPU.')
        return self._bound

