"""Build-on-first-use C kernels of ``detloss_plugin/csrc`` (DIoU-NMS, the IoU-family
and the sigmoid classification losses).

Each kernel is plain C with no Python or torch headers, compiled once per version of
its source and the headers it includes, with the system C compiler (``$CC``, else
``cc``/``gcc``/``clang``), into ``$DETLOSS_CACHE_DIR`` (default
``~/.cache/detloss_plugin``), and loaded with ctypes. Concurrent processes (distributed
training) each compile to a private temporary file and move it into place atomically.
Without a compiler :meth:`CompiledLibrary.load` returns None and callers run their
torch code.

Threads: the kernels are element-wise (the IoU family per box, the classification
losses per element), so :func:`run_chunks` splits a call into contiguous chunks of rows
and runs them on ``torch.get_num_threads()`` threads (a thread pool; ctypes releases
the GIL during a foreign call, so the chunks run in parallel). Each element is computed
by the same code whichever chunk holds it, so the results do not depend on the number
of threads; the GHM-C region counts are counted per chunk and summed (exact integers).
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch

__all__ = ['CompiledLibrary', 'BASE_FLAGS', 'VECTOR_FLAGS', 'POW_MODES', 'chunk_bounds',
           'run_chunks']

CSRC = Path(__file__).resolve().parent.parent / 'csrc'
# -ffp-contract=off: no fused multiply-add, so the kernels round like torch's operators
BASE_FLAGS = ('-O3', '-shared', '-fPIC', '-ffp-contract=off', '-std=c99')
# -fno-trapping-math / -fno-math-errno let the compiler vectorise the selects and the
# square root; neither changes a rounding.
VECTOR_FLAGS = BASE_FLAGS + ('-fno-trapping-math', '-fno-math-errno')
# codes of the POW_* enum of csrc/detloss_math.h: exact forms torch also uses for these
# exponents; any other exponent is computed generically
POW_MODES = {0.0: 1, 0.5: 2, 1.0: 3, 2.0: 4}


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


# ---- threads ------------------------------------------------------------------------

#: smallest amount of work (elements, or boxes x 4) worth a chunk of its own: below it
#: the hand-off to a thread costs more than the chunk
MIN_CHUNK_WORK = 1 << 15
_POOL: Optional[ThreadPoolExecutor] = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()


def chunk_bounds(rows: int, work_per_row: int = 1, threads: Optional[int] = None
                 ) -> List[Tuple[int, int]]:
    """``[(start, stop), ...]``: ``rows`` split into at most ``threads`` (default
    ``torch.get_num_threads()``) contiguous chunks of at least :data:`MIN_CHUNK_WORK`
    work each (one chunk for small calls)."""
    if threads is None:
        threads = torch.get_num_threads()
    k = max(1, min(threads, (rows * max(work_per_row, 1)) // MIN_CHUNK_WORK, rows))
    cuts = [rows * i // k for i in range(k + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(k)]


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS < workers:
            old = _POOL
            _POOL, _POOL_WORKERS = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix='detloss-kernel'), workers
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


def run_chunks(fn: Callable[[int, int], None], rows: int, work_per_row: int = 1) -> int:
    """Call ``fn(start, stop)`` for the chunks of :func:`chunk_bounds`, in parallel
    (the calling thread runs the first chunk). Returns the number of chunks."""
    bounds = chunk_bounds(rows, work_per_row)
    if len(bounds) == 1:
        fn(0, rows)
        return 1
    futures = [_pool(len(bounds) - 1).submit(fn, a, b) for a, b in bounds[1:]]
    try:
        fn(*bounds[0])
    finally:
        for f in futures:
            f.result()
    return len(bounds)
