#!/usr/bin/env python
"""Speed and memory of detloss's losses and DIoU-NMS against mmdet, mmcv and torchvision.

    python tools/benchmark.py            # full run (CPU, and CUDA when a GPU is present)
    python tools/benchmark.py --quick    # small sizes, few repetitions (about a minute)
    python tools/benchmark.py --only giou --only ciou --threads 1
    python tools/benchmark.py --suite classification --suite train-step --threads 1

Protocol (docs/benchmarks.md has the details and the latest numbers):

- Every case (a loss or NMS at one size) runs all its contenders in one process,
  *interleaved*: repetition r runs contender (r + k) mod K for k = 0..K-1, so slow
  drift of a shared machine hits everyone alike. Reported: the median (and the
  quartiles) of the per-call times, and ``ratio = peer median / detloss median``
  (> 1: detloss is faster).
- Loss contenders do what a head does: forward with a per-box weight and an
  ``avg_factor``, then ``backward()`` into the leaf ``pred`` (box regression) or the
  logits (classification: integer labels for the modules, 0/1 targets for the
  functions; host synchronisations are counted from the profiler's operators).
- Train step (``--suite train-step``): one iteration of mmdet's stock RetinaNet R50-FPN
  (preprocessing, forward with the losses, ``parse_losses``, backward, SGD step at
  learning rate 0) with detloss's or mmdet's loss swapped into the head, same
  weights, same batch.
- Peak memory (losses): the largest amount of memory allocated by torch's allocator
  during one forward+backward beyond what was allocated before it (the grad of ``pred``
  included), from ``torch.profiler`` memory events on CPU (every allocation and free of
  a tensor's storage, also those inside operators and autograd's saved tensors; not
  Python objects, not malloc's own overhead) and ``torch.cuda.max_memory_allocated``
  on CUDA.
- Timing: ``time.perf_counter`` on CPU; CUDA events after a synchronisation on CUDA.
- torchvision: it does not import beside this project's CPU torch 2.13.0, so its
  contenders run in a second environment (``.venv-tv``: torch 2.14.1 + torchvision
  0.29.1, or ``--tv-python``) as a subprocess of this script with the same protocol,
  next to detloss's functional code measured again in that process (the ratio is
  within that process). A missing environment is reported as MISSING, never skipped
  silently.

Adding a case is a few lines: see ``REGRESSION`` / ``NMS_CASES`` / ``CLASSIFICATION`` /
``TRAIN_STEP`` at the bottom and ``Case``/``Contender``; ``Contender.envs`` says which
environment can run it.
"""
import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TV_PYTHON = REPO / '.venv-tv' / 'bin' / 'python'
MAIN, TV = 'main', 'tv'


# ---------------------------------------------------------------------------------
# Imports that depend on the environment
# ---------------------------------------------------------------------------------

def detloss_functional():
    """detloss's pure-torch core. In the torchvision environment (no mmengine/mmdet)
    the package's ``__init__`` (which registers modules) is bypassed."""
    if 'detloss_plugin' not in sys.modules:
        try:
            import detloss_plugin  # noqa: F401
        except ImportError:
            for name in [m for m in sys.modules if m.startswith('detloss_plugin')]:
                del sys.modules[name]
            pkg = types.ModuleType('detloss_plugin')
            pkg.__path__ = [str(REPO / 'detloss_plugin')]
            sys.modules['detloss_plugin'] = pkg
    return importlib.import_module('detloss_plugin.functional')


def detloss_models():
    import detloss_plugin  # noqa: F401  (needs mmengine: main environment only)
    from detloss_plugin.registry import MODELS
    return MODELS


def mmdet_models():
    from mmdet.models import losses  # noqa: F401  (registers mmdet's losses)
    from mmdet.registry import MODELS
    return MODELS


# ---------------------------------------------------------------------------------
# Framework
# ---------------------------------------------------------------------------------

@dataclass
class Contender:
    """One implementation in a case. ``build(inputs)`` returns a no-argument callable
    that performs one timed call (imports happen in build, so a missing peer fails
    there and is reported)."""
    label: str
    build: Callable[[dict], Callable[[], object]]
    envs: tuple = (MAIN,)
    ref: bool = False          # the detloss entry ratios are taken against
    max_n: Optional[int] = None  # do not run above this size (reported as skipped)
    devices: tuple = ('cpu', 'cuda')


@dataclass
class Case:
    group: str                 # 'regression', 'nms', 'classification', ...
    name: str
    sizes: List[int]
    quick_sizes: List[int]
    make_inputs: Callable[[int, torch.device], dict]
    contenders: List[Contender]
    memory: bool = True        # measure peak memory (needs all allocations via torch)
    note: str = ''
    count_syncs: bool = False  # count host synchronisations in one call (profiler)
    min_reps: Optional[int] = None   # override the run's repetition bounds
    max_reps: Optional[int] = None


def time_call(fn, device) -> float:
    """Seconds for one call of ``fn``."""
    if device.type == 'cuda':
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextlib.contextmanager
def _quiet_stderr():
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


def peak_memory(fn, device) -> int:
    """Largest number of bytes allocated by torch during ``fn()`` beyond what was
    allocated when it started."""
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU],
                                  profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == '[memory]' and str(e.device_type()).endswith('CPU')]
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


# Operators that make the host wait for the device on a GPU: reading a value
# (``.item()``, ``bool(t)``, ``int(t)`` all run ``_local_scalar_dense``) and operators
# whose output shape depends on the data (``nonzero``, behind ``torch.nonzero`` and
# boolean-mask indexing on CUDA). Counted from the profiler's operator events; on the
# CPU they cost little, but they are what serialises a GPU training step.
SYNC_OPS = ('aten::_local_scalar_dense', 'aten::nonzero')


