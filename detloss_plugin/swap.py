"""Switch an mmdet config's losses to detloss's classes of the same names.

``swap_losses(model_cfg)`` rewrites, in place, every loss config whose ``type`` is one
of :data:`SHARED_NAMES` (written ``'Name'`` or ``'mmdet.Name'``) to
``'detloss_plugin.Name'``, leaving every other key as it is: detloss's same-named
classes take mmdet's options and defaults, so the model computes the same losses. It
returns the dotted paths it changed (``'roi_head.bbox_head.0.loss_cls'``).

Two things mmdet hard-codes are refused with :class:`LossSwapError` (a ``ValueError``)
instead of being swapped:

- ``DynamicRoIHead`` (Dynamic R-CNN) asserts that its ``loss_bbox`` is an instance of
  mmdet's ``SmoothL1Loss`` class and rewrites its ``beta`` during training;
- ``CrossEntropyLoss(use_mask=True)`` (the instance-mask loss of mask heads) is not a
  box or classification loss and detloss has no mask form: such configs are left to
  mmdet's class (not an error: they are skipped and not reported as swapped).

Pure dictionary code: it imports neither mmdet nor torch.
"""
from typing import Any, List, Sequence

__all__ = ['IOU_FAMILY', 'SHARED_NAMES', 'LossSwapError', 'iter_dicts', 'loss_positions',
           'swap_losses']

#: the losses detloss provides under mmdet's names (mmdet's call contract and defaults)
SHARED_NAMES = ('IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'SIoULoss', 'SmoothL1Loss',
                'L1Loss', 'MSELoss', 'FocalLoss', 'CrossEntropyLoss', 'GHMC', 'GHMR',
                'SeesawLoss')

#: the IoU-family losses detloss provides (for sweeps over the box loss)
IOU_FAMILY = ('IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'SIoULoss', 'EfficientIoULoss',
              'FocalEIoULoss', 'AlphaIoULoss', 'WIoULoss')

_SCOPE = 'detloss_plugin.'


class LossSwapError(ValueError):
    """A loss that mmdet's code requires to be its own class."""


def _bare(type_name: Any) -> Any:
    if isinstance(type_name, str) and type_name.startswith('mmdet.'):
        return type_name[len('mmdet.'):]
    return type_name


def iter_dicts(node: Any, path: str = ''):
    """Every ``(dotted path, dict)`` in a nested config of dicts and lists, parents
    first (list items are numbered: ``'roi_head.bbox_head.0'``)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from iter_dicts(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from iter_dicts(value, f'{path}.{i}' if path else str(i))


def _is_mask_loss(cfg: dict) -> bool:
    return _bare(cfg.get('type')) == 'CrossEntropyLoss' and bool(cfg.get('use_mask', False))


def loss_positions(model_cfg: Any, names: Sequence[str] = SHARED_NAMES) -> List[str]:
    """The dotted paths of the loss configs of ``model_cfg`` whose type is one of
    ``names`` (mask cross-entropy excluded)."""
    return [path for path, cfg in iter_dicts(model_cfg)
            if _bare(cfg.get('type')) in names and not _is_mask_loss(cfg)]


def _check_hard_coded(model_cfg: Any, names: Sequence[str]) -> None:
    for path, cfg in iter_dicts(model_cfg):
        if cfg.get('type') != 'DynamicRoIHead':
            continue
        heads = cfg.get('bbox_head')
        for i, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            loss = (head or {}).get('loss_bbox') or {}
            if _bare(loss.get('type')) == 'SmoothL1Loss' and 'SmoothL1Loss' in names:
                where = f'{path}.bbox_head' + (f'.{i}' if isinstance(heads, (list, tuple))
                                               else '')
                raise LossSwapError(
                    f'{where}.loss_bbox: DynamicRoIHead (Dynamic R-CNN) asserts that '
                    f"loss_bbox is an instance of mmdet's SmoothL1Loss class and sets its "
                    f"beta during training, so detloss_plugin.SmoothL1Loss cannot replace "
                    f"it; keep type='SmoothL1Loss' (mmdet's) there, or use "
                    f"type='StandardRoIHead' to train with another box loss")


def swap_losses(model_cfg: Any, names: Sequence[str] = SHARED_NAMES) -> List[str]:
    """Point every loss of ``model_cfg`` named in ``names`` at detloss's class of the
    same name (in place); return the dotted paths changed. Raises
    :class:`LossSwapError` where mmdet requires its own class (module docstring)."""
    unknown = [n for n in names if n not in SHARED_NAMES]
    if unknown:
        raise ValueError(f'names must be among {SHARED_NAMES}, got {unknown}')
    _check_hard_coded(model_cfg, names)
    changed = []
    for path, cfg in iter_dicts(model_cfg):
        if _bare(cfg.get('type')) in names and not _is_mask_loss(cfg):
            cfg['type'] = _SCOPE + _bare(cfg['type'])
            changed.append(path)
    return changed
