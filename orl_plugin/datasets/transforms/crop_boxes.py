"""Box crops for RoI encoding (stage 2c), pixel-identical to the official ORL crops."""
from typing import Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS
from PIL import Image

from .box_ops import fit_boxes


def crop_boxes(img: np.ndarray, boxes_xywh: np.ndarray, size: Union[int, Sequence[int]] = 224) -> np.ndarray:
    """Crop every box from ``img`` and resize it, as the official ORL code does.

    The official ``CorrespondenceDataset`` calls torchvision's
    ``resized_crop`` on a PIL image, i.e. ``img.crop((x, y, x + w, y + h))``
    followed by a bilinear PIL resize (PIL filters with support scaled to the
    shrink factor, so it is antialiased). This does exactly that, once per box,
    with the crop taken first so the filter never reads pixels outside the box.
    Resampling works on each channel on its own, so the channel order of
    ``img`` (BGR or RGB) is kept and does not change the values.

    Args:
        img: ``(H, W, 3)`` uint8 image.
        boxes_xywh: ``(B, 4)`` integer boxes ``[x, y, w, h]``.
        size: Output size, an int (square) or ``(h, w)``.

    Returns:
        ``(B, h, w, 3)`` uint8 array of crops, in box order.
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError('crop_boxes expects an (H, W, 3) uint8 image, got '
                         f'{img.shape} {img.dtype}')
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
    boxes = np.asarray(boxes_xywh).reshape(-1, 4)
    out = np.empty((len(boxes), out_h, out_w, 3), dtype=np.uint8)
    img_h, img_w = img.shape[:2]
    pil = None
    for k, (x, y, w, h) in enumerate(boxes.tolist()):
        x, y, w, h = int(x), int(y), int(w), int(h)
        if 0 <= x and 0 <= y and x + w <= img_w and y + h <= img_h:
            # Only the box's pixels go to PIL (PIL's crop copies the same pixels; the whole image
            # need not be converted for it).
            patch = Image.fromarray(np.ascontiguousarray(img[y:y + h, x:x + w]))
        else:  # PIL's crop pads what lies outside with black, as the official crop does
            pil = Image.fromarray(np.ascontiguousarray(img)) if pil is None else pil
            patch = pil.crop((x, y, x + w, y + h))
        out[k] = np.asarray(patch.resize((out_w, out_h), Image.BILINEAR))
    return out


@TRANSFORMS.register_module()
class CropBoxes(BaseTransform):
    """Crop ``results[boxes_key]`` from ``results['img']`` with :func:`crop_boxes`.

    Required keys: ``img`` (``(H, W, 3)`` uint8) and ``boxes_key``.
    Added key: ``crops`` (``(B, size, size, 3)`` uint8, same channel order as
    ``img``). Normalisation is left to the model's data preprocessor.
    Modified key: ``boxes_key``, fitted to the image first (clipped; a box
    wholly outside or of zero area dropped, counted in ``num_dropped_boxes``
    and reported naming the image; none left: the whole-image box), so that
    ``crops[k]`` is always the crop of ``results[boxes_key][k]``.

    Args:
        size: Crop output size (224 in the paper).
        boxes_key: Key of the ``xywh`` boxes to crop.
        keep_img: Keep the full image in ``results``; off by default so
            data-loader workers do not ship it to the main process.
    """

    def __init__(self,
                 size: Union[int, Sequence[int]] = 224,
                 boxes_key: str = 'kept_boxes',
                 keep_img: bool = False) -> None:
        self.size = size if isinstance(size, int) else tuple(size)
        self.boxes_key = boxes_key
        self.keep_img = keep_img
        self.num_dropped_boxes = 0

    def transform(self, results: dict) -> dict:
        if self.boxes_key not in results:
            raise KeyError(f'CropBoxes needs results["{self.boxes_key}"] for '
                           f'image {results.get("img_path", "?")}')
        img = results['img']
        boxes, dropped = fit_boxes(type(self).__name__, results, results[self.boxes_key], self.num_dropped_boxes)
        self.num_dropped_boxes += dropped
        if len(boxes) == 0:
            boxes = np.array([[0, 0, img.shape[1], img.shape[0]]], np.int64)
        results[self.boxes_key] = boxes
        results['crops'] = crop_boxes(img, boxes, self.size)
        if not self.keep_img:
            results.pop('img')
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'boxes_key={self.boxes_key!r}, keep_img={self.keep_img})')
