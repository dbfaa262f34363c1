"""Datasets shipped with detloss: a synthetic detection dataset in COCO format."""
from .synthetic import (CLASSES, PALETTE, TINY_OBJECTS, ensure_synthetic_coco,
                        generate_synthetic_coco, render_image)

__all__ = ['CLASSES', 'PALETTE', 'TINY_OBJECTS', 'ensure_synthetic_coco',
           'generate_synthetic_coco', 'render_image']
