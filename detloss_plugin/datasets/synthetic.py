"""A small synthetic detection dataset in real COCO format, generated from a seed.

Nothing can be downloaded in many sandboxes, and a first look at a loss should not wait
for COCO. :func:`generate_synthetic_coco` writes::

    <out>/train/000000.jpg ...               images (JPEG, or PNG with fmt='png')
    <out>/val/000000.jpg ...
    <out>/annotations/instances_train.json   COCO 'images', 'annotations', 'categories'
    <out>/annotations/instances_val.json
    <out>/dataset_info.json                  the generator's parameters (written last)

which mmdet's ordinary ``CocoDataset`` reads: switching a config to real COCO changes
``data_root``, ``ann_file``, ``data_prefix`` and ``metainfo`` only.

What an image holds (every choice is drawn from the image's own random generator):

- a background: a linear colour gradient between two random colours, a low-frequency
  texture (a coarse random grid upsampled bicubically) and, after everything is drawn,
  Gaussian pixel noise; one image in four is slightly blurred;
- ``min_objects``..``max_objects`` objects of the four classes ``rectangle``,
  ``ellipse``, ``triangle`` (apex on any side) and ``cross`` (a plus sign with random arm
  thickness), filled with a colour that contrasts with the background under it and a
  mild shading gradient; sizes are drawn log-uniformly between ``min_size`` and
  ``max_size`` pixels (the longer side), aspect ratios log-uniformly in
  ``[1 / max_aspect, max_aspect]``;
- overlaps: a new object may overlap earlier ones (box IoU up to ``max_iou``) and is
  drawn on top of them; a placement that would hide more than half of an earlier
  object's box is rejected;
- clutter that is *not* annotated: thin straight lines, small dots below the smallest
  object size and open arcs, some drawn under the objects and some across them.

Annotations are tight boxes of each object's *visible* pixels (COCO's convention: ``bbox
= [x, y, w, h]`` in pixel-edge coordinates, so a box always lies inside its image),
``area`` is the visible pixel count, ``iscrowd = 0``. Because placements that would hide
more than half of an earlier object's box are rejected, an occluded object keeps most
of its extent; one that ends up with no visible pixel at all is not annotated.

Tiny-object mode (:data:`TINY_OBJECTS`, ``tools/make_dataset.py --tiny``): many objects
per image (8 to 30 on 192 x 192 px) whose absolute size :math:`\sqrt{wh}` is drawn from a
log-normal distribution (``size_distribution='aitod'``: median 11.5 px, log-std 0.32,
clipped to 2..32 px), which gives about AI-TOD's mix (Xu et al. 2022): ~13 % very tiny
(< 8 px), ~72 % tiny (8-16 px), ~15 % small (16-32 px), mean about 12 px, so NWD's
constant of 12.8 px fits it.

Determinism: image ``i`` of split ``s`` is drawn from
``numpy.random.default_rng([seed, s, i])``, so the same seed gives the same files
(byte for byte with the same Pillow/libjpeg), and the first images of a split do not
depend on how many are generated. Only numpy and Pillow are used.
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['CLASSES', 'PALETTE', 'GENERATOR_VERSION', 'TINY_OBJECTS', 'SIZE_DISTRIBUTIONS',
           'generate_synthetic_coco', 'ensure_synthetic_coco', 'render_image']

#: The four shape classes of the synthetic dataset, in category-id order.
CLASSES: Tuple[str, ...] = ('rectangle', 'ellipse', 'triangle', 'cross')
#: Colours used to draw predictions of each class (RGB).
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48))
GENERATOR_VERSION = 1
SIZE_DISTRIBUTIONS = ('log_uniform', 'aitod')
#: The tiny-object preset: pass as ``generate_synthetic_coco(out, **TINY_OBJECTS)``.
TINY_OBJECTS = dict(image_size=(192, 192), min_objects=8, max_objects=30, min_size=2,
                    max_size=32, max_aspect=2.0, max_iou=0.1,
                    size_distribution='aitod')
_AITOD_MEDIAN, _AITOD_LOG_STD = 11.5, 0.32
_SPLITS = ('train', 'val')


def _check_int(name: str, value, low: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f'{name} must be an int, got {type(value).__name__}')
    if value < low:
        raise ValueError(f'{name} must be >= {low}, got {value}')
    return int(value)


# --------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    from PIL import Image
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (np.cos(angle) * xx / max(w - 1, 1) + np.sin(angle) * yy / max(h - 1, 1))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    # low-frequency texture: a coarse random grid upsampled bicubically
    cells = int(rng.integers(3, 9))
    amp = rng.uniform(10, 40)
    grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
    tex = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), np.float32)
    img = img + amp * (tex / 255.0 - 0.5) * 2
    return img.astype(np.float32)


def _shape_mask(cls: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(h, w)`` boolean mask of the shape that fills the ``w x h`` box."""
    from PIL import Image, ImageDraw
    mask = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(mask)
    if cls == 'rectangle':
        draw.rectangle([0, 0, w - 1, h - 1], fill=255)
    elif cls == 'ellipse':
        draw.ellipse([0, 0, w - 1, h - 1], fill=255)
    elif cls == 'triangle':
        side = int(rng.integers(4))  # which side holds the base
        apex = rng.uniform(0.15, 0.85)
        if side == 0:    # base at the bottom, apex on the top edge
            pts = [(0, h - 1), (w - 1, h - 1), (apex * (w - 1), 0)]
        elif side == 1:  # base at the top
            pts = [(0, 0), (w - 1, 0), (apex * (w - 1), h - 1)]
        elif side == 2:  # base on the left
            pts = [(0, 0), (0, h - 1), (w - 1, apex * (h - 1))]
        else:            # base on the right
            pts = [(w - 1, 0), (w - 1, h - 1), (0, apex * (h - 1))]
        draw.polygon(pts, fill=255)
    elif cls == 'cross':
        tx = max(2, int(round(w * rng.uniform(0.22, 0.4))))
        ty = max(2, int(round(h * rng.uniform(0.22, 0.4))))
        cx = int(round((w - tx) * rng.uniform(0.35, 0.65)))
        cy = int(round((h - ty) * rng.uniform(0.35, 0.65)))
        draw.rectangle([cx, 0, cx + tx - 1, h - 1], fill=255)
        draw.rectangle([0, cy, w - 1, cy + ty - 1], fill=255)
    else:  # pragma: no cover - internal
        raise ValueError(f'unknown shape class {cls!r}')
    return np.asarray(mask) > 127


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    mean = under.reshape(-1, 3).mean(0)
    best, best_d = None, -1.0
    for _ in range(16):
        c = rng.uniform(0, 255, 3)
        d = float(np.abs(c - mean).sum())
        if d > 150:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _draw_clutter(rng: np.random.Generator, img: np.ndarray, count: int,
                  min_size: int) -> None:
    from PIL import Image, ImageDraw
    h, w = img.shape[:2]
    layer = Image.new('RGB', (w, h))
    alpha = Image.new('L', (w, h), 0)
    dl, da = ImageDraw.Draw(layer), ImageDraw.Draw(alpha)
    for _ in range(count):
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        kind = int(rng.integers(3))
        if kind == 0:  # a thin straight line
            p = [float(v) for v in rng.uniform(0, 1, 4) * [w, h, w, h]]
            width = int(rng.integers(1, 3))
            dl.line(p, fill=colour, width=width)
            da.line(p, fill=255, width=width)
        elif kind == 1:  # a small dot, below the smallest object size
            r = rng.uniform(1.0, max(1.5, min_size / 4))
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            box = [cx - r, cy - r, cx + r, cy + r]
            dl.ellipse(box, fill=colour)
            da.ellipse(box, fill=255)
        else:  # an open arc (outline only, never a closed shape)
            r = rng.uniform(min_size / 2, min_size * 2)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            start = rng.uniform(0, 360)
            end = start + rng.uniform(60, 240)
            box = [cx - r, cy - r, cx + r, cy + r]
            dl.arc(box, start, end, fill=colour, width=1)
            da.arc(box, start, end, fill=255, width=1)
    a = np.asarray(alpha, np.float32)[..., None] / 255.0
    img *= 1 - a
    img += a * np.asarray(layer, np.float32)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _covered_fraction(old: np.ndarray, new: np.ndarray) -> float:
    """Fraction of box ``old`` that box ``new`` covers."""
    ix = max(0.0, min(old[2], new[2]) - max(old[0], new[0]))
    iy = max(0.0, min(old[3], new[3]) - max(old[1], new[1]))
    area = (old[2] - old[0]) * (old[3] - old[1])
    return ix * iy / area if area > 0 else 1.0


