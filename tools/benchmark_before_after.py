"""Two checkouts of detloss side by side in one run: the element-wise losses' forward +
backward (detloss eager and under ``torch.compile``, mmdet, torchvision) and a training
step of the quick-start RetinaNet with each loss against mmdet's.

    python tools/benchmark_before_after.py --before /tmp/before [--after .] \\
        [--rounds 3] [--out benchmark_results/before-after.json]

Each measurement runs in a fresh subprocess whose ``PYTHONPATH`` starts with the
checkout (so ``detloss_plugin`` is that checkout's; the worker checks it), with one
thread (``OMP_NUM_THREADS=1``). The two checkouts alternate, round after round, so that
the drift of a shared machine hits both alike; each cell is the median over the rounds
of each round's median. mmdet's numbers are measured in both workers: they are the
control (the two columns differ only by noise there). The load average is recorded.

Cases: GIoU and gated CIoU on 2^16 box pairs (a per-box weight, ``avg_factor``,
``backward()`` into the predictions), the sigmoid focal loss and GHM-C (30 bins,
momentum 0.75) on 2^14 anchors x 80 classes; then one iteration (forward with the
losses, backward, SGD step at learning rate 0) of the quick-start RetinaNet
(``configs/quickstart/_base_/retinanet_r18-slim_synthetic.py``: 16 images of 128 x 128
px, 4 classes, 3 boxes each) with loss_bbox / loss_cls swapped; the detloss and the mmdet
model alternate step by step, and ``detloss / mmdet (paired)`` is the median of the
ratios of neighbouring steps, which cancels most of the machine's drift.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
QUICKSTART = 'configs/quickstart/_base_/retinanet_r18-slim_synthetic.py'


# ---- the worker: runs inside one checkout ------------------------------------------------

def _boxes(n, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * torch.tensor([1333.0, 800.0])
    side = torch.exp(torch.rand(n, 2, generator=g) * math.log(32) + math.log(16))
    target = torch.cat([centre - side / 2, centre + side / 2], 1)
    pc = centre + torch.randn(n, 2, generator=g) * 0.2 * side
    ps = side * torch.exp(torch.randn(n, 2, generator=g) * 0.3)
    pred = torch.cat([pc - ps / 2, pc + ps / 2], 1).requires_grad_()
    return pred, target, torch.rand(n, generator=g), n / 4


def _scores(n, classes=80, seed=0):
    import torch
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, classes, generator=g) * 1.5 - math.log(99)).requires_grad_()
    labels = torch.full((n,), classes, dtype=torch.int64)
    pos = torch.rand(n, generator=g) < 0.01
    labels[pos] = torch.randint(0, classes, (int(pos.sum()),), generator=g)
    weight = (torch.rand(n, generator=g) > 0.05).float()
    return logits, labels, weight, float(pos.sum())


LOSS_CASES = {
    # name: (inputs, detloss cfg, mmdet cfg, torchvision function or None)
    'giou': ('boxes', dict(type='GIoULoss'), dict(type='GIoULoss'), 'generalized_box_iou_loss'),
    'ciou (alpha_gate)': ('boxes', dict(type='CIoULoss', alpha_gate=True),
                          dict(type='CIoULoss'), None),
    'sigmoid focal': ('scores', dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25),
                      dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25),
                      'sigmoid_focal_loss'),
    'ghm-c (30 bins, momentum 0.75)': ('scores', dict(type='GHMC', bins=30, momentum=0.75),
                                       dict(type='GHMC', bins=30, momentum=0.75), None),
}


def _loss_fns(kind, det_cfg, mm_cfg, tv_name):
    """contender -> (step function, inputs)."""
    import torch
    from mmdet.registry import MODELS as MMDET
    from detloss_plugin.registry import MODELS
    inputs = _boxes(2 ** 16) if kind == 'boxes' else _scores(2 ** 14)
    x, target, weight, avg = inputs
    det = MODELS.build(dict(det_cfg, type='detloss_plugin.' + det_cfg['type']))
    mm = MMDET.build(dict(mm_cfg))
    if det_cfg['type'] == 'GHMC':
        calls = {'detloss': lambda p: det(p, target, weight),
                 'mmdet': lambda p: mm(p, target, weight)}
    else:
        calls = {'detloss': lambda p: det(p, target, weight, avg_factor=avg),
                 'mmdet': lambda p: mm(p, target, weight, avg_factor=avg)}
    calls['detloss compiled'] = torch.compile(calls['detloss'], fullgraph=True)
    if tv_name is not None:
        try:
            import torchvision.ops
            fn = getattr(torchvision.ops, tv_name)
            if kind == 'boxes':
                calls['torchvision'] = lambda p: (fn(p, target, reduction='none')
                                                  * weight).sum() / avg
            else:
                onehot = (target.unsqueeze(1) == torch.arange(80)).float()
                calls['torchvision'] = lambda p: (fn(p, onehot, 0.25, 2.0, reduction='none')
                                                  * weight[:, None]).sum() / avg
        except ImportError:
            calls['torchvision'] = None
    return calls, x


def _time(step, min_run_time):
    from torch.utils.benchmark import Timer
    step()
    step()   # warm-up (compilation for the compiled contender)
    return Timer('step()', globals={'step': step}).blocked_autorange(
        min_run_time=min_run_time).median


def _measure_losses(out, min_run_time):
    for name, (kind, det_cfg, mm_cfg, tv) in LOSS_CASES.items():
        calls, x = _loss_fns(kind, det_cfg, mm_cfg, tv)
        for contender, fn in calls.items():
            key = f'loss | {name} | {contender}'
            if fn is None:
                out[key] = 'MISSING (not importable)'
                continue

            def step(fn=fn):
                x.grad = None
                fn(x).backward()
            try:
                out[key] = _time(step, min_run_time)
            except Exception as err:  # noqa: BLE001  (recorded: the old fast path)
                out[key] = f'FAILED ({type(err).__name__}: {str(err).splitlines()[0][:120]})'


TRAIN_CASES = {
    # name: (detloss head overrides, mmdet head overrides)
    'giou (loss_bbox)': (dict(reg_decoded_bbox=True, loss_bbox=dict(
        type='detloss_plugin.GIoULoss', loss_weight=2.0)),
        dict(reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=2.0))),
    'ciou (loss_bbox)': (dict(reg_decoded_bbox=True, loss_bbox=dict(
        type='detloss_plugin.CIoULoss', alpha_gate=True, loss_weight=2.0)),
        dict(reg_decoded_bbox=True, loss_bbox=dict(type='CIoULoss', loss_weight=2.0))),
    'focal (loss_cls)': (dict(loss_cls=dict(type='detloss_plugin.FocalLoss', use_sigmoid=True,
                                            gamma=2.0, alpha=0.25, loss_weight=1.0)),
                         dict(loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                            alpha=0.25, loss_weight=1.0))),
    'ghm-c (loss_cls)': (dict(loss_cls=dict(type='detloss_plugin.GHMC', use_sigmoid=True,
                                            bins=30, momentum=0.75, loss_weight=1.0)),
                         dict(loss_cls=dict(type='GHMC', use_sigmoid=True, bins=30,
                                            momentum=0.75, loss_weight=1.0))),
}


def _measure_train_steps(out, checkout, steps):
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(str(Path(checkout) / QUICKSTART))
    torch.manual_seed(0)
    batch = demo_mm_inputs(batch_size=16, image_shapes=[(3, 128, 128)] * 16,
                           num_items=[3] * 16, num_classes=4, with_mask=False)
    for name, variants in TRAIN_CASES.items():
        steps_of = {}
        for contender, head in zip(('detloss', 'mmdet'), variants):
            model_cfg = cfg.model.copy()
            model_cfg.bbox_head = dict(cfg.model.bbox_head, **head)
            torch.manual_seed(0)
            with DefaultScope.overwrite_default_scope('mmdet'):
                model = MODELS.build(model_cfg)
            model.train()
            optim = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)

            def step(model=model, optim=optim):
                data = model.data_preprocessor(batch, True)
                total, _ = model.parse_losses(model(**data, mode='loss'))
                optim.zero_grad()
                total.backward()
                optim.step()
            for _ in range(2):
                step()
            steps_of[contender] = step
        # the two models alternate step by step: each pair of steps sees the same load
        times = {c: [] for c in steps_of}
        for _ in range(steps):
            for contender, step in steps_of.items():
                t0 = time.perf_counter()
                step()
                times[contender].append(time.perf_counter() - t0)
        for contender, ts in times.items():
            out[f'train step | {name} | {contender}'] = statistics.median(ts)
        out[f'train step | {name} | detloss / mmdet (paired)'] = statistics.median(
            d / m for d, m in zip(times['detloss'], times['mmdet']))


def worker(checkout, what, min_run_time, steps):
    import torch
    torch.set_num_threads(1)
    import detloss_plugin
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    where = Path(detloss_plugin.__file__).resolve()
    if Path(checkout).resolve() not in where.parents:
        raise SystemExit(f'detloss_plugin came from {where}, not from {checkout}')
    out = {}
    if 'losses' in what:
        _measure_losses(out, min_run_time)
    if 'train' in what:
        _measure_train_steps(out, checkout, steps)
    print('RESULT ' + json.dumps(out))


# ---- the parent: alternates the checkouts ----------------------------------------------

def _run_worker(checkout, args):
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([str(checkout), os.environ.get('PYTHONPATH', '')]))
    cmd = [sys.executable, str(HERE), '--worker', str(checkout), '--what', *args.what,
           '--min-run-time', str(args.min_run_time), '--steps', str(args.steps)]
    proc = subprocess.run(cmd, env=env, cwd=str(checkout), capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f'worker in {checkout} failed:\n{proc.stderr[-3000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def _fmt(v, ratio=False):
    if isinstance(v, float) and ratio:
        return f'{v:.3f}'
    if isinstance(v, float):
        return f'{v * 1e3:.1f} ms' if v < 1 else f'{v:.2f} s'
    return v


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--before', required=False)
    parser.add_argument('--after', default='.')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--what', nargs='+', default=['losses', 'train'],
                        choices=['losses', 'train'])
    parser.add_argument('--min-run-time', type=float, default=0.5)
    parser.add_argument('--steps', type=int, default=8,
                        help='timed training steps per contender and round')
    parser.add_argument('--out', default=None)
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.what, args.min_run_time, args.steps)
    checkouts = {'before': Path(args.before).resolve(), 'after': Path(args.after).resolve()}
    loads = [os.getloadavg()]
    rounds = {name: [] for name in checkouts}
    for r in range(args.rounds):
        order = list(checkouts) if r % 2 == 0 else list(checkouts)[::-1]
        for name in order:
            rounds[name].append(_run_worker(checkouts[name], args))
            loads.append(os.getloadavg())
            print(f'[before_after] round {r + 1}/{args.rounds} {name} done, load '
                  f'{loads[-1][0]:.1f}', flush=True)
    table = {}
    for name, results in rounds.items():
        for key in results[0]:
            values = [res[key] for res in results]
            table.setdefault(key, {})[name] = (statistics.median(values)
                                               if all(isinstance(v, float) for v in values)
                                               else values[0])
    lines = ['| what | case | contender | before | after | after / before |', '|---|---|---|---|---|---|']
    for key, cells in table.items():
        what, case, contender = key.split(' | ')
        b, a = cells.get('before'), cells.get('after')
        ratio = f'{a / b:.2f}' if isinstance(a, float) and isinstance(b, float) else '—'
        paired = '/' in contender
        lines.append(f'| {what} | {case} | {contender} | {_fmt(b, paired)} | {_fmt(a, paired)} '
                     f'| {ratio} |')
    load1 = [la[0] for la in loads]
    lines.append('')
    lines.append(f'load average (1 min) during the run: {min(load1):.1f} to {max(load1):.1f}; '
                 f'{os.cpu_count()} CPUs; {args.rounds} rounds, one thread')
    print('\n'.join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(dict(table=table, rounds=rounds, loads=loads,
                                                  checkouts={k: str(v) for k, v in
                                                             checkouts.items()},
                                                  markdown=lines), indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
