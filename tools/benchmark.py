#!/usr/bin/env python
"""Run benchmark suites: speed (and memory, host synchronisations, ...) of detloss's
losses and DIoU-NMS against mmdet, mmcv and torchvision, on ``torch.utils.benchmark``.

    python -m tools.benchmark --list          # from the repository root
    python -m tools.benchmark --suite iou_family [--suite classification ...]
        [--device cpu|cuda] [--threads 1 2] [--quick] [--out FILE.json]
    python -m tools.benchmark --suite model [--device cuda] -- CONFIG \\
        [--cfg-options model.bbox_head.loss_bbox.type=detloss_plugin.GIoULoss] [--iters 20]

A suite is any module ``tools/benchmarks/<name>.py`` (names starting with ``_`` are
helpers) that defines ``run(args) -> list[torch.utils.benchmark.Measurement]`` and
optionally ``extras(args) -> dict``; ``args`` has ``.device``, ``.threads`` (list of
thread counts), ``.quick`` and ``.rest`` (the arguments after ``--``, for suites with
their own options). This tool finds the suites, runs them, prints
``torch.utils.benchmark.Compare``'s tables and each contender's time as a ratio of the
reference contender's (a detloss entry), and writes every measurement (raw times
included) and the extras to one JSON file (default
``benchmark_results/<suites>-<device>[-quick].json``). The protocol, the results and
the targets they are checked against are in docs/benchmarks.md.

``--python PATH`` runs the same command in another interpreter (e.g. an environment
with torchvision: ``detloss_plugin.functional`` needs torch alone; contenders that
cannot import there are reported MISSING).
"""
import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import torch

REPO = Path(__file__).resolve().parent.parent
SUITES_DIR = REPO / 'tools' / 'benchmarks'


def available_suites() -> List[str]:
    """Every ``tools/benchmarks/<name>.py`` that is not a helper (``_*.py``)."""
    return sorted(p.stem for p in SUITES_DIR.glob('*.py') if not p.stem.startswith('_'))


def load_suite(name: str):
    path = SUITES_DIR / f'{name}.py'
    if not path.is_file():
        raise SystemExit(f'--suite {name!r}: no tools/benchmarks/{name}.py; available: '
                         f'{", ".join(available_suites())}')
    module_name = f'detloss_bench_{name}'
    if module_name in sys.modules:
        return sys.modules[module_name]
    # by path (any SUITES_DIR); the suites import their helpers as tools.benchmarks._common
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, 'run', None)):
        raise SystemExit(f'tools/benchmarks/{name}.py defines no run(args)')
    return module


def machine_info() -> dict:
    info = dict(python=platform.python_version(), torch=torch.__version__,
                machine=platform.machine(), processor=platform.processor(),
                cpus=os.cpu_count(), torch_threads_default=torch.get_num_threads(),
                executable=sys.executable)
    if torch.cuda.is_available():
        info['cuda_device'] = torch.cuda.get_device_name(0)
        info['cuda'] = torch.version.cuda
    for mod in ('mmcv', 'mmdet', 'mmengine', 'torchvision', 'detloss_plugin'):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as err:  # noqa: BLE001  (recorded, not fatal)
            info[mod] = f'MISSING ({type(err).__name__})'
    return info


def measurement_record(m) -> dict:
    return dict(label=m.label, sub_label=m.sub_label, description=m.description,
                env=m.env, num_threads=m.num_threads, median_s=m.median, iqr_s=m.iqr,
                mean_s=m.mean, times_s=list(m.times), metadata=m.metadata or {})


