"""``SelectiveSearch``: OpenCV selective-search proposals as a data transform (stage 2b).

Runs in the data-loader workers, so proposals for many images are computed in parallel by the
ordinary DataLoader machinery; the mining loop only collects them.
"""
import ctypes
import ctypes.util
import warnings
from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

_libc_srand = None


def _seed_c_rand(seed: int) -> bool:
    """``srand(seed)`` in the C library OpenCV draws its ``rand()`` from."""
    global _libc_srand
    if _libc_srand is None:
        try:
            name = ctypes.util.find_library('c')
            _libc_srand = ctypes.CDLL(name).srand if name else False
        except OSError:
            _libc_srand = False
    if not _libc_srand:
        return False
    _libc_srand(ctypes.c_uint(seed))
    return True


def selective_search(img: np.ndarray, mode: str = 'fast', seed: Optional[int] = 1) -> np.ndarray:
    """Raw selective-search boxes of a BGR image, ``(B, 4)`` int32 ``[x, y, w, h]``.

    OpenCV's order is kept (the official ORL files keep it too). OpenCV ranks the boxes with
    a random factor drawn from C ``rand()``, so the order (not the set) depends on every
    ``rand()`` call made before in the process: in the official run, on which images a worker
    had processed earlier. With ``seed`` (default 1, glibc's initial seed) ``srand`` is reset
    before each image, so an image's boxes are the same whatever the ranks, workers, order or
    resumption (each image gets the order a fresh process would give it); ``None`` leaves
    ``rand()`` alone. A tiny or uniform image for which OpenCV returns nothing gives the
    whole-image box, so every image has a box 0.
    """
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(np.ascontiguousarray(img))
    if mode == 'fast':
        ss.switchToSelectiveSearchFast()
    elif mode == 'quality':
        ss.switchToSelectiveSearchQuality()
    elif mode == 'single':
        ss.switchToSingleStrategy()
    else:
        raise ValueError(f"mode must be 'fast', 'quality' or 'single', got {mode!r}")
    if seed is not None and not _seed_c_rand(seed):
        warnings.warn('cannot reach the C library srand(): selective-search box order will '
                      'not be reproducible')
    rects = ss.process()
    if rects is None or len(rects) == 0:
        return np.array([[0, 0, w, h]], dtype=np.int32)
    return np.asarray(rects, dtype=np.int32).reshape(-1, 4)


def scale_boxes_back(boxes: np.ndarray, small_shape: Tuple[int, int], shape: Tuple[int, int]) -> np.ndarray:
    """Map ``xywh`` boxes found on a resized ``small_shape`` (h, w) copy to ``shape`` pixels.

    Each axis uses its own factor (the two are rounded to integer sizes separately); the box edges
    go outward (floor / ceil), so a box covers at least the original pixels of the small-image box,
    and every box stays inside the image with at least one pixel.
    """
    (sh, sw), (h, w) = small_shape, shape
    fx, fy = w / sw, h / sh
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.clip(np.floor(b[:, 0] * fx), 0, w - 1)
    y1 = np.clip(np.floor(b[:, 1] * fy), 0, h - 1)
    x2 = np.clip(np.ceil((b[:, 0] + b[:, 2]) * fx), x1 + 1, w)
    y2 = np.clip(np.ceil((b[:, 1] + b[:, 3]) * fy), y1 + 1, h)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.int32)


@TRANSFORMS.register_module()
class SelectiveSearch(BaseTransform):
    """Add ``results['proposals']``: raw selective-search boxes, int32 ``(B, 4)`` xywh.

    As ORL: OpenCV ``cv2.ximgproc.segmentation``, fast mode, on the full-resolution BGR image.

    Boxes are always in the pixels of ``results['ori_shape']`` (the decoded file's size), whatever
    size the search ran at: ``max_size`` below, or an image an earlier transform made smaller.

    Args:
        mode (str): ``'fast'`` (ORL), ``'quality'`` or ``'single'``.
        max_size (int, optional): Bound on the longer side of the image searched. A larger image
            is shrunk to it (``cv2.INTER_AREA``), searched, and its boxes are mapped back to the
            original pixels (:func:`scale_boxes_back`: outward-rounded, inside the image). The time
            of a search grows about with the pixel count, so this bounds the cost of large photos
            (``tools/benchmarks/selective_search_max_size.py`` measures time and recall per
            value). ``None`` (default, and the COCO configs): the full resolution, as the paper.
        num_threads (int): ``cv2.setNumThreads`` for the process running the transform; 1
            keeps data-loader workers from oversubscribing the cores.
        keep_img (bool): Keep ``results['img']``; off by default so workers do not send full
            images back to the main process when only the boxes are needed.
        seed (int, optional): C ``rand()`` seed set before each image, which makes OpenCV's
            box order reproducible (see :func:`selective_search`); ``None``: not reset.
    """

    def __init__(self,
                 mode: str = 'fast',
                 max_size: Optional[int] = None,
                 num_threads: int = 1,
                 keep_img: bool = False,
                 seed: Optional[int] = 1) -> None:
        if mode not in ('fast', 'quality', 'single'):
            raise ValueError(f"mode must be 'fast', 'quality' or 'single', got {mode!r}")
        if max_size is not None and max_size < 1:
            raise ValueError(f'max_size must be a positive int or None, got {max_size}')
        self.mode = mode
        self.max_size = max_size
        self.num_threads = num_threads
        self.keep_img = keep_img
        self.seed = seed

    def transform(self, results: dict) -> dict:
        if cv2.getNumThreads() != self.num_threads:
            cv2.setNumThreads(self.num_threads)
        img = results['img']
        h, w = img.shape[:2]
        if self.max_size is not None and max(h, w) > self.max_size:
            scale = self.max_size / max(h, w)
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        boxes = selective_search(img, self.mode, self.seed)
        shape = tuple(results.get('ori_shape') or (h, w))[:2]
        if tuple(img.shape[:2]) != shape:
            boxes = scale_boxes_back(boxes, img.shape[:2], shape)
        results['proposals'] = boxes
        if not self.keep_img:
            results.pop('img', None)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mode={self.mode!r}, max_size={self.max_size}, '
                f'num_threads={self.num_threads}, keep_img={self.keep_img}, seed={self.seed})')
