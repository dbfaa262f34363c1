"""Validation loss for any mmdet 3.x detector, without changing its training.

Use (one line in the config)::

    val_cfg = dict(type='detloss_plugin.ValLossLoop')

Every validation then reports, beside the metrics, each term of the model's training
loss averaged over the validation set (``val/loss`` for the total, ``val/loss_cls``,
``val/loss_bbox``, ... for the terms ``model.loss()`` returns, ``val/acc`` for the RoI
head's accuracy). They go wherever the metrics go: the text log, the ``LocalVisBackend``
JSON (``<work_dir>/<timestamp>/vis_data/scalars.json``), TensorBoard or any other
backend of mmengine's visualizer, and the ``metrics`` dict that ``save_best`` and
early-stopping hooks read.

Why a loop and not a hook: the validation loop already owns the pass over the
validation data and the model's mode, so the loss of a batch is computed right after
its predictions, with no second pass over the data loader; and the losses enter the
``metrics`` dict before any ``after_val_epoch`` hook runs, so every hook (logger,
checkpoint, early stopping) sees them without depending on hook priorities. (mmengine
>= 0.10.5's ``ValLoop`` reads losses that ``val_step`` returns, but mmdet's detectors
return none.) The cost is that it replaces ``ValLoop``: it cannot be combined with
another custom validation loop.

How the loss of a batch is computed, so that training is the same with and without it
(bit for bit: tests/test_val_loss.py trains the same weights):

- the model is the unwrapped one (no DDP forward), under ``torch.no_grad()``: no
  gradient, no parameter update;
- ``mode='loss'`` needs train-time structures in some detectors (DINO's denoising
  queries are built only when ``self.training``; two-stage detectors use
  ``train_cfg.rpn_proposal`` and the RoI sampler), so the model is put in training mode,
  except normalisation layers (BN, SyncBN, InstanceNorm: their running statistics are
  used, not updated), dropout / drop-path / drop-block (off, as for the metrics) and
  every loss module (attributes named ``loss*``: detloss's GHM, Wise-IoU and Seesaw
  losses then use their state without updating it); every module's mode and every
  parameter's ``requires_grad`` are restored afterwards;
- every buffer of the model is copied before and written back after, which undoes the
  update of losses that change their state whatever the mode (mmdet's ``GHMC`` /
  ``GHMR`` moving average, ``SeesawLoss``'s class counts);
- the random state (python, numpy, torch on the CPU and every CUDA device) is saved,
  seeded with ``seed + batch_index * world_size + rank`` for the batch (the RoI
  head's random sampler and DINO's query noise then draw the same numbers in every
  validation: the value is reproducible) and restored afterwards;
- the data preprocessor runs with ``training=False`` (no batch augmentation).

Ground truth: mmdet's test pipelines load the annotations after ``Resize``
(``LoadImageFromFile, Resize, LoadAnnotations, PackDetInputs``), so the boxes are in the
original image's pixels while the image is resized. ``rescale_gt=None`` (default) reads
the validation dataset's pipeline and, when a resize comes before ``LoadAnnotations``,
multiplies the ground-truth boxes by each image's ``scale_factor``; ``True`` / ``False``
force it. A pipeline without ``LoadAnnotations`` cannot give a loss (ValueError).

Averages: each term is averaged over batches weighted by their number of images (the
last batch may be smaller). Under DDP the weighted sums and counts are summed over the
ranks (``mmengine.dist.all_reduce``), so every rank logs the mean over the whole
validation set; mmengine's ``DefaultSampler`` pads the dataset to a multiple of the
world size, so up to ``world_size - 1`` images are counted twice.

Where it cannot work: detectors whose ``loss()`` needs annotations the validation
pipeline does not load (Mask R-CNN needs ``LoadAnnotations(with_mask=True)`` placed
before ``Resize``: masks are not rescaled here), and datasets without annotations
(COCO test-dev).
"""
import contextlib
import random
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, get_dist_info
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmengine.runner.amp import autocast
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm

from detloss_plugin.registry import LOOPS

__all__ = ['ValLossLoop', 'val_losses', 'pipeline_needs_gt_rescale']

# modules kept in eval mode while the model computes its loss in training mode
_EVAL_TYPES = (_BatchNorm, _InstanceNorm, _DropoutNd)
_EVAL_NAMES = ('DropPath', 'DropBlock')  # mmcv's and mmdet's stochastic-depth layers


