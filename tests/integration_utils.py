"""Build stock mmdet detectors from configs that inherit mmdet's own (``_base_ =
'mmdet::...'``) and run a few training steps and a prediction on tiny random inputs.

Shared by the integration tests of every loss block. Everything runs on the CPU, with
the stock architectures (ResNet-50 FPN), pretrained weights off and 64-96 px images,
so one detector costs a few seconds.
"""
import textwrap
from pathlib import Path
from typing import Dict, List

import torch

RETINANET = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
FASTER_RCNN = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'


def two_box_sample(size: int = 64):
    """A ``DetDataSample`` of a ``size`` x ``size`` image with two ground-truth boxes
    (classes 0 and 3), for one training step of a detector."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         pad_shape=(size, size), scale_factor=(1.0, 1.0),
                                         batch_input_shape=(size, size)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 20.0, 60.0, 44.0]]),
        labels=torch.tensor([0, 3]))
    return sample


def write_config(tmp_path: Path, base: str, body: str, name: str = 'cfg.py') -> Path:
    """A user's config file: inherit ``base``, import the plugin, apply ``body``."""
    text = (f"_base_ = '{base}'\n"
            "custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)\n"
            + textwrap.dedent(body))
    path = tmp_path / name
    path.write_text(text)
    return path


def build_detector(config_path: Path):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(config_path))
    cfg.model.backbone.init_cfg = None  # pretrained weights off
    scope = cfg.get('default_scope', 'mmdet')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    model.init_weights()  # as mmengine's Runner does: the heads' prior-probability biases
    return cfg, model


def demo_batch(batch_size: int = 2, size: int = 96, num_classes: int = 80, seed: int = 0):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(seed)
    return demo_mm_inputs(batch_size=batch_size, image_shapes=[(3, size, size)] * batch_size,
                          num_items=[3] * batch_size, num_classes=num_classes, with_mask=False)


def train_steps(model, steps: int = 2, lr: float = 0.01, size: int = 96, seed: int = 0) -> List[Dict[str, float]]:
    """Run ``steps`` SGD steps; return each step's losses as floats (the sum under
    ``'loss'``)."""
    model.train()
    optim = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    history = []
    for step in range(steps):
        data = model.data_preprocessor(demo_batch(size=size, seed=seed + step), True)
        losses = model(**data, mode='loss')
        total, log_vars = model.parse_losses(losses)
        optim.zero_grad()
        total.backward()
        grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters()
                           if p.grad is not None)
        optim.step()
        record = {k: float(v) for k, v in log_vars.items()}
        record['grads_finite'] = grads_finite
        history.append(record)
    return history


def predict(model, size: int = 96, seed: int = 100):
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(demo_batch(size=size, seed=seed), False)
        return model(**data, mode='predict')


def train_and_predict(tmp_path: Path, base: str, body: str, steps: int = 2,
                      size: int = 96) -> Dict[str, object]:
    cfg_path = write_config(tmp_path, base, body)
    cfg, model = build_detector(cfg_path)
    history = train_steps(model, steps=steps, size=size)
    results = predict(model, size=size)
    return dict(cfg=cfg, model=model, history=history, results=results)
