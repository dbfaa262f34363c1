"""Drop-in check of detloss's same-named losses on mmdet's own model zoo.

For one config per detector family of the installed mmdet (``mmdet/.mim/configs``):

1. build mmdet's detector and a copy whose every loss that detloss provides under the
   same name is switched to ``detloss_plugin.<Name>`` (:func:`detloss_plugin.swap.swap_losses`:
   only ``type`` changes), with the same weights (``init_weights()`` as mmengine's
   Runner does, pretrained checkpoints off);
2. run ``loss`` on the same small synthetic batch (two 128 px images, three boxes each,
   masks and a semantic map for the heads that need them) and compare every loss term
   (rel. 1e-5); backward, gradients finite;
3. switch every IoU-family position (``IoULoss``, ``GIoULoss``, ...) to each of
   detloss's IoU-family losses in turn (finite loss and gradients);
4. switch every ``nms`` of the test configs to ``diou_nms`` and predict.

``python tools/zoo_matrix.py`` runs every family, writes ``docs/compatibility.json`` and
renders ``docs/compatibility.md`` from it (``--render`` renders the JSON only;
``--families RetinaNet FCOS`` runs a subset and prints it). ``tests/integration/test_zoo.py`` runs
the same :func:`run_family` per family.

The backbones and configs are mmdet's own; only what cannot run here is changed:
pretrained checkpoints off, SyncBN as BN, batch augments (random resizes) off.
"""
import argparse
import copy
import json
import os.path as osp
import random
import time
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from detloss_plugin.swap import (IOU_FAMILY, SHARED_NAMES, LossSwapError, iter_dicts,
                                 loss_positions, swap_losses)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

RTOL = 1e-5
IMAGE_SIZE = 128
JSON_PATH = osp.join(REPO, 'docs', 'compatibility.json')
DOC_PATH = osp.join(REPO, 'docs', 'compatibility.md')

#: family -> config under mmdet's .mim/configs, or ``(config, image size[, overrides])``:
#: mmcv's CPU deformable convolution needs the stride-128 level to be at least 3 px
#: (288 px images), or DDOD's is replaced by a plain one (``use_dcn=False``, its ATSS
#: form: the losses and their calls are the same). One per family, the R50 (or smallest
#: stock) variant.
FAMILIES: Dict[str, Union[str, tuple]] = {
    'RetinaNet': 'retinanet/retinanet_r50_fpn_1x_coco.py',
    'Faster R-CNN': 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'Mask R-CNN': 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'Cascade R-CNN': 'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'RPN': 'rpn/rpn_r50_fpn_1x_coco.py',
    'FCOS': 'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    'ATSS': 'atss/atss_r50_fpn_1x_coco.py',
    'DDOD': ('ddod/ddod_r50_fpn_1x_coco.py', IMAGE_SIZE, {'bbox_head.use_dcn': False}),
    'GFL': 'gfl/gfl_r50_fpn_1x_coco.py',
    'TOOD': 'tood/tood_r50_fpn_1x_coco.py',
    'VFNet': 'vfnet/vfnet_r50_fpn_1x_coco.py',
    'PAA': 'paa/paa_r50_fpn_1x_coco.py',
    'AutoAssign': 'autoassign/autoassign_r50-caffe_fpn_1x_coco.py',
    'FSAF': 'fsaf/fsaf_r50_fpn_1x_coco.py',
    'FoveaBox': 'foveabox/fovea_r50_fpn_4xb4-1x_coco.py',
    'FreeAnchor': 'free_anchor/freeanchor_r50_fpn_1x_coco.py',
    'GHM': 'ghm/retinanet_r50_fpn_ghm-1x_coco.py',
    'SABL RetinaNet': 'sabl/sabl-retinanet_r50_fpn_1x_coco.py',
    'SABL Faster R-CNN': 'sabl/sabl-faster-rcnn_r50_fpn_1x_coco.py',
    'Guided Anchoring': 'guided_anchoring/ga-retinanet_r50_fpn_1x_coco.py',
    'NAS-FCOS': 'nas_fcos/nas-fcos_r50-caffe_fpn_fcoshead-gn-head_4xb4-1x_coco.py',
    'RepPoints': ('reppoints/reppoints-moment_r50_fpn-gn_head-gn_1x_coco.py', 288),
    'CenterNet': 'centernet/centernet_r18_8xb16-crop512-140e_coco.py',
    'CenterNet (update)': 'centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.py',
    'YOLOF': 'yolof/yolof_r50-c5_8xb8-1x_coco.py',
    'YOLOv3': 'yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py',
    'YOLOX': 'yolox/yolox_tiny_8xb8-300e_coco.py',
    'RTMDet': 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    'Libra R-CNN': 'libra_rcnn/libra-faster-rcnn_r50_fpn_1x_coco.py',
    'Double Heads': 'double_heads/dh-faster-rcnn_r50_fpn_1x_coco.py',
    'Grid R-CNN': 'grid_rcnn/grid-rcnn_r50_fpn_gn-head_1x_coco.py',
    'MS R-CNN': 'ms_rcnn/ms-rcnn_r50_fpn_1x_coco.py',
    'PISA': 'pisa/faster-rcnn_r50_fpn_pisa_1x_coco.py',
    'HTC': 'htc/htc_r50_fpn_1x_coco.py',
    'Seesaw Mask R-CNN': 'seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss_random-ms-2x_lvis-v1.py',
    'Dynamic R-CNN': 'dynamic_rcnn/dynamic-rcnn_r50_fpn_1x_coco.py',
    'TridentNet': 'tridentnet/tridentnet_r50-caffe_1x_coco.py',
    'Sparse R-CNN': 'sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py',
    'QueryInst': 'queryinst/queryinst_r50_fpn_1x_coco.py',
    'DETR': 'detr/detr_r50_8xb2-150e_coco.py',
    'Deformable DETR': 'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    'Conditional DETR': 'conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    'DAB-DETR': 'dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    'DINO': 'dino/dino-4scale_r50_8xb2-12e_coco.py',
    'YOLACT': 'yolact/yolact_r50_1xb8-55e_coco.py',
    'SOLOv2': 'solov2/solov2-light_r18_fpn_ms-3x_coco.py',
    'CondInst': 'condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py',
}


