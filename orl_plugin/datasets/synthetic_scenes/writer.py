"""``make_synthetic_scenes``: render a data set in worker processes and write its images and COCO files."""
from __future__ import annotations

import json
import multiprocessing
import os
import os.path as osp
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from orl_plugin.utils.atomic import atomic_open

from .categories import CATEGORIES
from .scenes_v1 import render_scene
from .scenes_v2 import SceneType, make_scene_types, render_scene_v2

__all__ = ['V2_DEFAULTS', 'make_synthetic_scenes']

_JPEG_QUALITY = 92


def _atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_open(path, 'wb') as f:
        f.write(data)


def _atomic_dump_json(obj: dict, path: str) -> None:
    _atomic_write_bytes(path, json.dumps(obj, separators=(',', ':')).encode('utf-8'))


def _image_job(args: tuple) -> Tuple[int, str, List[dict], Optional[int]]:
    """Render and write image ``index``; module-level so that worker processes can run it."""
    index, seed, img_dir, img_size, version, render_kwargs = args
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    scene_type = None
    if version == 1:
        img, objs = render_scene(rng, img_size, **render_kwargs)
    else:
        img, objs, scene_type = render_scene_v2(rng, img_size, **render_kwargs)
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f'cv2.imencode failed for synthetic image {index}')
    file_name = f'{index:06d}.jpg'
    _atomic_write_bytes(osp.join(img_dir, file_name), buf.tobytes())
    return index, file_name, objs, scene_type


def _worker_init() -> None:
    cv2.setNumThreads(1)  # parallelism comes from the processes; avoid oversubscribing cores


def _coco_subset(images: List[dict], annotations: List[dict], info: dict, extra: Optional[dict] = None) -> dict:
    ids = {im['id'] for im in images}
    out = dict(
        info=info,
        licenses=[],
        images=images,
        annotations=[a for a in annotations if a['image_id'] in ids],
        categories=CATEGORIES)
    out.update(extra or {})
    return out


#: Version-2 options and their defaults (``None`` passed to :func:`make_synthetic_scenes` means this).
V2_DEFAULTS: Dict[str, Any] = dict(
    scene_types=4,
    categories_per_type=3,
    out_of_type=0.1,
    clutter=(0, 3),
    background_texture=1.0,
    hue_spread=0.05,
    max_occlusion=0.4)

_VERSION_DEFAULTS = {
    1: dict(num_objects=(3, 6), scale_range=(0.15, 0.6)), 2: dict(num_objects=(2, 6), scale_range=(0.15, 0.5))
}


def _check_range(name: str, value: Sequence[float], lo: float, hi: float) -> Tuple:
    if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f'{name} must be a (min, max) pair with {lo} <= min <= max <= {hi}, got {value}')
    return tuple(value)