def host_syncs(fn) -> int:
    """Number of host-synchronising operators (:data:`SYNC_OPS`) run by ``fn()``."""
    from torch.profiler import ProfilerActivity, profile
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.profiler.kineto_results.events() if e.name() in SYNC_OPS)


def run_case(case: Case, n: int, device: torch.device, env: str, reps_budget: float,
             min_reps: int, max_reps: int, seed: int = 0, case_reps: bool = True
             ) -> List[dict]:
    """All contenders of ``case`` that can run in ``env``, interleaved."""
    rows, runnable = [], []
    try:
        inputs = case.make_inputs(n, device, seed)
    except Exception as err:  # e.g. mmdet missing for the detector: every cell says so
        status = f'MISSING: {type(err).__name__}: {err}'.split('\n')[0][:300]
        return [dict(group=case.group, case=case.name, n=n, device=device.type, env=env,
                     contender=c.label, ref=c.ref, status=status)
                for c in case.contenders if env in c.envs]
    for c in case.contenders:
        if env not in c.envs:
            continue
        row = dict(group=case.group, case=case.name, n=n, device=device.type, env=env,
                   contender=c.label, ref=c.ref)
        rows.append(row)
        if device.type not in c.devices:
            row['status'] = f'skipped: not available on {device.type}'
            continue
        if c.max_n is not None and n > c.max_n:
            row['status'] = f'skipped: only run up to n = {c.max_n}'
            continue
        try:
            fn = c.build(inputs)
            for _ in range(2):   # warm-up (lazy imports, kernel builds, allocator)
                fn()
        except Exception as err:  # a missing or broken peer is reported, not hidden
            row['status'] = f'MISSING: {type(err).__name__}: {err}'.split('\n')[0][:300]
            continue
        row['status'] = 'ok'
        runnable.append((row, fn))
    if not runnable:
        return rows
    # repetitions from the cost of one round
    one_round = sum(time_call(fn, device) for _, fn in runnable)
    if case_reps:   # the case's own bounds (a full run; --quick keeps its few repetitions)
        min_reps = case.min_reps if case.min_reps is not None else min_reps
        max_reps = max(min_reps, case.max_reps if case.max_reps is not None else max_reps)
    reps = int(min(max_reps, max(min_reps, reps_budget / max(one_round, 1e-6))))
    times = [[] for _ in runnable]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(reps):
            for k in range(len(runnable)):
                i = (r + k) % len(runnable)
                times[i].append(time_call(runnable[i][1], device))
    finally:
        if gc_was_enabled:
            gc.enable()
    for (row, fn), ts in zip(runnable, times):
        ts_ms = [t * 1e3 for t in ts]
        q = statistics.quantiles(ts_ms, n=4) if len(ts_ms) > 1 else [ts_ms[0]] * 3
        row.update(times_ms=ts_ms, median_ms=statistics.median(ts_ms), p25_ms=q[0],
                   p75_ms=q[2], reps=len(ts_ms))
        if case.memory:
            if 'pred' in inputs:  # free the last gradient outside the measured window
                inputs['pred'].grad = None
            row['peak_bytes'] = peak_memory(fn, device)
        if case.count_syncs:
            if 'pred' in inputs:
                inputs['pred'].grad = None
            row['host_syncs'] = host_syncs(fn)
        extra = inputs.get('describe')
        if extra is not None:
            row['extra'] = extra(fn)
    return rows


# ---------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------

IMAGE_WH = (1333.0, 800.0)


def box_pairs(n: int, device: torch.device, seed: int = 0) -> dict:
    """Targets spread over a 1333 x 800 image with sides log-uniform in [16, 512];
    predictions around them as a regressor in training produces (centre shift of
    N(0, 0.2 side), sides scaled by exp(N(0, 0.3))): IoUs from 0 to ~1. A per-box
    weight in [0, 1] and ``avg_factor = n / 4`` as a head passes them."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * torch.tensor(IMAGE_WH)
    side = torch.exp(torch.rand(n, 2, generator=g) * math.log(512 / 16) + math.log(16))
    target = torch.cat([centre - side / 2, centre + side / 2], 1)
    pc = centre + torch.randn(n, 2, generator=g) * 0.2 * side
    ps = side * torch.exp(torch.randn(n, 2, generator=g) * 0.3)
    pred = torch.cat([pc - ps / 2, pc + ps / 2], 1)
    return dict(pred=pred.to(device).requires_grad_(), target=target.to(device),
                weight=torch.rand(n, generator=g).to(device), avg_factor=n / 4)


def detections(n: int, device: torch.device, seed: int = 0) -> dict:
    """What a detector hands to NMS: ``n`` boxes around n/25 objects in a 1333 x 800
    image (centre jitter N(0, 0.15 side), sides scaled by exp(N(0, 0.2)), object
    sides log-uniform in [32, 400]) with uniform scores; IoU threshold 0.5."""
    g = torch.Generator().manual_seed(seed)
    objects = max(1, n // 25)
    centre = torch.rand(objects, 2, generator=g) * torch.tensor(IMAGE_WH)
    side = torch.exp(torch.rand(objects, 2, generator=g) * math.log(400 / 32) + math.log(32))
    pick = torch.randint(0, objects, (n,), generator=g)
    c = centre[pick] + torch.randn(n, 2, generator=g) * 0.15 * side[pick]
    s = side[pick] * torch.exp(torch.randn(n, 2, generator=g) * 0.2)
    boxes = torch.cat([c - s / 2, c + s / 2], 1)
    scores = torch.rand(n, generator=g)

    def describe(fn):
        out = fn()
        keep = out[1] if isinstance(out, tuple) else out
        return dict(kept=int(keep.numel()))
    return dict(boxes=boxes.to(device), scores=scores.to(device), iou_threshold=0.5,
                describe=describe)


# ---------------------------------------------------------------------------------
# Contender builders
# ---------------------------------------------------------------------------------

def _loss_step(inputs, loss_of):
    """forward with weight and avg_factor, backward into pred."""
    pred, target, weight, avg = (inputs['pred'], inputs['target'], inputs['weight'],
                                 inputs['avg_factor'])

    def step():
        pred.grad = None
        loss = loss_of(pred, target, weight, avg)
        loss.backward()
        return loss.detach()
    return step


def loss_contender(label: str, make_loss: Callable[[], Callable], envs=(MAIN,),
                   ref: bool = False, **kwargs) -> Contender:
    """The generic loss contender: ``make_loss()`` (called in the contender's
    environment, so its imports fail there and are reported) returns
    ``f(pred, target, weight, avg_factor) -> scalar``; each timed call is that forward
    and a backward into ``pred``."""
    return Contender(label, lambda inputs: _loss_step(inputs, make_loss()), envs=envs,
                     ref=ref, **kwargs)


def registered_module(registry: Callable, type_name: str, **cfg) -> Callable:
    """``make_loss`` for a registered loss module called as a head calls it."""
    def make():
        module = registry().build(dict(type=type_name, **cfg))
        return lambda p, t, w, a: module(p, t, weight=w, avg_factor=a)
    return make


def detloss_module(type_name: str, **cfg) -> Contender:
    """detloss's registered module, as a head calls it (fast path, the default)."""
    return loss_contender('detloss', registered_module(detloss_models, type_name, **cfg),
                          ref=True)