def ratio_table(measurements) -> List[str]:
    """Markdown: one row per case, size and contender; per thread count the median and
    its ratio to the reference contender (``> 1``: the reference is faster)."""
    threads = sorted({m.num_threads for m in measurements})
    by_key: Dict[tuple, dict] = {}
    refs: Dict[tuple, object] = {}
    for m in measurements:
        by_key.setdefault((m.label, m.sub_label, m.env, m.description), {})[m.num_threads] = m
        if (m.metadata or {}).get('ref'):
            refs[(m.label, m.sub_label, m.env, m.num_threads)] = m
    head = '| suite | case | contender | ' + ' | '.join(f'{t} thread(s)' for t in threads) + ' |'
    lines = [head, '|' + '---|' * (3 + len(threads))]
    for (label, sub, env, desc), per_thread in by_key.items():
        cells = []
        for t in threads:
            m = per_thread.get(t)
            if m is None:
                cells.append('—')
                continue
            ref = refs.get((label, sub, env, t))
            ms = m.median * 1e3
            if ref is None or ref is m:
                cells.append(f'**{ms:.3g} ms**' if ref is m else f'{ms:.3g} ms')
            else:
                cells.append(f'{ms:.3g} ms ({m.median / ref.median:.2f}x)')
        name = f'{desc} [{env}]' if env else desc
        lines.append(f'| {label} | {sub} | {name} | ' + ' | '.join(cells) + ' |')
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: List[str] = []
    if '--' in argv:
        cut = argv.index('--')
        argv, rest = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--suite', action='append', default=[],
                        help='a module of tools/benchmarks/ (repeatable); see --list')
    parser.add_argument('--list', action='store_true', help='list the suites and exit')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--threads', type=int, nargs='+', default=[1],
                        help='torch intra-op thread counts, measured side by side (default 1)')
    parser.add_argument('--quick', action='store_true', help='small sizes, short timings')
    parser.add_argument('--only', action='append', help='cases whose name contains this '
                        '(suites that support it)')
    parser.add_argument('--min-run-time', type=float, default=None,
                        help='seconds of timed calls per contender and size (suites built '
                        'on tools/benchmarks/_common.py; default: each case\'s own)')
    parser.add_argument('--out', default=None, help='JSON file for the results')
    parser.add_argument('--markdown', default=None, help='also write the ratio table here')
    parser.add_argument('--python', default=None,
                        help='run this command in another Python interpreter')
    args = parser.parse_args(argv)
    args.rest = rest
    if args.python:
        cmd = [args.python, '-m', 'tools.benchmark']
        skip = False
        for a in argv:
            if skip:
                skip = False
                continue
            if a == '--python':
                skip = True
                continue
            if a.startswith('--python='):
                continue
            cmd.append(a)
        if rest:
            cmd += ['--', *rest]
        return subprocess.call(cmd, cwd=REPO)
    if args.list or not args.suite:
        print('suites:', ', '.join(available_suites()))
        return 0
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('--device cuda: no CUDA device is available', file=sys.stderr)
        return 2

    try:
        from tools.benchmarks._common import compare, ratio_lines
    except ModuleNotFoundError as err:
        if err.name != 'tools':
            raise
        raise SystemExit('the suites import tools.benchmarks: run this from the repository '
                         'root as python -m tools.benchmark ...') from err
    results = dict(machine=machine_info(), argv=argv, rest=rest, suites={})
    all_measurements = []
    for name in args.suite:
        suite = load_suite(name)
        print(f'== suite {name} ({args.device}, threads {args.threads}'
              f'{", quick" if args.quick else ""})', flush=True)
        measurements = suite.run(args)
        extras = suite.extras(args) if callable(getattr(suite, 'extras', None)) else {}
        if measurements:
            compare(measurements).print()
        for line in ratio_lines(measurements):
            print(line)
        for item in extras.get('missing', []) if isinstance(extras, dict) else []:
            print(f"MISSING {item.get('description')} in {item.get('sub_label')}: "
                  f"{item.get('reason')}")
        results['suites'][name] = dict(measurements=[measurement_record(m) for m in measurements],
                                       extras=extras)
        all_measurements.extend(measurements)
    table = ratio_table(all_measurements)
    out = Path(args.out) if args.out else (
        REPO / 'benchmark_results' /
        f"{'+'.join(args.suite)}-{args.device}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results['ratio_table'] = table
    text = json.dumps(results, indent=1, default=str)
    # lists of numbers (the raw times) on one line each
    text = re.sub(r'\[\s+([-+0-9.eE,\s]+?)\s+\]',
                  lambda m: '[' + ' '.join(m.group(1).split()) + ']', text)
    out.write_text(text)
    print('\n'.join(table))
    print(f'results: {out}')
    if args.markdown:
        Path(args.markdown).write_text('\n'.join(table) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
