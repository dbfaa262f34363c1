"""Model-level benchmark: N training iterations of a detector from a config, in the
spirit of mmdet's ``tools/analysis_tools/benchmark.py`` (which times inference).

    python -m tools.benchmark --suite model [--device cuda] [--threads 4] [--quick] -- \\
        [CONFIG] [--cfg-options KEY=VALUE ...] [--vs-cfg-options KEY=VALUE ...] \\
        [--iters 20] [--warmup 5] [--amp]

``CONFIG`` (default: the quick-start RetinaNet with GIoU,
``configs/quickstart/retinanet_r18-slim_giou_synthetic.py``, on the synthetic dataset)
is built as ``tools/train.py`` builds it; ``--cfg-options`` changes it (e.g. swaps the
loss: ``model.bbox_head.loss_bbox.type=detloss_plugin.DIoULoss``); ``--vs-cfg-options``
measures a second variant in the same process (e.g. mmdet's loss,
``model.bbox_head.loss_bbox.type=GIoULoss``), side by side. For each variant, after
``--warmup`` iterations: the time of each of ``--iters`` iterations (data loading
excluded: the batches are fetched first; one iteration is the model's ``train_step``:
preprocessing, forward, losses, backward, optimizer step), **s/iter** (median), **peak
memory** (CUDA: ``max_memory_allocated`` over the timed iterations; CPU: the process's
peak resident set size, an upper bound) and **the loss's share of an iteration**: the
inputs of every loss module of the model (sub-modules named ``loss_*``, mmdet's
convention) are captured during one iteration, and the loss modules' forward +
backward on those inputs is timed alone and divided by s/iter.

Returns one ``Measurement`` per variant (``label='model'``, ``sub_label`` = the
config, ``description`` = the loss types); ``extras`` holds s/iter, peak memory, the
loss time and share per variant.
"""
import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.benchmark import Measurement
from torch.utils.benchmark.utils.common import TaskSpec

from tools.benchmarks._common import REPO, add_common_args, device_of, short_error

DEFAULT_CONFIG = REPO / 'configs' / 'quickstart' / 'retinanet_r18-slim_giou_synthetic.py'


def parse_rest(rest):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(prog='--suite model --')
    p.add_argument('config', nargs='?', default=str(DEFAULT_CONFIG))
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    p.add_argument('--vs-cfg-options', nargs='+', action=DictAction, default=None)
    p.add_argument('--iters', type=int, default=None, help='timed iterations (20; quick 3)')
    p.add_argument('--warmup', type=int, default=None, help='untimed iterations (5; quick 1)')
    p.add_argument('--amp', action='store_true', help='AmpOptimWrapper (CUDA only)')
    return p.parse_args(rest or [])


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def build_runner(config, cfg_options, device, amp, work_dir):
    import logging
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.runner import Runner
    from detloss_plugin.engine import setup_device_and_launcher
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.default_hooks = dict(logger=dict(type='LoggerHook', interval=10 ** 9))
    cfg.custom_hooks = []
    cfg.visualizer = dict(type='Visualizer', vis_backends=[])
    cfg.log_level = 'WARNING'
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    setup_device_and_launcher(cfg, 'none')
    runner = Runner.from_cfg(cfg)
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    runner.model.to(device)
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    return cfg, runner, optim_wrapper


def loss_modules(model):
    return {name: m for name, m in model.named_modules()
            if name.split('.')[-1].startswith('loss_') and isinstance(m, torch.nn.Module)}


def _loss_types(model) -> str:
    return ', '.join(f"{name.split('.')[-1]}={type(m).__module__.split('.')[0]}."
                     f"{type(m).__name__}" for name, m in loss_modules(model).items())


def _clone(x):
    if isinstance(x, torch.Tensor):
        y = x.detach().clone()
        return y.requires_grad_() if x.requires_grad and y.is_floating_point() else y
    if isinstance(x, (list, tuple)):
        return type(x)(_clone(v) for v in x)
    if isinstance(x, dict):
        return {k: _clone(v) for k, v in x.items()}
    return x


def _scalar_sum(out):
    if isinstance(out, torch.Tensor):
        return out.float().sum()
    if isinstance(out, dict):
        return sum(_scalar_sum(v) for v in out.values())
    if isinstance(out, (list, tuple)):
        return sum(_scalar_sum(v) for v in out)
    return 0.0