def detloss_function(fn_name: str, label: str = 'detloss', fast: bool = True,
                     envs=(TV,), ref: bool = True, **kwargs) -> Contender:
    """detloss's functional loss with the weighted mean of a module (used where the
    registry is unavailable, and for the plain path)."""
    def make():
        fn = getattr(detloss_functional(), fn_name)
        return lambda p, t, w, a: (fn(p, t, fast=fast, **kwargs) * w).sum() / a
    return loss_contender(label, make, envs=envs, ref=ref)


def detloss_plain(fn_name: str, **kwargs) -> Contender:
    return detloss_function(fn_name, label='detloss plain', fast=False, envs=(MAIN,),
                            ref=False, **kwargs)


def detloss_torch_fast_path(kind: str, **options) -> Contender:
    """The fast path's torch implementation (what GPUs, float64 and machines without a
    C compiler run), forced on the CPU."""
    def make():
        detloss_functional()
        fused = importlib.import_module('detloss_plugin.functional._fused_iou')
        return lambda p, t, w, a: (fused.fused_iou_family(
            kind, p, t, cpu_kernel=False, **options) * w).sum() / a
    return loss_contender('detloss fast (torch impl.)', make, devices=('cpu',))


def mmdet_module(type_name: str, **cfg) -> Contender:
    return loss_contender('mmdet 3.3.0', registered_module(mmdet_models, type_name, **cfg))


def torchvision_loss(fn_name: str) -> Contender:
    """A torchvision.ops loss function with the weighted mean of a module."""
    def make():
        import torchvision.ops
        fn = getattr(torchvision.ops, fn_name)
        return lambda p, t, w, a: (fn(p, t, reduction='none') * w).sum() / a
    return loss_contender('torchvision', make, envs=(TV,))


def nms_contender(label, make_fn, envs, ref=False, max_n=None, devices=('cpu', 'cuda')):
    def build(inputs):
        fn = make_fn()
        boxes, scores, thr = inputs['boxes'], inputs['scores'], inputs['iou_threshold']
        return lambda: fn(boxes, scores, thr)
    return Contender(label, build, envs=envs, ref=ref, max_n=max_n, devices=devices)


def _detloss_diou_nms(backend='auto'):
    fn = detloss_functional().diou_nms
    return lambda b, s, thr: fn(b, s, thr, backend=backend)


def _detloss_diou_nms_mmcv():
    from detloss_plugin.ops import diou_nms_mmcv
    return diou_nms_mmcv


def _mmcv_nms():
    from mmcv.ops import nms
    return nms


def _torchvision_nms():
    import torchvision.ops
    return torchvision.ops.nms


# ---------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------

LOSS_SIZES, LOSS_QUICK = [2 ** 12, 2 ** 16, 2 ** 20], [2 ** 12, 2 ** 16]
NMS_SIZES, NMS_QUICK = [1000, 10000, 50000], [1000, 10000]


def regression_case(name, module, function, kind, kwargs=None, mmdet=None, torchvision=None,
                    note=''):
    """One IoU-family loss: detloss's module (main env) or function (tv env) as the
    reference, detloss's other implementations, and the peers with the same
    definition."""
    kwargs = kwargs or {}
    options = {k: v for k, v in kwargs.get('function', {}).items() if k != 'mode'}
    contenders = [detloss_module(module, **kwargs.get('module', {})),
                  detloss_function(function, **kwargs.get('function', {})),
                  detloss_torch_fast_path(kind, **options),
                  detloss_plain(function, **kwargs.get('function', {}))]
    if mmdet is not None:
        contenders.append(mmdet_module(mmdet) if isinstance(mmdet, str) else
                          mmdet_module(mmdet[0], **mmdet[1]))
    if torchvision is not None:
        contenders.append(torchvision_loss(torchvision))
    return Case('regression', name, LOSS_SIZES, LOSS_QUICK, box_pairs, contenders, note=note)


def _kw(**module_and_function):
    return dict(module=module_and_function, function=module_and_function)


