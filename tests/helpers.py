"""Helpers shared by several test files (``from helpers import ...``; pytest puts ``tests/`` on the path).

Fixtures live in ``conftest.py``; plain functions and constants live here, so that no test file imports
another.
"""
import json
import os.path as osp
from typing import Any, Dict

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
BYOL_SYNTHETIC_CONFIG = osp.join(ROOT, 'configs', 'byol', 'byol_resnet18_1xb32-coslr-30e_synthetic.py')


def scene_picture(w: int, h: int, seed: int) -> np.ndarray:
    """An RGB uint8 ``h x w`` picture: a smooth colour field with a few solid rectangles."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR)).copy()
    for _ in range(4):
        bw, bh = rng.integers(max(w // 6, 1), max(w // 3, 2)), rng.integers(max(h // 6, 1), max(h // 3, 2))
        x, y = rng.integers(0, max(w - bw, 1)), rng.integers(0, max(h - bh, 1))
        img[y:y + bh, x:x + bw] = rng.integers(0, 256, size=3)
    return img


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like BGR uint8 image: smooth colour field, grain, a highlight, a shadow and a grey patch
    (grey pixels are a special case of the HSV conversion)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC)).astype(np.float64)
    img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
    img[h // 5:h // 3, w // 4:w // 2] = 252
    img[h // 2:h // 2 + 3] = 0
    img[-4:, :5] = 128
    return img


def tiny_byol_overrides(data_root: str, max_epochs: int, batch_size: int) -> Dict[str, object]:
    """Overrides (``--cfg-options`` keys) shrinking the CPU BYOL config to a few seconds.

    32 px views, no loader workers, a checkpoint and a log line every epoch/iteration.
    """
    options: Dict[str, object] = {
        'train_dataloader.batch_size': batch_size,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.dataset.data_root': data_root,
        'train_cfg.max_epochs': max_epochs,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': -1,
        'default_hooks.logger.interval': 1,
        'randomness.seed': 0,
    }
    for view in (0, 1):  # MultiView(transforms=[view_pipeline1, view_pipeline2])
        options[f'train_dataloader.dataset.pipeline.1.transforms.{view}.0.scale'] = 32
    return options


def set_view_sizes(obj: Any, img_size: int, patch_size: int) -> None:
    """Shrink every RandomResizedCrop / RoICrop of a pipeline config, in place."""
    if isinstance(obj, dict):
        if obj.get('type') == 'RandomResizedCrop':
            obj['scale'] = img_size
        if obj.get('type') == 'RoICrop':
            obj['size'] = patch_size
        for v in obj.values():
            set_view_sizes(v, img_size, patch_size)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            set_view_sizes(v, img_size, patch_size)


def make_correspondence_store(root: str, k: int = 3) -> str:
    """A correspondence store for the train split of a synthetic set: kept boxes are the ground-truth
    boxes, neighbours the next k images and the pairs box-to-box of the two images."""
    from orl_plugin.store import write_correspondence_store

    ann = json.load(open(osp.join(root, 'annotations/instances_train.json')))
    images = ann['images']
    by_image = {im['id']: [] for im in images}
    for a in ann['annotations']:
        by_image[a['image_id']].append([int(round(v)) for v in a['bbox']])
    boxes = [np.array(by_image[im['id']], np.int64).reshape(-1, 4) for im in images]
    n = len(images)
    knn = np.array([[(i + d) % n for d in range(1, k + 1)] for i in range(n)])

    def pair(q, r):
        m = min(len(q), len(r), 2)
        return np.concatenate([q[:m], r[:m]], axis=1)

    pairs = [[pair(boxes[i], boxes[knn[i, j]]) for j in range(k)] for i in range(n)]
    path = osp.join(root, 'orl', 'correspondence.orlstore')
    write_correspondence_store(
        path, boxes, knn, pairs, file_names=[im['file_name'] for im in images], image_ids=[im['id'] for im in images])
    return path