def _keeps_eval(name: str, module: nn.Module) -> bool:
    return (isinstance(module, _EVAL_TYPES) or type(module).__name__ in _EVAL_NAMES
            or name.rsplit('.', 1)[-1].startswith('loss'))


@contextlib.contextmanager
def _loss_mode(model: nn.Module) -> Iterator[None]:
    """Training mode for the structure, eval mode for statistics, dropout and losses;
    every module's mode and parameter's ``requires_grad`` restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    model.train()  # may also run a backbone's train() (norm_eval, frozen stages)
    for name, module in model.named_modules():
        if _keeps_eval(name, module):
            module.eval()  # and its children
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
        for param, flag in grads:
            param.requires_grad_(flag)


@contextlib.contextmanager
def _restored_buffers(model: nn.Module) -> Iterator[None]:
    """Every buffer of ``model`` as it was on entry, object and value, on exit."""
    saved = []
    for owner in model.modules():
        for key, buf in owner._buffers.items():
            if buf is not None:
                saved.append((owner, key, buf, buf.detach().clone()))
    try:
        yield
    finally:
        with torch.no_grad():
            for owner, key, buf, value in saved:
                owner._buffers[key] = buf  # a loss may have rebound the attribute
                buf.copy_(value)


@contextlib.contextmanager
def _seeded_rng(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``seed``; give
    back the previous states on exit."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _rescaled_gt(sample):
    """A copy of ``sample`` whose ground-truth (and ignored) boxes are multiplied by its
    ``scale_factor``; the original is untouched."""
    from mmdet.structures.bbox import scale_boxes
    sample = sample.clone()  # shallow: new containers below, new box tensors
    for field in ('gt_instances', 'ignored_instances'):
        if hasattr(sample, field) and 'bboxes' in getattr(sample, field):
            instances = getattr(sample, field).clone()
            instances.bboxes = scale_boxes(instances.bboxes.clone(), sample.scale_factor)
            setattr(sample, field, instances)
    return sample


def val_losses(model: nn.Module, data_batch: dict, seed: int = 0, rescale_gt: bool = False,
               fp16: bool = False) -> Dict[str, torch.Tensor]:
    """The training loss of ``model`` on ``data_batch``, every term, without changing
    the model or the random state.

    Args:
        model: an mmdet detector, or a model wrapper (DDP) around one.
        data_batch: what the validation data loader yields (``inputs`` and
            ``data_samples`` with ``gt_instances``).
        seed: seeds the random numbers that the loss draws (samplers, query noise).
        rescale_gt: multiply the ground-truth boxes by each image's ``scale_factor``
            (annotations loaded after ``Resize``; see :func:`pipeline_needs_gt_rescale`).
        fp16: under ``autocast``, as ``ValLoop(fp16=True)`` predicts.

    Returns:
        ``model.parse_losses``'s log dict: ``'loss'`` (the sum of the terms whose name
        contains ``loss``) then every entry ``model.loss()`` returns, 0-d tensors.
    """
    if is_model_wrapper(model):
        model = model.module
    samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    if not samples or not all(hasattr(s, 'gt_instances') for s in samples):
        raise ValueError('data_batch has no ground truth (data_samples[i].gt_instances): '
                         'the validation pipeline needs LoadAnnotations(with_bbox=True) '
                         'for a validation loss')
    with torch.no_grad(), _loss_mode(model), _restored_buffers(model), _seeded_rng(seed):
        data = model.data_preprocessor(data_batch, False)
        if rescale_gt:
            data['data_samples'] = [_rescaled_gt(s) for s in data['data_samples']]
        with autocast(enabled=fp16):
            losses = model(**data, mode='loss')
        _, log_vars = model.parse_losses(losses)
    return {k: v.detach().float() for k, v in log_vars.items()}


def pipeline_needs_gt_rescale(dataset) -> bool:
    """Whether ``dataset``'s pipeline loads the annotations after resizing the image
    (mmdet's test pipelines do): then the boxes are in the original image's pixels.

    Raises ValueError when it cannot tell (no ``pipeline.transforms``, as for dataset
    wrappers) or when the pipeline has no ``LoadAnnotations``."""
    from mmcv.transforms import LoadAnnotations, RandomChoiceResize, RandomResize, Resize
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', None)
    if transforms is None:
        raise ValueError(f'cannot read the pipeline of {type(dataset).__name__}: set '
                         'ValLossLoop(rescale_gt=True) if its annotations are loaded '
                         'after Resize, False otherwise')
    for i, t in enumerate(transforms):
        if isinstance(t, LoadAnnotations):
            return any(isinstance(r, (Resize, RandomResize, RandomChoiceResize))
                       for r in transforms[:i])
    raise ValueError('the validation pipeline has no LoadAnnotations: add '
                     'LoadAnnotations(with_bbox=True) for a validation loss')


class _LossMeter:
    """Per-term sums weighted by batch size, averaged over ranks at the end."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}

    def update(self, log_vars: Dict[str, torch.Tensor], n: int) -> None:
        for key, value in log_vars.items():
            self.sums[key] = self.sums.get(key, 0) + value.double() * n
            self.counts[key] = self.counts.get(key, 0) + n

    def means(self) -> Dict[str, float]:
        keys: List[str] = list(self.sums)
        if get_dist_info()[1] > 1:  # the same keys, in the same order, on every rank
            union = []
            for rank_keys in all_gather_object(keys):
                union += [k for k in rank_keys if k not in union]
            keys = union
        if not keys:
            return {}
        device = next((v.device for v in self.sums.values()), torch.device('cpu'))
        totals = torch.stack(
            [torch.as_tensor(self.sums.get(k, 0.0), dtype=torch.float64, device=device)
             for k in keys]
            + [torch.tensor(float(self.counts.get(k, 0)), dtype=torch.float64, device=device)
               for k in keys])
        all_reduce(totals)  # no-op in a single process
        sums, counts = totals[:len(keys)].tolist(), totals[len(keys):].tolist()
        return {k: s / c for k, s, c in zip(keys, sums, counts) if c > 0}


@LOOPS.register_module()
class ValLossLoop(ValLoop):
    """mmengine's ``ValLoop`` (same metrics, same hooks) that also reports every term of
    the model's training loss on the validation set (module docstring: how training
    stays unchanged, ground-truth rescaling, DDP).

    Args:
        runner, dataloader, evaluator, fp16: as ``ValLoop``.
        prefix: of the logged names: ``'<prefix>/loss'``, ``'<prefix>/loss_cls'``...
        seed: base seed of the random numbers the loss draws (batch ``i`` on rank ``r``
            of ``w`` uses ``seed + i * w + r``).
        rescale_gt: ``None`` reads the pipeline (:func:`pipeline_needs_gt_rescale`);
            ``True`` / ``False`` force the rescaling of ground-truth boxes.
    """

    def __init__(self, runner, dataloader: Union[dict, object], evaluator: Union[dict, list],
                 fp16: bool = False, prefix: str = 'val', seed: int = 0,
                 rescale_gt: Optional[bool] = None) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f'prefix must be a non-empty string, got {prefix!r}')
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f'seed must be a non-negative int, got {seed!r}')
        if rescale_gt not in (None, True, False):
            raise ValueError(f'rescale_gt must be None, True or False, got {rescale_gt!r}')
        self.prefix = prefix
        self.seed = seed
        self.rescale_gt = (pipeline_needs_gt_rescale(self.dataloader.dataset)
                           if rescale_gt is None else rescale_gt)
        self._meter = _LossMeter()

    def run(self) -> dict:
        """``ValLoop.run`` with the loss terms added to the metrics before the
        ``after_val_epoch`` hooks see them."""
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        self.val_loss.clear()
        self._meter = _LossMeter()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if self.val_loss:  # losses a model's own val_step returns (mmengine >= 0.10.5)
            from mmengine.runner.loops import _parse_losses
            metrics.update(_parse_losses(self.val_loss, 'val'))
        metrics.update({f'{self.prefix}/{k}': v for k, v in self._meter.means().items()})
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        super().run_iter(idx, data_batch)
        rank, world_size = get_dist_info()
        log_vars = val_losses(self.runner.model, data_batch,
                              seed=self.seed + idx * world_size + rank,
                              rescale_gt=self.rescale_gt, fp16=self.fp16)
        self._meter.update(log_vars, len(data_batch['data_samples']))