REGRESSION = [
    regression_case('iou (linear)', 'detloss_plugin.IoULoss', 'iou_loss', 'iou_linear',
                    _kw(mode='linear'), mmdet=('IoULoss', dict(mode='linear'))),
    regression_case('iou (log)', 'detloss_plugin.IoULoss', 'iou_loss', 'iou_log',
                    _kw(mode='log'), mmdet=('IoULoss', dict(mode='log'))),
    regression_case('giou', 'detloss_plugin.GIoULoss', 'giou_loss', 'giou', mmdet='GIoULoss',
                    torchvision='generalized_box_iou_loss'),
    regression_case('diou', 'detloss_plugin.DIoULoss', 'diou_loss', 'diou', mmdet='DIoULoss',
                    torchvision='distance_box_iou_loss'),
    regression_case('ciou (AAAI: alpha always on)', 'detloss_plugin.CIoULoss', 'ciou_loss',
                    'ciou', torchvision='complete_box_iou_loss',
                    note="mmdet's CIoULoss gates alpha: see ciou (alpha_gate=True)"),
    regression_case('ciou (alpha_gate=True)', 'detloss_plugin.CIoULoss', 'ciou_loss', 'ciou',
                    _kw(alpha_gate=True), mmdet='CIoULoss'),
    regression_case('ciou (authors_gradient=True)', 'detloss_plugin.CIoULoss', 'ciou_loss',
                    'ciou', _kw(authors_gradient=True),
                    note='no peer implements this gradient'),
    regression_case('eiou (Efficient-IoU)', 'detloss_plugin.EfficientIoULoss', 'eiou_loss',
                    'eiou', note="no peer: mmdet's EIoULoss is the Extended-IoU loss"),
    regression_case('focal_eiou', 'detloss_plugin.FocalEIoULoss', 'focal_eiou_loss',
                    'focal_eiou', note='no peer'),
    regression_case('focal_eiou (detach_weight=True)', 'detloss_plugin.FocalEIoULoss',
                    'focal_eiou_loss', 'focal_eiou', _kw(detach_weight=True), note='no peer'),
]

NMS_CASES = [
    Case('nms', 'DIoU-NMS vs plain NMS (thr 0.5)', NMS_SIZES, NMS_QUICK, detections, [
        nms_contender('detloss diou_nms_mmcv', _detloss_diou_nms_mmcv, envs=(MAIN,), ref=True),
        nms_contender('detloss diou_nms', _detloss_diou_nms, envs=(MAIN, TV)),
        nms_contender('detloss diou_nms (torch backend)', lambda: _detloss_diou_nms('torch'),
                      envs=(MAIN,), max_n=10000),
        nms_contender('mmcv.ops.nms', _mmcv_nms, envs=(MAIN,)),
        nms_contender('torchvision.ops.nms', _torchvision_nms, envs=(TV,)),
    ], memory=False, note='detloss runs DIoU-NMS (beta 1); the peers run plain IoU NMS'),
]


# ---- classification -----------------------------------------------------------------

NUM_CLASSES = 80
CLS_SIZES, CLS_QUICK = [2 ** 14, 2 ** 16, 2 ** 17], [2 ** 10, 2 ** 12]