def make_synthetic_scenes(out_dir: str,
                          num_images: int,
                          seed: int = 0,
                          img_size: Tuple[int, int] = (256, 256),
                          val_fraction: float = 0.2,
                          num_objects: Optional[Tuple[int, int]] = None,
                          scale_range: Optional[Tuple[float, float]] = None,
                          workers: Optional[int] = None,
                          progress: Optional[Callable[[int, int], None]] = None,
                          colour_cue: bool = False,
                          version: int = 2,
                          scene_types: Optional[int] = None,
                          categories_per_type: Optional[int] = None,
                          out_of_type: Optional[float] = None,
                          clutter: Optional[Tuple[int, int]] = None,
                          background_texture: Optional[float] = None,
                          hue_spread: Optional[float] = None,
                          max_occlusion: Optional[float] = None) -> dict:
    """Generate a synthetic scene data set in COCO format.

    Writes ``out_dir/images/NNNNNN.jpg``, ``out_dir/annotations/instances.json`` (all images) and the
    deterministic split ``instances_train.json`` / ``instances_val.json`` (val = the last
    ``round(val_fraction * num_images)`` images). Image ids are 1-based positions; category ids follow
    :data:`CATEGORIES`. Version 2 also writes each image's ``scene_type`` (an id) in its image record
    and the top-level ``scene_types`` list (id, name, category ids, background family).

    Args:
        out_dir: output folder (created if needed).
        num_images: number of images.
        seed: random seed; the output is byte-identical for a seed.
        img_size: (width, height) of every image.
        val_fraction: fraction of images, taken from the end, in the val split.
        num_objects: inclusive range of objects each image tries to place (``None``: (3, 6) in
            version 1, (2, 6) in version 2).
        scale_range: object size range as a fraction of the shorter image side (``None``:
            (0.15, 0.6) in version 1, (0.15, 0.5) in version 2).
        workers: worker processes; ``None`` = all CPU cores for large sets, 1 for small ones.
        progress: optional callback ``progress(done, total)``.
        colour_cue: give every category its own colour family (docs/en/notes/synthetic_scenes.md).
        version: 2 (scene types, the default) or 1 (the original cluttered scenes, byte-identical
            to the generator before version 2 existed).
        scene_types, categories_per_type: number of scene types and categories per type
            (:func:`make_scene_types`). Version 2 only, like the options below; ``None`` = the
            value in :data:`V2_DEFAULTS`.
        out_of_type: probability that an object's category ignores its scene type.
        clutter: inclusive range of small distractor marks per image.
        background_texture: contrast of the background patterns (0 = plain gradients).
        hue_spread: how far a background's hue strays from its type's hue.
        max_occlusion: a placement may hide at most this fraction of an earlier object.

    Returns:
        A summary dict: paths, image / object counts and the elapsed time.
    """
    if version not in (1, 2):
        raise ValueError(f'version must be 1 or 2, got {version!r}')
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}')
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
    w, h = int(img_size[0]), int(img_size[1])
    if min(w, h) < 32:
        raise ValueError(f'img_size must be at least 32x32, got {img_size}')
    v2_given = dict(
        scene_types=scene_types,
        categories_per_type=categories_per_type,
        out_of_type=out_of_type,
        clutter=clutter,
        background_texture=background_texture,
        hue_spread=hue_spread,
        max_occlusion=max_occlusion)
    if version == 1 and any(v is not None for v in v2_given.values()):
        raise ValueError('version 1 scenes take none of the version-2 options; got ' +
                         ', '.join(k for k, v in v2_given.items() if v is not None))
    num_objects = tuple(num_objects) if num_objects is not None else _VERSION_DEFAULTS[version]['num_objects']
    scale_range = tuple(scale_range) if scale_range is not None else _VERSION_DEFAULTS[version]['scale_range']
    t0 = time.perf_counter()
    img_dir = osp.join(out_dir, 'images')
    ann_dir = osp.join(out_dir, 'annotations')

    render_kwargs: Dict[str, Any] = dict(num_objects=num_objects, scale_range=scale_range, colour_cue=bool(colour_cue))
    info: Dict[str, Any] = dict(
        description='orl_plugin synthetic scenes',
        version=str(version),
        seed=int(seed),
        img_size=[w, h],
        num_objects=list(num_objects),
        scale_range=list(scale_range),
        colour_cue=bool(colour_cue))
    extra: Dict[str, Any] = {}
    types: List[SceneType] = []
    if version == 2:
        opts = {k: (V2_DEFAULTS[k] if v is None else v) for k, v in v2_given.items()}
        _check_range('num_objects', num_objects, 0, 1000)
        _check_range('scale_range', scale_range, 0.01, 1.0)
        opts['clutter'] = _check_range('clutter', opts['clutter'], 0, 10000)
        if not 0.0 <= opts['out_of_type'] <= 1.0:
            raise ValueError(f'out_of_type must be in [0, 1], got {opts["out_of_type"]}')
        if not 0.0 <= opts['max_occlusion'] < 1.0:
            raise ValueError(f'max_occlusion must be in [0, 1), got {opts["max_occlusion"]}')
        types = make_scene_types(int(opts['scene_types']), int(opts['categories_per_type']))
        render_kwargs.update(
            types=types,
            out_of_type=float(opts['out_of_type']),
            clutter=opts['clutter'],
            background_texture=float(opts['background_texture']),
            hue_spread=float(opts['hue_spread']),
            max_occlusion=float(opts['max_occlusion']))
        info.update({k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()})
        extra['scene_types'] = [t.to_json() for t in types]

    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    jobs = [(i, int(seed), img_dir, (w, h), version, render_kwargs) for i in range(num_images)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if num_images >= 64 else 1
    results: List[Tuple[int, str, List[dict], Optional[int]]] = []
    if workers > 1:
        # Not 'fork': a child forked after the parent ran OpenCV (or torch) with threads can wait forever on
        # locks of threads it did not inherit (seen: a test file that draws before it generates in parallel).
        if 'forkserver' in multiprocessing.get_all_start_methods():
            ctx = multiprocessing.get_context('forkserver')
            ctx.set_forkserver_preload([__name__])  # imported once by the server, not by every worker
        else:
            ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(workers, initializer=_worker_init) as pool:
            for r in pool.imap(_image_job, jobs, chunksize=8):
                results.append(r)
                if progress is not None:
                    progress(len(results), num_images)
    else:
        for job in jobs:
            results.append(_image_job(job))
            if progress is not None:
                progress(len(results), num_images)

    images, annotations = [], []
    for index, file_name, objs, scene_type in results:
        record = dict(id=index + 1, file_name=file_name, width=w, height=h)
        if scene_type is not None:
            record['scene_type'] = types[scene_type].id
        images.append(record)
        for obj in objs:
            ann = dict(
                id=len(annotations) + 1,
                image_id=index + 1,
                category_id=obj['category_id'],
                bbox=obj['bbox'],
                area=obj['area'],
                iscrowd=0)
            if 'segmentation' in obj:  # version 2 only: version-1 files stay byte-identical
                ann['segmentation'] = obj['segmentation']
            annotations.append(ann)
    num_val = int(round(val_fraction * num_images))
    num_train = num_images - num_val
    paths = dict(
        ann_file=osp.join(ann_dir, 'instances.json'),
        train_ann_file=osp.join(ann_dir, 'instances_train.json'),
        val_ann_file=osp.join(ann_dir, 'instances_val.json'))
    _atomic_dump_json(_coco_subset(images, annotations, info, extra), paths['ann_file'])
    _atomic_dump_json(_coco_subset(images[:num_train], annotations, info, extra), paths['train_ann_file'])
    _atomic_dump_json(_coco_subset(images[num_train:], annotations, info, extra), paths['val_ann_file'])

    per_cat = np.bincount([a['category_id'] for a in annotations], minlength=len(CATEGORIES) + 1)[1:]
    summary = dict(
        out_dir=out_dir,
        image_dir=img_dir,
        **paths,
        num_images=num_images,
        num_train=num_train,
        num_val=num_val,
        num_objects=len(annotations),
        mean_objects_per_image=len(annotations) / num_images,
        num_categories=len(CATEGORIES),
        objects_per_category={c['name']: int(n) for c, n in zip(CATEGORIES, per_cat)},
        img_size=(w, h),
        seed=int(seed),
        workers=workers,
        version=version)
    if types:
        per_type = np.bincount([r[3] for r in results], minlength=len(types))
        summary['images_per_scene_type'] = {t.name: int(n) for t, n in zip(types, per_type)}
    summary['elapsed_s'] = time.perf_counter() - t0
    return summary