def loss_time(model, optim_wrapper, batch, device, reps):
    """Seconds of the loss modules' forward + backward in one iteration, replayed on
    the inputs captured from a real iteration."""
    calls, handles = [], []
    for name, module in loss_modules(model).items():
        def hook(mod, args, kwargs, _name=name):
            calls.append((mod, _clone(args), _clone(kwargs)))
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        model.train_step(batch, optim_wrapper)
    finally:
        for h in handles:
            h.remove()
    if not calls:
        return 0.0, 0
    times = []
    for _ in range(reps):
        runs = [(mod, _clone(a), _clone(k)) for mod, a, k in calls]
        _sync(device)
        t0 = time.perf_counter()
        for mod, a, k in runs:
            out = _scalar_sum(mod(*a, **k))
            if isinstance(out, torch.Tensor) and out.requires_grad:
                out.backward()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(calls)


def measure_variant(config, cfg_options, args, opts, threads, device):
    iters = opts.iters or (3 if args.quick else 20)
    warmup = opts.warmup if opts.warmup is not None else (1 if args.quick else 5)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as work_dir:
        cfg, runner, optim_wrapper = build_runner(config, cfg_options, device, opts.amp,
                                                  work_dir)
        model = runner.model
        model.train()
        loader = runner.build_dataloader(cfg.train_dataloader)
        batches, it = [], iter(loader)
        while len(batches) < warmup + iters + 1:
            try:
                batches.append(next(it))
            except StopIteration:
                it = iter(loader)
        for b in batches[:warmup]:
            model.train_step(b, optim_wrapper)
        _sync(device)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for b in batches[warmup:warmup + iters]:
            _sync(device)
            t0 = time.perf_counter()
            model.train_step(b, optim_wrapper)
            _sync(device)
            times.append(time.perf_counter() - t0)
        if device.type == 'cuda':
            peak = dict(peak_cuda_bytes=torch.cuda.max_memory_allocated(device))
        else:
            peak = dict(peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        t_loss, n_calls = loss_time(model, optim_wrapper, batches[-1], device,
                                    reps=3 if args.quick else 10)
        s_iter = statistics.median(times)
        description = _loss_types(model)
    spec = TaskSpec(stmt='model.train_step(batch, optim_wrapper)', setup='', label='model',
                    sub_label=Path(config).stem, description=description or '(no loss_*)',
                    num_threads=threads, env='amp' if opts.amp else None)
    m = Measurement(number_per_run=1, raw_times=times, task_spec=spec,
                    metadata=dict(ref=cfg_options is opts.cfg_options, case=Path(config).stem,
                                  size='train_step', note='loss share in extras'))
    extra = dict(config=str(config), cfg_options=cfg_options, device=str(device),
                 threads=threads, iters=iters, warmup=warmup, s_per_iter=s_iter,
                 loss_s_per_iter=t_loss, loss_calls_per_iter=n_calls,
                 loss_share=t_loss / s_iter if s_iter > 0 else None, losses=description,
                 amp=opts.amp, **peak)
    return m, extra


_EXTRAS: dict = {}


def run(args):
    _EXTRAS.clear()
    device = device_of(args)
    opts = parse_rest(getattr(args, 'rest', None))
    variants = [opts.cfg_options] + ([opts.vs_cfg_options] if opts.vs_cfg_options else [])
    out = []
    for threads in args.threads:
        for options in variants:
            try:
                m, extra = measure_variant(opts.config, options, args, opts, threads, device)
            except Exception as err:   # reported, never hidden
                print(f'MISSING model {opts.config} {options}: {short_error(err)}')
                _EXTRAS.setdefault('missing', []).append(
                    dict(label='model', sub_label=Path(opts.config).stem,
                         description=str(options), reason=short_error(err)))
                continue
            out.append(m)
            _EXTRAS.setdefault('variants', []).append(extra)
            share = extra['loss_share']
            print(f"model {Path(opts.config).stem} [{extra['losses']}] {threads} thread(s): "
                  f"{extra['s_per_iter']:.4f} s/iter, loss {extra['loss_s_per_iter'] * 1e3:.2f} "
                  f"ms/iter ({share:.1%} of the iteration), peak "
                  f"{max(v for k, v in extra.items() if k.startswith('peak')) / 2**20:.0f} MB",
                  flush=True)
    return out


def extras(args) -> dict:
    """Per variant: s/iter, the loss's time and share, peak memory, the losses."""
    return dict(_EXTRAS)


if __name__ == '__main__':
    parser = add_common_args(argparse.ArgumentParser(description=__doc__))
    a, rest = parser.parse_known_args()
    a.rest = rest
    from _common import compare
    ms = run(a)
    if ms:
        compare(ms).print()
