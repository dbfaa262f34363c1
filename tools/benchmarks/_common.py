"""Shared pieces of the benchmark suites (``tools/benchmarks/<suite>.py``).

A suite is a module with ``run(args) -> list[Measurement]`` (``torch.utils.benchmark``
measurements whose ``label`` / ``sub_label`` / ``description`` let ``Compare`` tabulate
them), where ``args`` has ``.device`` ('cpu' or 'cuda'), ``.threads`` (list of int) and
``.quick`` (bool); optionally ``extras(args) -> dict`` (peak memory, loss values, host
synchronisations, ...). ``tools/benchmark.py --suite <name>`` runs it; so does
``python -m tools.benchmarks.<name>`` (:func:`standalone`).

Timing is ``torch.utils.benchmark.Timer`` (warm-up, ``torch.set_num_threads`` per
measurement, CUDA synchronisation around each block of calls); :func:`measure_cases`
interleaves the contenders of a case in rounds (round r measures every contender once,
in a rotated order) and merges each contender's rounds, so that a shared machine's
drift hits every contender alike.
"""
import argparse
import contextlib
import gc
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch.utils.benchmark import Compare, Measurement, Timer

REPO = Path(__file__).resolve().parents[2]


# ---- contenders and cases, as data -----------------------------------------------------

@dataclass
class Contender:
    """One implementation in a case: ``build(inputs)`` returns the no-argument callable
    that is timed (imports inside ``build``, so a missing peer is reported, not fatal).
    ``ref``: the contender the others' ratios are taken against. ``devices``: where it
    runs. ``max_n``: largest size it runs at."""
    description: str
    build: Callable[[dict], Callable[[], object]]
    ref: bool = False
    devices: tuple = ('cpu', 'cuda')
    max_n: Optional[int] = None


@dataclass
class Case:
    """A benchmark case: ``make_inputs(n, device)`` and its contenders, at ``sizes``
    (``quick_sizes`` with ``--quick``). ``label`` groups cases in ``Compare``'s tables;
    ``sub_label(n)`` names a row."""
    label: str
    name: str
    sizes: List[int]
    quick_sizes: List[int]
    make_inputs: Callable[[int, torch.device], dict]
    contenders: List[Contender]
    size_name: Callable[[int], str] = lambda n: f'n={n}'
    memory: bool = False          # record peak memory of one call (extras)
    syncs: bool = False           # record host synchronisations of one call (extras)
    value: Optional[Callable[[object], object]] = None   # what a call returns, recorded
    note: str = ''
    min_run_time: float = 1.0     # seconds of timed calls per contender and size
    extra: Dict[str, object] = field(default_factory=dict)


def compile_loss(loss_of: Callable) -> Callable:
    """``loss_of`` under ``torch.compile(fullgraph=True)`` (inductor, torch's default
    shape handling: static for the first size, one dynamic-shape graph after a size
    changes). Compilation happens in the warm-up calls and is never timed.
    ``$DETLOSS_BENCH_COMPILE_BACKEND`` names another backend (the tests use
    ``aot_eager``, which compiles in a fraction of the time)."""
    backend = os.environ.get('DETLOSS_BENCH_COMPILE_BACKEND', 'inductor')
    return torch.compile(loss_of, fullgraph=True, backend=backend)


def pow2(n: int) -> str:
    return f'n=2^{n.bit_length() - 1}' if n & (n - 1) == 0 else f'n={n}'


# ---- arguments ------------------------------------------------------------------------

def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, nargs='+', default=[1],
                        help='torch intra-op thread counts to measure with (default 1)')
    parser.add_argument('--quick', action='store_true',
                        help='small sizes and short timings (a smoke run)')
    return parser


def device_of(args) -> torch.device:
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    return torch.device(args.device)


# ---- measuring ------------------------------------------------------------------------

@contextlib.contextmanager
def quiet_stderr():
    """Silence the profiler's start/stop lines (written by C++ straight to fd 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn, device: torch.device) -> int:
    """Largest number of bytes torch's allocator held during ``fn()`` beyond what was
    allocated when it started (CUDA: ``max_memory_allocated``; CPU: the profiler's
    memory events, every allocation and free of a tensor's storage)."""
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU],
                                 profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == '[memory]' and str(e.device_type()).endswith('CPU')]
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


# operators that make the host wait for the device on a GPU (counted on any device)
SYNC_OPS = ('aten::_local_scalar_dense', 'aten::nonzero', 'aten::equal', 'aten::is_nonzero')


def host_syncs(fn) -> int:
    """Number of host-synchronising operators (:data:`SYNC_OPS`) run by ``fn()``."""
    from torch.profiler import ProfilerActivity, profile
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.profiler.kineto_results.events() if e.name() in SYNC_OPS)


