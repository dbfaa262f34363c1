"""The loss inside a training step: one iteration of mmdet's stock RetinaNet R50-FPN
with detloss's loss or mmdet's swapped into the head, same weights, same batch.

    python -m tools.benchmark --suite train_step [--device cuda] [--threads 1 2] [--quick]

One timed call is a whole iteration: ``data_preprocessor``, forward with the losses,
``parse_losses``, ``backward()``, an SGD step (momentum 0.9, weight decay 1e-4) at
learning rate 0 (the weights stay put, so every call of every contender sees the same
model). Data: two random ``size x size`` images with 3 random boxes each (mmdet's
``demo_mm_inputs``, seeded); 320 px on the CPU, 800 px on CUDA (``--quick``: 64 px).
``extras``: each contender's losses (identical for the same definition). For a whole
config with its data pipeline, see the ``model`` suite.
"""
import logging
import tempfile
from pathlib import Path

import torch

from tools.benchmarks._common import Case, Contender, measure_cases, standalone, version

RETINANET_CONFIG = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
NUM_CLASSES = 80
_DETECTORS: dict = {}


def retinanet(device: torch.device):
    """The stock RetinaNet R50-FPN (no pretrained weights, ``init_weights()`` as the
    Runner calls it), once per device, in training mode, with SGD at learning rate 0."""
    key = str(device)
    if key not in _DETECTORS:
        from mmengine.config import Config
        from mmengine.logging import MMLogger
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
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
        model.to(device).train()
        optim = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
        _DETECTORS[key] = (model, optim)
    return _DETECTORS[key]


def detector_batch(size: int, device: torch.device, seed: int = 0) -> dict:
    from mmdet.testing import demo_mm_inputs
    model, optim = retinanet(device)
    torch.manual_seed(seed)
    batch = demo_mm_inputs(batch_size=2, image_shapes=[(3, size, size)] * 2,
                           num_items=[3, 3], num_classes=NUM_CLASSES, with_mask=False)
    return dict(model=model, optim=optim, batch=batch)


def _detloss(cfg):
    def build():
        import detloss_plugin  # noqa: F401
        from detloss_plugin.registry import MODELS
        return MODELS.build(dict(cfg))
    return build


def _mmdet(cfg):
    def build():
        from mmdet.models import losses  # noqa: F401
        from mmdet.registry import MODELS
        return MODELS.build(dict(cfg))
    return build


def step_contender(description, loss_cls, loss_bbox, reg_decoded_bbox=False, ref=False):
    def build(inputs):
        model, optim, batch = inputs['model'], inputs['optim'], inputs['batch']
        head = model.bbox_head
        device = next(model.parameters()).device
        losses = [make().to(device) for make in (loss_cls, loss_bbox)]

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
    return Contender(description, build, ref=ref)


def _log_vars(out):
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in out.items()}


def _size_name(n):
    return f'{n} px'


FOCAL = dict(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
GHMC = dict(use_sigmoid=True, bins=30, momentum=0.75, loss_weight=1.0)
L1 = _mmdet(dict(type='L1Loss', loss_weight=1.0))        # the stock config's loss_bbox


def case(name, detloss_losses, mmdet_losses, reg_decoded_bbox=False, note=''):
    mmdet = f"mmdet {version('mmdet')}"
    cpu_sizes = [320]
    return Case('train_step', name, cpu_sizes, [64], detector_batch, [
        step_contender('detloss', *detloss_losses, reg_decoded_bbox, ref=True),
        step_contender(mmdet, *mmdet_losses, reg_decoded_bbox),
    ], size_name=_size_name, value=_log_vars, note=note, min_run_time=30.0)


CASES = [
    case('retinanet r50: focal (loss_cls)',
         [_detloss(dict(type='detloss_plugin.FocalLoss', **FOCAL)), L1],
         [_mmdet(dict(type='FocalLoss', **FOCAL)), L1],
         note="the stock config; loss_bbox: mmdet's L1Loss in both"),
    case('retinanet r50: giou (loss_bbox)',
         [_mmdet(dict(type='FocalLoss', **FOCAL)),
          _detloss(dict(type='detloss_plugin.GIoULoss', loss_weight=2.0))],
         [_mmdet(dict(type='FocalLoss', **FOCAL)), _mmdet(dict(type='GIoULoss', loss_weight=2.0))],
         reg_decoded_bbox=True, note="reg_decoded_bbox=True; loss_cls: mmdet's FocalLoss in both"),
    case('retinanet r50: ghm-c (loss_cls)',
         [_detloss(dict(type='detloss_plugin.GHMC', **GHMC)), L1],
         [_mmdet(dict(type='GHMC', **GHMC)), L1],
         note="bins 30, momentum 0.75 (mmdet's configs/ghm); loss_bbox: mmdet's L1Loss"),
]

_EXTRAS: dict = {}


def run(args):
    _EXTRAS.clear()
    only = getattr(args, 'only', None)
    cases = [c for c in CASES if not only or any(o in c.name for o in only)]
    if args.device == 'cuda':
        for c in cases:
            c.sizes = [800]
    return measure_cases(cases, args, _EXTRAS)


def extras(args) -> dict:
    """Per contender: the iteration's losses (``value``)."""
    return dict(_EXTRAS)


if __name__ == '__main__':
    raise SystemExit(standalone(run, extras, description=__doc__))