def dense_scores(n: int, device: torch.device, seed: int = 0) -> dict:
    """What a RetinaNet head hands to ``loss_cls`` for ``n`` anchors (all FPN levels of
    a batch): ``Tensor[n, 80]`` logits around the prior-probability bias of RetinaNet's
    initialisation (-log(99): N(-4.6, 1.5)), ~1% positive anchors (label in [0, 80),
    their class logit raised by 3), the others background (label 80), ~5% of the
    anchors ignored (label weight 0, as the assigner's IoU band between the negative and
    positive thresholds), and ``avg_factor`` = number of positives. ``onehot`` holds the
    0/1 targets for the functional contenders (built outside the timed call)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, NUM_CLASSES, generator=g) * 1.5 - math.log(99)
    labels = torch.full((n,), NUM_CLASSES, dtype=torch.int64)
    pos = torch.rand(n, generator=g) < 0.01
    pos[0] = True
    labels[pos] = torch.randint(0, NUM_CLASSES, (int(pos.sum()),), generator=g)
    rows = pos.nonzero().squeeze(1)
    logits[rows, labels[rows]] += 3.0
    weight = (torch.rand(n, generator=g) > 0.05).float()
    onehot = (labels.unsqueeze(1) == torch.arange(NUM_CLASSES)).float()

    def describe(fn):
        return dict(loss=float(fn()))
    return dict(pred=logits.to(device).requires_grad_(), target=labels.to(device),
                weight=weight.to(device), avg_factor=float(pos.sum()),
                onehot=onehot.to(device), describe=describe)


def _cls_step(build_loss):
    """A classification contender: ``build_loss(inputs)`` returns ``f(logits) ->
    scalar``; each timed call is that forward and a backward into the logits."""
    def build(inputs):
        loss_of, pred = build_loss(inputs), inputs['pred']

        def step():
            pred.grad = None
            loss = loss_of(pred)
            loss.backward()
            return loss.detach()
        return step
    return build


def cls_module_contender(label, registry, type_name, ref=False, ghm=False, **cfg):
    """A registered ``loss_cls`` called as mmdet's dense heads call it:
    ``(cls_score, labels, label_weights, avg_factor=num_pos)``; mmdet's ``GHMC`` takes
    the label weights as its third positional argument and ignores ``avg_factor``."""
    def build_loss(inputs):
        module = registry().build(dict(type=type_name, **cfg))
        labels, weight, avg = inputs['target'], inputs['weight'], inputs['avg_factor']
        if ghm:
            return lambda p: module(p, labels, weight)
        return lambda p: module(p, labels, weight, avg_factor=avg)
    return Contender(label, _cls_step(build_loss), ref=ref)


def focal_function_contender(label, envs, ref=False, fast=True, torchvision=False):
    """The element-wise sigmoid focal loss on 0/1 targets with the head's weighted mean
    (``(FL * w[:, None]).sum() / avg_factor``): detloss's function, or torchvision's
    ``sigmoid_focal_loss`` (alpha 0.25, gamma 2)."""
    def build_loss(inputs):
        if torchvision:
            from torchvision.ops import sigmoid_focal_loss as fn
            kw = dict(alpha=0.25, gamma=2.0, reduction='none')
        else:
            fn = detloss_functional().sigmoid_focal_loss
            kw = dict(alpha=0.25, gamma=2.0, fast=fast)
        t, w, avg = inputs['onehot'], inputs['weight'].unsqueeze(1), inputs['avg_factor']
        return lambda p: (fn(p, t, **kw) * w).sum() / avg
    return Contender(label, _cls_step(build_loss), envs=envs, ref=ref)


def ghmc_function_contender(label, bins, momentum, fast):
    """detloss's functional GHM-C with what its module adds (moving average kept
    between calls, ``sum / N``)."""
    def build_loss(inputs):
        fn = detloss_functional().ghmc_loss
        t, valid = inputs['onehot'], (inputs['weight'] > 0).unsqueeze(1).expand_as(
            inputs['onehot'])
        state = [torch.zeros(bins)]

        def loss_of(p):
            loss, total, acc = fn(p, t, valid, bins, momentum,
                                  state[0] if momentum else None, fast=fast)
            if acc is not None:
                state[0] = acc
            return loss.sum() / total
        return loss_of
    return Contender(label, _cls_step(build_loss))


def ghmc_case(bins, momentum, note):
    cfg = dict(bins=bins, momentum=momentum, use_sigmoid=True, loss_weight=1.0)
    return Case('classification', f'ghm-c (bins={bins}, momentum={momentum})', CLS_SIZES,
                CLS_QUICK, dense_scores, [
                    cls_module_contender('detloss', detloss_models, 'detloss_plugin.GHMC',
                                         ref=True, ghm=True, **cfg),
                    ghmc_function_contender('detloss plain', bins, momentum, fast=False),
                    cls_module_contender('mmdet 3.3.0', mmdet_models, 'GHMC', ghm=True, **cfg),
                ], note=note, count_syncs=True)


CLASSIFICATION = [
    Case('classification', 'sigmoid focal (alpha 0.25, gamma 2)', CLS_SIZES, CLS_QUICK,
         dense_scores, [
             cls_module_contender('detloss', detloss_models, 'detloss_plugin.FocalLoss',
                                  ref=True, use_sigmoid=True, gamma=2.0, alpha=0.25),
             focal_function_contender('detloss function', envs=(MAIN,)),
             focal_function_contender('detloss plain', envs=(MAIN,), fast=False),
             cls_module_contender('mmdet 3.3.0', mmdet_models, 'FocalLoss', use_sigmoid=True,
                                  gamma=2.0, alpha=0.25),
             focal_function_contender('detloss function', envs=(TV,), ref=True),
             focal_function_contender('torchvision', envs=(TV,), torchvision=True),
         ], count_syncs=True,
         note='n = anchors, x 80 classes; modules (detloss, mmdet) take integer labels, '
              "the functions 0/1 targets; mmdet's CPU path is py_sigmoid_focal_loss "
              '(its GPU path, an mmcv CUDA kernel, is not measured here)'),
    ghmc_case(10, 0.0, "mmdet's class defaults"),
    ghmc_case(30, 0.75, "mmdet's configs/ghm (RetinaNet) setting"),
]

# ---- the loss inside a training step ------------------------------------------------

RETINANET_CONFIG = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
STEP_SIZES, STEP_QUICK = [320], [64]
_DETECTORS: Dict[str, object] = {}


def retinanet(device: torch.device):
    """The stock RetinaNet R50-FPN of mmdet's config (pretrained weights off,
    ``init_weights()`` as the Runner calls it), built once per process and device, in
    training mode, with an SGD optimizer at learning rate 0 (a full optimizer step, but
    the weights stay put, so every timed step sees the same model)."""
    key = str(device)
    if key not in _DETECTORS:
        import logging
        from mmengine.config import Config
        from mmengine.registry import DefaultScope
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
        import detloss_plugin  # noqa: F401
        register_all_modules(init_default_scope=False)
        with tempfile.TemporaryDirectory() as tmp:   # 'mmdet::' resolves in _base_ only
            path = Path(tmp) / 'retinanet.py'
            path.write_text(f"_base_ = '{RETINANET_CONFIG}'\n")
            cfg = Config.fromfile(str(path))
        cfg.model.backbone.init_cfg = None
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(cfg.model)
        from mmengine.logging import MMLogger
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)  # init_weights' report of every parameter
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
        model.to(device).train()
        optim = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
        _DETECTORS[key] = (model, optim)
    return _DETECTORS[key]


def detector_batch(size: int, device: torch.device, seed: int = 0) -> dict:
    """Two ``size x size`` random images with 3 random boxes each (mmdet's
    ``demo_mm_inputs``, seeded), for :func:`retinanet`."""
    from mmdet.testing import demo_mm_inputs
    model, optim = retinanet(device)
    torch.manual_seed(seed)
    batch = demo_mm_inputs(batch_size=2, image_shapes=[(3, size, size)] * 2,
                           num_items=[3, 3], num_classes=NUM_CLASSES, with_mask=False)

    def describe(fn):
        return {k: float(v.detach()) for k, v in fn().items()}
    return dict(model=model, optim=optim, batch=batch, describe=describe)


def step_contender(label, loss_cls, loss_bbox, reg_decoded_bbox=False, ref=False):
    """One training iteration of :func:`retinanet` with these losses swapped into its
    head (``(registry, cfg)`` pairs; the registries' ``build``): data preprocessing,
    forward with the loss, ``parse_losses``, backward, optimizer step."""
    def build(inputs):
        model, optim, batch = inputs['model'], inputs['optim'], inputs['batch']
        head = model.bbox_head
        device = next(model.parameters()).device
        losses = [registry().build(cfg).to(device) for registry, cfg in (loss_cls, loss_bbox)]

        def step():
            head.loss_cls, head.loss_bbox = losses
            head.reg_decoded_bbox = reg_decoded_bbox
            data = model.data_preprocessor(batch, True)
            total, log_vars = model.parse_losses(model(**data, mode='loss'))
            optim.zero_grad()
            total.backward()
            optim.step()
            return log_vars
        return step
    return Contender(label, build, ref=ref)


def step_case(name, detloss_losses, mmdet_losses, reg_decoded_bbox=False, note=''):
    return Case('train-step', name, STEP_SIZES, STEP_QUICK, detector_batch, [
        step_contender('detloss', *detloss_losses, reg_decoded_bbox, ref=True),
        step_contender('mmdet 3.3.0', *mmdet_losses, reg_decoded_bbox),
    ], memory=False, min_reps=11, max_reps=15, note=note)


_FOCAL = dict(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
_L1 = (mmdet_models, dict(type='L1Loss', loss_weight=1.0))          # the config's loss_bbox
_GHMC = dict(use_sigmoid=True, bins=30, momentum=0.75, loss_weight=1.0)
TRAIN_STEP = [
    step_case('retinanet r50: focal (loss_cls)',
              [(detloss_models, dict(type='detloss_plugin.FocalLoss', **_FOCAL)), _L1],
              [(mmdet_models, dict(type='FocalLoss', **_FOCAL)), _L1],
              note="the stock config; loss_bbox: mmdet's L1Loss in both"),
    step_case('retinanet r50: giou (loss_bbox)',
              [(mmdet_models, dict(type='FocalLoss', **_FOCAL)),
               (detloss_models, dict(type='detloss_plugin.GIoULoss', loss_weight=2.0))],
              [(mmdet_models, dict(type='FocalLoss', **_FOCAL)),
               (mmdet_models, dict(type='GIoULoss', loss_weight=2.0))],
              reg_decoded_bbox=True,
              note="reg_decoded_bbox=True (mmdet's retinanet giou config); loss_cls: "
                   "mmdet's FocalLoss in both"),
    step_case('retinanet r50: ghm-c (loss_cls)',
              [(detloss_models, dict(type='detloss_plugin.GHMC', **_GHMC)), _L1],
              [(mmdet_models, dict(type='GHMC', **_GHMC)), _L1],
              note="bins 30, momentum 0.75 (mmdet's configs/ghm); loss_bbox: mmdet's L1Loss"),
]

CASES: List[Case] = REGRESSION + NMS_CASES + CLASSIFICATION + TRAIN_STEP
# In the tv environment the reference of the NMS case is detloss's diou_nms (the mmcv
# adapter needs mmengine); it is marked there at run time.


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------

def machine_info(env: str = MAIN) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    info = dict(cpu=cpu, logical_cpus=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(),
                platform=platform.platform())
    if hasattr(os, 'getloadavg'):
        info['load_avg_1_5_15'] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(0)
    for mod in ('mmdet', 'mmcv', 'mmengine') if env == MAIN else ('torchvision',):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except Exception as err:  # noqa: BLE001 (reported, not fatal)
            info[mod] = f'unavailable ({type(err).__name__})'
    return info


def _fmt_ms(ms):
    return f'{ms:.3g}' if ms < 100 else f'{ms:.0f}'


def _fmt_mb(b):
    return f'{b / 2 ** 20:.3g}'


def ratios(rows: List[dict]) -> None:
    """Add ``speed_ratio`` (peer time / detloss time) and ``memory_ratio`` (detloss
    peak / peer peak) against the reference of the same case, size, device and env."""
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        groups.setdefault((r['case'], r['n'], r['device'], r['env']), []).append(r)
    for group in groups.values():
        ref = next((r for r in group if r.get('ref') and r.get('status') == 'ok'), None)
        for r in group:
            if ref is None or r is ref or r.get('status') != 'ok':
                continue
            r['speed_ratio'] = r['median_ms'] / ref['median_ms']
            if 'peak_bytes' in r and 'peak_bytes' in ref and r['peak_bytes'] > 0:
                r['memory_ratio'] = ref['peak_bytes'] / r['peak_bytes']


def markdown(rows: List[dict], cases: List[Case]) -> str:
    """One table per group: a row per case and size, a column per contender (and
    environment). Cells: median time (ratio to detloss's time: > 1 means detloss is
    faster); peak memory (ratio detloss / contender: < 1 means detloss needs less)."""
    out = []
    for group in dict.fromkeys(c.group for c in cases):
        group_rows = [r for r in rows if r['group'] == group]
        if not group_rows:
            continue
        labels = list(dict.fromkeys((r['contender'], r['env']) for r in group_rows))
        head = ['case', 'n', 'device'] + [lab if env == MAIN else f'{lab} [{env} env]'
                                          for lab, env in labels]
        out += [f'\n#### {group}\n', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for case in (c for c in cases if c.group == group):
            case_rows = [r for r in group_rows if r['case'] == case.name]
            for n, dev in sorted({(r['n'], r['device']) for r in case_rows}):
                size = _fmt_size(group, n)
                cells = [case.name, size, dev]
                for lab, env in labels:
                    cells.append(_cell(next((x for x in case_rows if x['n'] == n and
                                             x['device'] == dev and x['contender'] == lab
                                             and x['env'] == env), None)))
                out.append('| ' + ' | '.join(cells) + ' |')
        notes = [f'{c.name}: {c.note}' for c in cases if c.group == group and c.note]
        if notes:
            out += [''] + [f'- {note}' for note in notes]
    return '\n'.join(out) + '\n'


def _fmt_size(group: str, n: int) -> str:
    if group == 'nms':
        return f'{n}'
    if group == 'train-step':
        return f'{n} px'
    return f'2^{int(math.log2(n))}'


def _cell(r) -> str:
    if r is None:
        return '—'
    if r['status'] != 'ok':
        return r['status'].split(':')[0]
    if r.get('ref'):
        text = f"**{_fmt_ms(r['median_ms'])} ms**"
    else:
        text = f"{_fmt_ms(r['median_ms'])} ms"
    if 'speed_ratio' in r:
        text += f" ({r['speed_ratio']:.2f}x)"
    if 'peak_bytes' in r:
        text += f"; {_fmt_mb(r['peak_bytes'])} MB"
        if 'memory_ratio' in r:
            text += f" ({r['memory_ratio']:.2f})"
    if 'host_syncs' in r:
        text += f"; {r['host_syncs']} sync{'s' if r['host_syncs'] != 1 else ''}"
    if 'extra' in r and 'kept' in r['extra']:
        text += f"; kept {r['extra']['kept']}"
    return text


def _ref_row(rows: List[dict], r: dict) -> Optional[dict]:
    return next((x for x in rows if x.get('ref') and x['case'] == r['case'] and x['n'] == r['n']
                 and x['device'] == r['device'] and x['env'] == r['env']), None)


def targets(rows: List[dict]) -> List[str]:
    """The issue's targets, checked on the measured ratios."""
    lines = []
    for r in rows:
        if r['group'] == 'regression' and r['n'] >= 2 ** 16 and r.get('status') == 'ok' \
                and not r.get('ref') and r['contender'] in ('mmdet 3.3.0', 'torchvision'):
            speed_ok = r['speed_ratio'] >= 2
            mem_ok = r.get('memory_ratio', 0) <= 0.5 if 'memory_ratio' in r else None
            verdict = 'met' if speed_ok and mem_ok is not False else 'NOT MET'
            mem = f", memory {r['memory_ratio']:.2f} (target <= 0.5)" if 'memory_ratio' in r else ''
            lines.append(f"{verdict:7s} {r['case']} n=2^{int(math.log2(r['n']))} {r['device']}"
                         f" vs {r['contender']}: {r['speed_ratio']:.2f}x faster (target >= 2)"
                         f'{mem}')
        if r['group'] == 'regression' and r['n'] >= 2 ** 16 and \
                r.get('status', '').startswith('MISSING') and \
                r['contender'] in ('mmdet 3.3.0', 'torchvision'):
            lines.append(f"UNCHECKED {r['case']} n=2^{int(math.log2(r['n']))} vs {r['contender']}: "
                         f"{r['status']}")
        if r['group'] == 'nms' and r['n'] == 10000 and r['contender'] == 'mmcv.ops.nms' \
                and r.get('status') == 'ok':
            slower = 1 / r['speed_ratio']
            verdict = 'met' if slower <= 1.5 else 'NOT MET'
            lines.append(f"{verdict:7s} DIoU-NMS n=10000 {r['device']}: {slower:.2f}x the time of "
                         f'mmcv.ops.nms (target <= 1.5x)')
        if r['group'] == 'classification' and r['case'].startswith('ghm-c') and \
                r['n'] >= 2 ** 16 and r['contender'] == 'mmdet 3.3.0':
            where = f"{r['case']} n=2^{int(math.log2(r['n']))} {r['device']}"
            if r.get('status') != 'ok':
                lines.append(f"UNCHECKED GHM-C {where}: {r.get('status')}")
                continue
            ref = _ref_row(rows, r)
            syncs = ref.get('host_syncs') if ref else None
            ok = r['speed_ratio'] >= 3 and syncs == 0
            lines.append(f"{'met' if ok else 'NOT MET':7s} GHM-C {where}: {r['speed_ratio']:.2f}x "
                         f"faster than mmdet's GHMC (target >= 3), {syncs} host syncs "
                         f"(mmdet: {r.get('host_syncs')}; target 0)")
        if r['group'] == 'train-step' and r['contender'] == 'mmdet 3.3.0':
            where = f"{r['case']} {r['n']} px {r['device']}"
            if r.get('status') != 'ok':
                lines.append(f"UNCHECKED train step {where}: {r.get('status')}")
                continue
            added = 1 / r['speed_ratio'] - 1
            lines.append(f"{'met' if added <= 0.03 else 'NOT MET':7s} train step {where}: "
                         f"detloss {100 * added:+.1f}% vs mmdet (target <= +3%)")
    return lines


# ---------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------

def selected_cases(args) -> List[Case]:
    cases = CASES
    if args.group:
        cases = [c for c in cases if c.group in args.group]
    if args.only:
        cases = [c for c in cases if any(o.lower() in c.name.lower() for o in args.only)]
    return cases


def devices(args) -> List[torch.device]:
    if args.device == 'cpu':
        return [torch.device('cpu')]
    if args.device == 'cuda':
        return [torch.device('cuda')]
    return [torch.device('cpu')] + ([torch.device('cuda')] if torch.cuda.is_available() else [])


def run_env(args, env: str) -> List[dict]:
    rows = []
    budget, min_reps, max_reps = (0.6, 3, 15) if args.quick else (args.budget, 7, 61)
    for case in selected_cases(args):
        if env == TV:  # the mmcv adapter is not importable there: diou_nms is the ref
            for c in case.contenders:
                if c.label == 'detloss diou_nms':
                    c.ref = True
        for device in devices(args):
            for n in (case.quick_sizes if args.quick else case.sizes):
                if not any(env in c.envs for c in case.contenders):
                    continue
                t0 = time.perf_counter()
                case_rows = run_case(case, n, device, env, budget, min_reps, max_reps,
                                     case_reps=not args.quick)
                rows += case_rows
                if not args.worker:
                    print(f'  {case.name} n={n} {device.type} [{env}] '
                          f'({time.perf_counter() - t0:.1f} s)', flush=True)
    return rows


def run_torchvision_worker(args) -> List[dict]:
    """The torchvision contenders, in the second environment (a subprocess)."""
    tv_python = args.tv_python
    wanted = [c for case in selected_cases(args) for c in case.contenders if TV in c.envs
              and c.label.startswith('torchvision')]
    if not wanted:
        return []
    reason = None
    if tv_python == 'none':
        reason = 'disabled with --tv-python none'
    elif not Path(tv_python).exists():
        reason = (f'no python at {tv_python} (create it: python3.11 -m venv .venv-tv && '
                  '.venv-tv/bin/pip install torch==2.14.1 torchvision==0.29.1)')
    rows = []
    if reason is None:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / 'tv.json'
            cmd = [tv_python, str(Path(__file__).resolve()), '--worker', '--json-out', str(out)]
            for flag in ('only', 'group'):
                for value in getattr(args, flag) or []:
                    cmd += [f'--{flag}', value]
            cmd += ['--device', args.device, '--budget', str(args.budget)]
            if args.quick:
                cmd.append('--quick')
            if args.threads:
                cmd += ['--threads', str(args.threads)]
            print(f'  running the torchvision environment: {tv_python}', flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if proc.returncode != 0 or not out.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                reason = f'worker failed (exit {proc.returncode}): ' + ' | '.join(tail)
            else:
                data = json.loads(out.read_text())
                rows, args.tv_machine = data['rows'], data['machine']
                print(f"  torchvision environment: torch {data['machine']['torch']}, "
                      f"torchvision {data['machine'].get('torchvision')}", flush=True)
    if reason is not None:
        print(f'\n!! torchvision peer MISSING: {reason}\n', flush=True)
        for case in selected_cases(args):
            for c in case.contenders:
                if TV in c.envs and c.label.startswith('torchvision'):
                    for n in (case.quick_sizes if args.quick else case.sizes):
                        rows.append(dict(group=case.group, case=case.name, n=n, device='cpu',
                                         env=TV, contender=c.label, ref=False,
                                         status=f'MISSING: {reason}'))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='small sizes and few repetitions (a smoke run)')
    parser.add_argument('--only', action='append', help='cases whose name contains this')
    parser.add_argument('--group', '--suite', action='append',
                        choices=['regression', 'nms', 'classification', 'train-step'],
                        help='run only this group of cases (repeatable)')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--threads', type=int, default=0,
                        help='torch intra-op threads (default: torch\'s default)')
    parser.add_argument('--budget', type=float, default=4.0,
                        help='seconds of timed calls per case and size (full run)')
    parser.add_argument('--tv-python', default=os.environ.get('DETLOSS_TV_PYTHON',
                                                                str(DEFAULT_TV_PYTHON)),
                        help="python of the torchvision environment, or 'none'")
    parser.add_argument('--out', default=None,
                        help='JSON file for the raw numbers (default: '
                             'benchmark_results/<device>[-quick].json)')
    parser.add_argument('--markdown', default=None, help='also write the tables here')
    parser.add_argument('--report', default=None, metavar='JSON',
                        help='print (and with --markdown write) the tables of a saved run '
                             'instead of running')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--json-out', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.report:
        data = json.loads(Path(args.report).read_text())
        md = markdown(data['rows'], CASES)
        print(md)
        if args.markdown:
            Path(args.markdown).write_text(_markdown_file(md, data['targets'], data))
        return 0

    if args.worker:   # inside the torchvision environment
        rows = run_env(args, TV)
        Path(args.json_out).write_text(json.dumps(dict(rows=rows, machine=machine_info(TV))))
        return 0

    info = machine_info()
    print('detloss benchmark')
    for k, v in info.items():
        print(f'  {k}: {v}')
    print(f'  torchvision: in a second environment ({args.tv_python})')
    print('  note: shared machine; contenders are interleaved, medians reported', flush=True)
    started = time.strftime('%Y-%m-%d %H:%M:%S')
    rows = run_env(args, MAIN)
    rows += run_torchvision_worker(args)
    ratios(rows)
    info['load_avg_end'] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, 'getloadavg') else None
    md = markdown(rows, selected_cases(args))
    check = targets(rows)
    print(md)
    print('Targets:')
    for line in check or ['(no target applies to the selected cases)']:
        print('  ' + line)
    device_tag = '-'.join(d.type for d in devices(args))
    out = Path(args.out) if args.out else \
        REPO / 'benchmark_results' / f"{device_tag}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(
        started=started, machine=info, torchvision_machine=getattr(args, 'tv_machine', None),
        args={k: v for k, v in vars(args).items() if k not in ('worker', 'json_out',
                                                                'tv_machine')},
        note='shared machine: other jobs ran at the same time; contenders interleaved',
        targets=check, rows=rows), indent=1))
    print(f'raw numbers: {out}')
    if args.markdown:
        Path(args.markdown).write_text(_markdown_file(md, check, json.loads(out.read_text())))
    return 0


def _markdown_file(md: str, check: List[str], data: dict) -> str:
    m = data['machine']
    tv = data.get('torchvision_machine') or {}
    head = (f"Run of {data['started']}: {m['cpu']}, {m['logical_cpus']} logical CPUs, "
            f"{m['torch_threads']} torch thread(s), torch {m['torch']}, mmdet "
            f"{m.get('mmdet')}, mmcv {m.get('mmcv')}; torchvision environment: torch "
            f"{tv.get('torch', 'n/a')}, torchvision {tv.get('torchvision', 'n/a')}; load "
            f"average {m.get('load_avg_1_5_15')} at the start (shared machine).\n")
    return head + md + '\nTargets:\n\n' + '\n'.join(f'- {x}' for x in check) + '\n'


if __name__ == '__main__':
    sys.exit(main())