def short_error(err: BaseException) -> str:
    return f'{type(err).__name__}: {err}'.split('\n')[0][:300]


def measure_cases(cases: List[Case], args, extras: dict, rounds: int = 3,
                  env: Optional[str] = None) -> List[Measurement]:
    """Time every contender of every case at every size and thread count; what cannot
    run is recorded in ``extras['missing']`` (and printed), never skipped silently."""
    device = device_of(args)
    out: List[Measurement] = []
    missing = extras.setdefault('missing', [])
    for case in cases:
        sizes = case.quick_sizes if args.quick else case.sizes
        for n in sizes:
            row = case.size_name(n)
            try:
                inputs = case.make_inputs(n, device)
            except Exception as err:   # e.g. mmdet missing for the detector
                missing.append(dict(label=case.label, sub_label=f'{case.name} {row}',
                                    description='(inputs)', reason=short_error(err)))
                print(f'MISSING {case.name} {row}: {short_error(err)}')
                continue
            runnable = []
            for c in case.contenders:
                if device.type not in c.devices or (c.max_n is not None and n > c.max_n):
                    continue
                try:
                    fn = c.build(inputs)
                    fn()
                    fn()   # warm-up: lazy imports, kernel builds, the allocator
                except Exception as err:   # a missing or broken peer is reported
                    missing.append(dict(label=case.label, sub_label=f'{case.name} {row}',
                                        description=c.description, reason=short_error(err)))
                    print(f'MISSING {c.description} in {case.name} {row}: {short_error(err)}')
                    continue
                runnable.append((c, fn))
            for threads in args.threads:
                out.extend(_interleaved(case, row, runnable, threads, args, rounds, env))
            for c, fn in runnable:
                key = f'{case.name} | {row} | {c.description}'
                info = extras.setdefault('calls', {}).setdefault(key, {})
                if case.value is not None:
                    info['value'] = case.value(fn())
                if case.memory:
                    inputs.get('reset', lambda: None)()
                    info['peak_bytes'] = peak_memory(fn, device)
                if case.syncs:
                    inputs.get('reset', lambda: None)()
                    info['host_syncs'] = host_syncs(fn)
    return out


def _interleaved(case, row, runnable, threads, args, rounds, env):
    if not runnable:
        return []
    budget = getattr(args, 'min_run_time', None) or case.min_run_time
    if args.quick:
        rounds, min_run_time = 1, min(0.05, budget)
    else:
        min_run_time = budget / rounds
    parts: Dict[int, List[Measurement]] = {i: [] for i in range(len(runnable))}
    for r in range(rounds):
        for k in range(len(runnable)):
            i = (r + k) % len(runnable)
            c, fn = runnable[i]
            timer = Timer(stmt='fn()', globals={'fn': fn}, label=case.label,
                          sub_label=f'{case.name} {row}', description=c.description,
                          num_threads=threads, env=env)
            m = timer.blocked_autorange(min_run_time=min_run_time)
            parts[i].append(m)
    out = []
    for i, (c, _) in enumerate(runnable):
        merged = Measurement.merge(parts[i])[0]
        merged.metadata = dict(ref=c.ref, case=case.name, size=row, note=case.note)
        out.append(merged)
    return out


# ---- reporting ------------------------------------------------------------------------

def compare(measurements: List[Measurement]) -> Compare:
    table = Compare(measurements)
    table.trim_significant_figures()
    return table


def ratio_lines(measurements: List[Measurement]) -> List[str]:
    """``contender median / reference median`` per case, size and thread count (> 1:
    the reference, a detloss contender, is faster)."""
    groups: Dict[tuple, List[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.label, m.sub_label, m.num_threads, m.env), []).append(m)
    lines = []
    for (label, sub, threads, env), ms in groups.items():
        ref = next((m for m in ms if (m.metadata or {}).get('ref')), None)
        if ref is None:
            continue
        cells = [f'{m.description} {m.median / ref.median:.2f}x' for m in ms if m is not ref]
        if cells:
            where = f'[{env}] ' if env else ''
            lines.append(f'{where}{label} | {sub} | {threads} thread(s) | ref '
                         f'{ref.description} {ref.median * 1e3:.3f} ms | ' + ', '.join(cells))
    return lines


def standalone(run: Callable, extras: Optional[Callable] = None, argv=None,
               description: str = '') -> int:
    """``python -m tools.benchmarks.<suite> [--device] [--threads ...] [--quick]``."""
    parser = add_common_args(argparse.ArgumentParser(description=description))
    args = parser.parse_args(argv)
    measurements = run(args)
    compare(measurements).print()
    for line in ratio_lines(measurements):
        print(line)
    if extras is not None:
        data = extras(args)
        print(f'extras: {sorted(data)} (tools/benchmark.py --suite ... writes them to JSON)')
    return 0


def version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except Exception:
        return '?'