# --------------------------------------------------------------------- configs, models
def _mmdet_config_dir() -> str:
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')


def _strip_for_cpu(model_cfg) -> None:
    """In place: pretrained checkpoints off, SyncBN as BN; fewer proposals, queries and
    sampled RoIs (at most 200 before NMS, 50 after, 64 sampled; 20 learned proposals of
    Sparse R-CNN / QueryInst, 100 queries of DETR-like models), which keeps the heads
    cheap and changes no loss's call."""
    for _, node in iter_dicts(model_cfg):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node['init_cfg'] = None
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for key in ('pretrained', 'teacher_ckpt'):
            if key in node:
                node[key] = None
        for key, most in (('nms_pre', 200), ('max_per_img', 50)):
            if isinstance(node.get(key), int) and 'nms' in node:
                node[key] = min(node[key], most)
        for key, most in (('num_proposals', 20), ('num_queries', 100)):
            if isinstance(node.get(key), int):
                node[key] = min(node[key], most)
        sampler = node.get('sampler')
        if isinstance(sampler, dict) and isinstance(sampler.get('num'), int):
            sampler['num'] = min(sampler['num'], 64)


def load_model_cfg(rel_path: str) -> dict:
    """The ``model`` config (a ``ConfigDict``) of mmdet's ``rel_path``, made runnable on
    this CPU (module docstring)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(_mmdet_config_dir(), rel_path))
    model = copy.deepcopy(cfg.model)
    _strip_for_cpu(model)
    if isinstance(model.get('data_preprocessor'), dict):
        model['data_preprocessor']['batch_augments'] = None
    return model


def _quiet() -> None:
    """mmengine logs every initialised parameter at INFO."""
    import logging
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel(logging.WARNING)


def build(model_cfg: dict, init: bool = True):
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    import detloss_plugin  # noqa: F401  (registers detloss_plugin.*)
    register_all_modules(init_default_scope=False)
    _quiet()
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(copy.deepcopy(model_cfg))
    if init:
        model.init_weights()
    return model


def synthetic_batch(num_classes: int, size: int = IMAGE_SIZE, num_images: int = 2,
                    num_boxes: int = 3, seed: int = 0, with_masks: bool = True) -> dict:
    """Images, boxes of 16-80 px, box-shaped masks (for models with a mask head) and a
    semantic map (ignore 255 at the borders)."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(num_images):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        wh = 16 + 64 * torch.rand(num_boxes, 2, generator=g)
        xy = torch.rand(num_boxes, 2, generator=g) * (size - wh)
        boxes = torch.cat([xy, xy + wh], 1).round()
        labels = torch.randint(0, min(num_classes, 80), (num_boxes,), generator=g)
        box_masks = np.zeros((num_boxes, size, size), dtype=np.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            box_masks[k, y1:y2, x1:x2] = 1
        sem = torch.randint(0, 54, (1, size, size), generator=g)
        sem[:, :4] = 255
        sample = DetDataSample(metainfo=dict(
            img_id=i, img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
            batch_input_shape=(size, size), scale_factor=(1.0, 1.0), flip=False,
            flip_direction=None))
        sample.gt_instances = InstanceData(bboxes=boxes, labels=labels)
        if with_masks:
            sample.gt_instances.masks = BitmapMasks(box_masks, size, size)
        sample.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                                labels=torch.zeros(0, dtype=torch.long))
        sample.gt_sem_seg = PixelData(sem_seg=sem)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _num_classes(model_cfg: dict) -> int:
    found = [cfg['num_classes'] for _, cfg in iter_dicts(model_cfg)
             if isinstance(cfg.get('num_classes'), int)]
    return min(found) if found else 80