def render_image(rng: np.random.Generator, width: int, height: int, min_objects: int = 1,
                 max_objects: int = 6, min_size: int = 12, max_size: int = 56,
                 max_aspect: float = 2.5, max_iou: float = 0.3, max_clutter: int = 6,
                 noise_std: Tuple[float, float] = (3.0, 12.0),
                 size_distribution: str = 'log_uniform'
                 ) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one image; returns ``(uint8 array (height, width, 3), objects)`` where each
    object is ``{'label': int, 'bbox': [x, y, w, h], 'area': int}`` (visible pixels).

    ``size_distribution``: ``'log_uniform'`` (the longer side log-uniform in
    ``[min_size, max_size]``) or ``'aitod'`` (the absolute size sqrt(w h) log-normal,
    median 11.5 px, log-std 0.32, clipped to ``[min_size, max_size]``; module docstring).
    """
    h, w = height, width
    img = _background(rng, h, w)
    _draw_clutter(rng, img, int(rng.integers(0, max_clutter + 1)), min_size)
    owner = np.full((h, w), -1, np.int32)  # which object a pixel shows
    boxes: List[np.ndarray] = []
    labels: List[int] = []
    n = int(rng.integers(min_objects, max_objects + 1))
    log_lo, log_hi = np.log(min_size), np.log(max_size)
    for _ in range(n):
        for _attempt in range(30):
            if size_distribution == 'aitod':
                size = float(np.clip(np.exp(rng.normal(np.log(_AITOD_MEDIAN),
                                                       _AITOD_LOG_STD)), min_size, max_size))
                aspect = float(np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect))))
                bw, bh = size * np.sqrt(aspect), size / np.sqrt(aspect)
                bw = int(round(min(max(bw, 1), w)))
                bh = int(round(min(max(bh, 1), h)))
            else:
                long_side = float(np.exp(rng.uniform(log_lo, log_hi)))
                aspect = float(np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect))))
                if aspect >= 1:   # wider than tall
                    bw, bh = long_side, long_side / aspect
                else:
                    bw, bh = long_side * aspect, long_side
                bw = int(round(min(max(bw, min_size / 2), w)))
                bh = int(round(min(max(bh, min_size / 2), h)))
            x0 = int(rng.integers(0, w - bw + 1))
            y0 = int(rng.integers(0, h - bh + 1))
            cand = np.array([x0, y0, x0 + bw, y0 + bh], np.float64)
            if all(_box_iou(cand, b) <= max_iou and _covered_fraction(b, cand) <= 0.5
                   for b in boxes):
                break
        else:
            continue  # no room left for this object
        label = int(rng.integers(len(CLASSES)))
        mask = _shape_mask(CLASSES[label], bw, bh, rng)
        region = img[y0:y0 + bh, x0:x0 + bw]
        colour = _contrasting_colour(rng, region)
        # mild shading: a linear brightness ramp across the object
        ramp = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), bw, dtype=np.float32)
        fill = np.clip(colour[None, None] * ramp[None, :, None], 0, 255)
        region[mask] = np.broadcast_to(fill, region.shape)[mask]
        owner[y0:y0 + bh, x0:x0 + bw][mask] = len(boxes)
        boxes.append(cand)
        labels.append(label)
    # a few thin lines across everything (they do not change the annotations)
    if max_clutter > 0:
        _draw_clutter_lines_over(rng, img, int(rng.integers(0, 3)))
    img += rng.normal(0.0, rng.uniform(*noise_std), img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).round().astype(np.uint8)
    if rng.uniform() < 0.25:
        from PIL import Image, ImageFilter
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(0.6)))
    objects = []
    for k, label in enumerate(labels):
        ys, xs = np.nonzero(owner == k)
        if xs.size == 0:
            continue
        x1, y1 = int(xs.min()), int(ys.min())
        x2, y2 = int(xs.max()) + 1, int(ys.max()) + 1
        objects.append(dict(label=label, bbox=[x1, y1, x2 - x1, y2 - y1],
                            area=int(xs.size)))
    return out, objects


def _draw_clutter_lines_over(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    from PIL import Image, ImageDraw
    h, w = img.shape[:2]
    for _ in range(count):
        alpha = Image.new('L', (w, h), 0)
        p = [float(v) for v in rng.uniform(0, 1, 4) * [w, h, w, h]]
        ImageDraw.Draw(alpha).line(p, fill=255, width=1)
        a = np.asarray(alpha, np.float32)[..., None] / 255.0
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        img *= 1 - a
        img += a * colour


# --------------------------------------------------------------------------- writing
def _params(seed, num_train, num_val, image_size, fmt, kwargs) -> Dict:
    return dict(generator_version=GENERATOR_VERSION, seed=seed, num_train=num_train,
                num_val=num_val, image_size=list(image_size), format=fmt,
                classes=list(CLASSES), **kwargs)


def generate_synthetic_coco(out_dir: str, seed: int = 0, num_train: int = 800,
                            num_val: int = 200, image_size: Sequence[int] = (128, 128),
                            fmt: str = 'jpg', progress: bool = False,
                            **render_kwargs) -> Dict:
    """Write the dataset under ``out_dir`` (replacing a previous one); returns its
    parameters (also written to ``dataset_info.json``).

    Args:
        out_dir: output folder.
        seed: the random seed; the same seed gives the same dataset.
        num_train, num_val: number of images per split (``num_val`` may be 0).
        image_size: ``(width, height)`` in pixels.
        fmt: ``'jpg'`` (quality 95) or ``'png'`` (lossless).
        progress: print one line per split.
        **render_kwargs: passed to :func:`render_image` (``min_objects``,
            ``max_objects``, ``min_size``, ``max_size``, ``max_aspect``, ``max_iou``,
            ``max_clutter``, ``size_distribution``); :data:`TINY_OBJECTS` is the
            tiny-object preset (with ``image_size``).
    """
    seed = _check_int('seed', seed, 0)
    num_train = _check_int('num_train', num_train, 1)
    num_val = _check_int('num_val', num_val, 0)
    if len(image_size) != 2:
        raise ValueError(f'image_size must be (width, height), got {image_size!r}')
    width = _check_int('image_size[0]', image_size[0], 16)
    height = _check_int('image_size[1]', image_size[1], 16)
    if fmt not in ('jpg', 'png'):
        raise ValueError(f"fmt must be one of ('jpg', 'png'), got {fmt!r}")
    min_size = render_kwargs.get('min_size', 12)
    max_size = render_kwargs.get('max_size', 56)
    if not 2 <= min_size <= max_size <= min(width, height):
        raise ValueError(
            f'need 2 <= min_size <= max_size <= min(image_size), got min_size={min_size}, '
            f'max_size={max_size}, image_size={tuple(image_size)}')
    if render_kwargs.get('size_distribution', 'log_uniform') not in SIZE_DISTRIBUTIONS:
        raise ValueError(f'size_distribution must be one of {SIZE_DISTRIBUTIONS}, got '
                         f"{render_kwargs['size_distribution']!r}")
    mino = render_kwargs.get('min_objects', 1)
    maxo = render_kwargs.get('max_objects', 6)
    if not 1 <= mino <= maxo:
        raise ValueError(f'need 1 <= min_objects <= max_objects, got {mino}, {maxo}')

    from PIL import Image

    params = _params(seed, num_train, num_val, (width, height), fmt, render_kwargs)
    info_path = osp.join(out_dir, 'dataset_info.json')
    if osp.exists(info_path):
        os.remove(info_path)  # a half-written dataset must not look complete
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    for split_idx, (split, count) in enumerate(zip(_SPLITS, (num_train, num_val))):
        img_dir = osp.join(out_dir, split)
        if osp.isdir(img_dir):
            shutil.rmtree(img_dir)
        os.makedirs(img_dir)
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, split_idx, i])
            pixels, objects = render_image(rng, width, height, **render_kwargs)
            name = f'{i:06d}.{fmt}'
            path = osp.join(img_dir, name)
            if fmt == 'jpg':
                Image.fromarray(pixels).save(path, quality=95)
            else:
                Image.fromarray(pixels).save(path)
            images.append(dict(id=i + 1, file_name=name, width=width, height=height))
            for obj in objects:
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=i + 1,
                    category_id=obj['label'] + 1, bbox=obj['bbox'], area=obj['area'],
                    iscrowd=0))
        coco = dict(
            info=dict(description='detloss synthetic shapes', version=str(GENERATOR_VERSION),
                      seed=seed, split=split),
            licenses=[], images=images, annotations=annotations, categories=categories)
        with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(coco, f)
        if progress:
            print(f'[detloss dataset] {split}: {count} images, {len(annotations)} objects '
                  f'-> {img_dir}', flush=True)
    with open(info_path, 'w') as f:
        json.dump(params, f, indent=1)
    return params


def ensure_synthetic_coco(out_dir: str, seed: int = 0, num_train: int = 800,
                          num_val: int = 200, image_size: Sequence[int] = (128, 128),
                          fmt: str = 'jpg', progress: bool = False,
                          **render_kwargs) -> bool:
    """Generate the dataset unless ``out_dir`` already holds one made with the same
    parameters. Returns True when it (re)generated."""
    want = _params(seed, num_train, num_val, tuple(image_size), fmt, render_kwargs)
    info_path = osp.join(out_dir, 'dataset_info.json')
    if osp.exists(info_path):
        with open(info_path) as f:
            have: Optional[Dict] = json.load(f)
        if have == json.loads(json.dumps(want)):
            if progress:
                print(f'[detloss dataset] {out_dir} is up to date (seed {seed})', flush=True)
            return False
    generate_synthetic_coco(out_dir, seed, num_train, num_val, image_size, fmt,
                            progress, **render_kwargs)
    return True