def _seed(seed: int) -> None:
    from mmengine.logging import MessageHub
    # what mmengine's Runner records and TOOD's head reads (the first epoch)
    MessageHub.get_current_instance().update_info('epoch', 0)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def loss_terms(model, batch: dict, seed: int = 0, grad: bool = True
               ) -> Dict[str, torch.Tensor]:
    """``model.loss`` on ``batch``: each term summed over its list (FPN levels, stages),
    as ``parse_losses`` does."""
    model.train()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    _seed(seed)
    with torch.set_grad_enabled(grad):
        losses = model.loss(data['inputs'], data['data_samples'])
    out = {}
    for key, value in losses.items():
        if isinstance(value, (list, tuple)):
            value = sum(v.sum() for v in value)
        out[key] = value.float().sum() if value.numel() > 1 else value.float().reshape(())
    return out


def _backward_finite(model, terms: Dict[str, torch.Tensor]) -> bool:
    model.zero_grad(set_to_none=True)
    total = sum(v for k, v in terms.items() if 'loss' in k)
    total.backward()
    return bool(torch.isfinite(total)) and all(
        bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def _agrees(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * max(abs(a), abs(b)) + 1e-7


def _get_module(model, path: str):
    obj = model
    for part in path.split('.'):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _set_module(model, path: str, module) -> None:
    parent_path, _, name = path.rpartition('.')
    parent = _get_module(model, parent_path) if parent_path else model
    if name.isdigit():
        parent[int(name)] = module
    else:
        setattr(parent, name, module)


def iou_sweep(model, model_cfg: dict, batch: dict) -> Dict[str, str]:
    """Every IoU-family position of the built ``model`` replaced in turn by each of
    detloss's IoU-family losses (same ``loss_weight``): ``'ok'`` when the loss and the
    gradients are finite, else what went wrong."""
    from mmdet.registry import MODELS
    positions = [p for p in loss_positions(model_cfg, ('IoULoss', 'GIoULoss', 'DIoULoss',
                                                       'CIoULoss', 'SIoULoss'))]
    if not positions:
        return {}
    # the backbone and neck are not what is tested: their features are computed once
    model.train()
    data = model.data_preprocessor(copy.deepcopy(batch), True)
    with torch.no_grad():
        feats = model.extract_feat(data['inputs'])
    model.extract_feat = lambda inputs: feats
    originals = {p: _get_module(model, p) for p in positions}
    # the head's loss_weight and reduction (FSAF reduces itself: reduction='none')
    options = {p: {k: v for k, v in _cfg_at(model_cfg, p).items()
                   if k in ('loss_weight', 'reduction')} for p in positions}
    results = {}
    try:
        for name in IOU_FAMILY:
            for p in positions:
                _set_module(model, p, MODELS.build(dict(type='detloss_plugin.' + name,
                                                        **options[p])))
            try:
                terms = loss_terms(model, batch)
                results[name] = 'ok' if _backward_finite(model, terms) else 'not finite'
            except Exception as err:  # reported in the matrix
                results[name] = f'{type(err).__name__}: {err}'
    finally:
        for p, module in originals.items():
            _set_module(model, p, module)
        del model.extract_feat
    return results


def _cfg_at(cfg, path: str) -> dict:
    for part in path.split('.'):
        cfg = cfg[int(part)] if part.isdigit() else cfg[part]
    return cfg


def _set_nms(model, nms_type: str) -> int:
    """Every ``nms`` of the modules' test configs set to ``nms_type``; how many."""
    switched = 0
    for module in model.modules():
        test_cfg = getattr(module, 'test_cfg', None)
        if not isinstance(test_cfg, dict):
            continue
        for _, cfg in iter_dicts(test_cfg):
            nms = cfg.get('nms')
            if isinstance(nms, dict) and nms.get('type', 'nms') != nms_type:
                nms['type'] = nms_type
                switched += 1
    return switched


def _predict(model, batch: dict) -> str:
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(copy.deepcopy(batch), False)
        results = model.predict(data['inputs'], data['data_samples'])
    for r in results:
        if not torch.isfinite(r.pred_instances.bboxes).all():
            return 'non-finite boxes'
    return 'ok'


def diou_nms_predict(model, batch: dict) -> str:
    """Every ``nms`` of the modules' test configs switched to ``diou_nms``; predict.
    If that fails, predict again with mmdet's ``nms`` to tell whose failure it is."""
    if not _set_nms(model, 'diou_nms'):
        return 'no nms'
    try:
        return _predict(model, batch)
    except Exception as err:
        failure = f'{type(err).__name__}: {err}'.strip()
    _set_nms(model, 'nms')
    try:
        _predict(model, batch)
    except Exception as err:
        return f"mmdet's own predict fails here too ({type(err).__name__}: {err})"
    return failure


def family_entry(family: str) -> Tuple[str, int, dict]:
    """``(config, image size, config overrides)`` of ``family``."""
    entry = FAMILIES[family]
    if isinstance(entry, str):
        return entry, IMAGE_SIZE, {}
    config, size, *rest = entry
    return config, size, (rest[0] if rest else {})


def run_family(family: str) -> dict:
    """Everything :mod:`tools.zoo_matrix` checks for one family (module docstring)."""
    rel_path, size, overrides = family_entry(family)
    start = time.perf_counter()
    record = dict(family=family, config=rel_path, image_size=size)
    if overrides:
        record['overrides'] = overrides
    mm_cfg = load_model_cfg(rel_path)
    for key, value in overrides.items():
        parent, _, name = key.rpartition('.')
        _cfg_at(mm_cfg, parent)[name] = value
    dl_cfg = copy.deepcopy(mm_cfg)
    record['losses'] = sorted({_cfg_at(mm_cfg, p)['type'].replace('mmdet.', '')
                               for p in loss_positions(mm_cfg)})
    try:
        record['swapped'] = swap_losses(dl_cfg)
    except LossSwapError as err:
        record.update(status='refused', reason=str(err))
        forced = copy.deepcopy(mm_cfg)
        for p in loss_positions(forced):
            _cfg_at(forced, p)['type'] = 'detloss_plugin.' + _cfg_at(forced, p)['type']
        try:
            build(forced)
            record['forced_build'] = 'built'
        except Exception as build_err:  # mmdet's own assertion
            record['forced_build'] = f'{type(build_err).__name__}: {build_err}'
        record['seconds'] = round(time.perf_counter() - start, 1)
        return record
    with_masks = any('mask_head' in path for path, _ in iter_dicts(mm_cfg))
    batch = synthetic_batch(_num_classes(mm_cfg), size=size, with_masks=with_masks)
    mm_model = build(mm_cfg)
    dl_model = build(dl_cfg, init=False)  # mmdet's initialised weights are copied in
    missing, unexpected = dl_model.load_state_dict(mm_model.state_dict(), strict=False)
    stray = [k for k in list(missing) + list(unexpected) if 'loss' not in k]
    if stray:
        raise RuntimeError(f'{family}: the two models differ beyond their losses: {stray}')
    mm_terms = loss_terms(mm_model, batch, grad=False)
    dl_terms = loss_terms(dl_model, batch)
    terms = {}
    for key in sorted(set(mm_terms) | set(dl_terms)):
        if 'loss' not in key:
            continue
        mm_value = float(mm_terms[key]) if key in mm_terms else None
        dl_value = float(dl_terms[key]) if key in dl_terms else None
        ok = (mm_value is not None and dl_value is not None
              and _agrees(mm_value, dl_value))
        terms[key] = dict(mmdet=mm_value, detloss=dl_value, agrees=ok)
    record['terms'] = terms
    record['grads_finite'] = _backward_finite(dl_model, dl_terms)
    record['status'] = ('agrees' if all(t['agrees'] for t in terms.values())
                        and record['grads_finite'] else 'differs')
    one_image = {k: v[:1] for k, v in batch.items()}  # enough for what follows
    record['iou_sweep'] = iou_sweep(dl_model, mm_cfg, one_image)
    try:
        record['diou_nms'] = diou_nms_predict(dl_model, one_image)
    except Exception as err:  # reported in the matrix
        record['diou_nms'] = f'{type(err).__name__}: {err}'
    record['seconds'] = round(time.perf_counter() - start, 1)
    return record


# ----------------------------------------------------------------------------- render
#: the defaults of the same-named classes and the options for the forms that differ
DEFAULTS_TABLE = """\
## Same names, mmdet's defaults

A detloss class with an mmdet name takes mmdet's options (and positional order) and
defaults, so that `type='detloss_plugin.X'` computes mmdet's `X`; where a paper (or
detloss) defines the loss differently, that form is an explicit option.

| class | default (= mmdet's) | other forms (options) | remaining differences |
|---|---|---|---|
| `IoULoss` | `mode='log'` (-ln IoU), `eps=1e-6`; `linear=True` means `mode='linear'` | `mode='linear'` (1 - IoU), `mode='square'` (1 - IoU^2, YOLOX) | eps is added to the union (mmdet floors the union at eps): rel. eps/area |
| `GIoULoss` | `eps=1e-6` | | as `IoULoss` |
| `DIoULoss` | `eps=1e-6` | | |
| `CIoULoss` | alpha gated at IoU > 0.5 (journal version, mmdet's), `eps=1e-6` | `alpha_gate=False` (AAAI 2020: alpha always on), `authors_gradient=True` (the authors' gradient of v) | mmdet clamps CIoU to [-1, 1], which the gated form never reaches |
| `SIoULoss` | mmdet's form: `neg_gamma=False` (distance cost of reversed sign), loss clamped to [0, 2], `eps=1e-6` | `neg_gamma=True` (the paper's sign), `form='paper'` (no clamp, see `detloss_plugin.functional.siou_loss`), `theta` | max(w, w_gt) floored at eps (mmdet: NaN for two zero-width boxes) |
| `SmoothL1Loss`, `L1Loss`, `MSELoss` | mmdet's (`beta=1.0`) | `beta=0` is L1 | |
| `FocalLoss` | sigmoid, `gamma=2`, `alpha=0.25` | `use_sigmoid=False` (softmax form), per-class `alpha`, `ignore_index` | one code path on CPU and GPU; negative labels are ignored (mmdet's CPU path fails) |
| `CrossEntropyLoss` | softmax, `ignore_index=None` (-100), `avg_non_ignore=False` | `activated=True` (probabilities in) | `use_mask=True` (instance masks) is refused: keep mmdet's class for `loss_mask` |
| `GHMC`, `GHMR` | `bins=10`, `momentum=0`, `mu=0.02` | `reduction='sum'` (unnormalised sum; mmdet raises) | `sync=True`: under several GPUs the region counts are summed over them (mmdet counts per GPU; single-process values are equal) |
| `SeesawLoss` | `p=0.8`, `q=2`, `num_classes=1203`, `eps=1e-2` | | `sync=True`: class counts summed over GPUs (mmdet counts per GPU) |

mmdet's `DynamicRoIHead` (Dynamic R-CNN) asserts that its `loss_bbox` is mmdet's own
`SmoothL1Loss` and rewrites its `beta` while training: `swap_losses` refuses that
position and says so (keep mmdet's class there).
"""


def render(records: List[dict], total_seconds: Optional[float] = None,
           cpu_seconds: Optional[float] = None) -> str:
    import mmdet
    cols = [n for n in SHARED_NAMES if any(n in r.get('losses', ()) for r in records)]
    lines = [
        '# Compatibility with mmdet\'s model zoo',
        '',
        '<!-- generated by tools/zoo_matrix.py from docs/compatibility.json: do not edit -->',
        '',
        f'mmdet {mmdet.__version__}: one config per detector family from mmdet\'s own '
        '`.mim/configs`. Every loss that detloss provides under the same name was switched '
        'to `detloss_plugin.<Name>` (only `type` changed, `detloss_plugin.swap.swap_losses`), '
        'both detectors were built with the same weights and ran one `loss` + backward on '
        f'the same synthetic batch (two {IMAGE_SIZE} px images, three boxes each). '
        f'"agrees": every loss term of the detector equals mmdet\'s (rel. {RTOL:g}) and '
        'the gradients are finite; "-": the family does not use that loss. '
        'Pretrained checkpoints are off, SyncBN is BN and batch augments are off; nothing '
        'else in the configs is changed.',
        '',
        'The last two columns: every IoU-family position switched in turn to each of '
        f'detloss\'s {len(IOU_FAMILY)} IoU-family losses ({", ".join(IOU_FAMILY)}; "all '
        f'{len(IOU_FAMILY)}": finite loss and gradients for each), and every `nms` of the '
        'test configs switched to `diou_nms` (prediction runs).',
        '',
        '| family | config | ' + ' | '.join(cols) + ' | IoU-family sweep | DIoU-NMS |',
        '|---|---|' + '---|' * len(cols) + '---|---|',
    ]
    notes = []
    for r in records:
        if r.get('status') == 'refused':
            cell = 'refused'
            forced = r.get('forced_build', '')
            forced = ("mmdet's build fails on its assertion" if forced.startswith('Assertion')
                      else forced)
            notes.append(f'- **{r["family"]}**: {r["reason"]} (forcing the swap: {forced})')
        elif r.get('status') == 'error':
            cell = 'error'
            notes.append(f'- **{r["family"]}**: {r["reason"]}')
        else:
            cell = r['status']
        row = [r['family'], f'`{r["config"]}`']
        for name in cols:
            if name not in r.get('losses', ()):
                row.append('-')
            elif r.get('status') == 'refused' and name == 'SmoothL1Loss':
                row.append('refused')
            elif r.get('status') == 'refused':
                row.append('not run')
            else:
                row.append(cell)
        sweep = r.get('iou_sweep') or {}
        if r.get('status') == 'refused':
            row.append('not run')
        elif not sweep:
            row.append('-')
        else:
            bad = {k: v for k, v in sweep.items() if v != 'ok'}
            row.append(f'all {len(sweep)}' if not bad else
                       f'{len(sweep) - len(bad)}/{len(sweep)}')
            for k, v in bad.items():
                notes.append(f'- **{r["family"]}**, {k}: {v}')
        nms = r.get('diou_nms', 'not run') if r.get('status') != 'refused' else 'not run'
        if nms not in ('ok', 'no nms', 'not run'):
            notes.append(f'- **{r["family"]}**, DIoU-NMS: ' + ' '.join(nms.split()))
            nms = 'see notes'
        row.append(nms)
        if r.get('status') == 'differs':
            for key, t in r['terms'].items():
                if not t['agrees']:
                    notes.append(f'- **{r["family"]}** `{key}`: mmdet {t["mmdet"]}, '
                                 f'detloss {t["detloss"]}')
        lines.append('| ' + ' | '.join(row) + ' |')
    if notes:
        lines += ['', '## Notes', ''] + notes
    lines += ['', DEFAULTS_TABLE.rstrip('\n'), '', '## How to reproduce', '',
              '```', 'python tools/zoo_matrix.py            # every family, rewrites this page',
              'pytest -m integration tests/integration/test_zoo.py  # the same checks as tests', '```']
    if total_seconds is not None:
        cpu = f'{cpu_seconds:.0f} s of CPU time, ' if cpu_seconds else ''
        lines += ['', f'Cost of the last run: {cpu}{total_seconds:.0f} s wall for the '
                  f'{len(records)} families (one process, one thread, on a shared 2-core '
                  'machine).']
    return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--families', nargs='*', help='a subset (printed, nothing written)')
    parser.add_argument('--render', action='store_true',
                        help='render docs/compatibility.md from docs/compatibility.json only')
    args = parser.parse_args(argv)
    if args.render:
        with open(JSON_PATH) as f:
            data = json.load(f)
        with open(DOC_PATH, 'w') as f:
            f.write(render(data['families'], data.get('seconds'), data.get('cpu_seconds')))
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    names = args.families or list(FAMILIES)
    records, start, cpu_start = [], time.perf_counter(), time.process_time()
    for name in names:
        try:
            record = run_family(name)
        except Exception as err:  # the run goes on; the matrix shows it
            record = dict(family=name, config=family_entry(name)[0], status='error',
                          reason=f'{type(err).__name__}: {err}'[:500])
        print(json.dumps(record), flush=True)
        records.append(record)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    if args.families:
        return
    with open(JSON_PATH, 'w') as f:
        json.dump(dict(families=records, seconds=round(seconds, 1),
                       cpu_seconds=round(cpu_seconds, 1)), f, indent=1)
    with open(DOC_PATH, 'w') as f:
        f.write(render(records, seconds, cpu_seconds))


if __name__ == '__main__':
    main()
