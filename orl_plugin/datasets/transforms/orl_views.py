"""The views of a sample: ``ImageViews`` (views of one image) and ``ORLViews`` (stage 3's six views), and the
direct way they run a view pipeline (:class:`ViewPipeline`)."""
from functools import partial
from typing import Callable, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform, Compose, RandomApply, RandomFlip, RandomGrayscale
from mmengine.registry import DefaultScope
from mmpretrain.datasets.transforms import ColorJitter, GaussianBlur, RandomResizedCrop, Solarize
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageEnhance, ImageOps

from .photometric import (PHOTOMETRIC_BACKENDS, brightness, contrast, opencv_blur, opencv_hue, pil_blur, pil_hue,
                          saturation, solarize)
from .roi_crop import RoICrop, fit_roi

#: Order of the views in ``results['img']`` (and so in the model inputs).
ORL_VIEW_NAMES = ('img_v1', 'img_v2', 'intra_v1', 'intra_v2', 'inter_v1', 'inter_v2')
#: How the direct path resizes a crop: torch's antialiased bilinear filter (PIL's filter, 4-5x faster; within
#: one level of PIL and unbiased, about 0.2 % of the pixels differ when shrinking) or PIL (as the transforms).
RESIZE_BACKENDS = ('torch', 'pillow')
#: An image of the direct path's photometric operations: PIL RGB ('pil') or uint8 BGR array ('opencv').
Image_ = Union[Image.Image, np.ndarray]
Photometric = Callable[[Image_], Image_]


def resize_crop(img: np.ndarray,
                x: int,
                y: int,
                w: int,
                h: int,
                out_h: int,
                out_w: int,
                backend: str = 'torch') -> np.ndarray:
    """The ``[x, y, w, h]`` crop of an ``(H, W, 3)`` uint8 image resized (bilinear, antialiased, as PIL) to
    ``(out_h, out_w, 3)`` uint8, in the image's channel order. The crop is a view: nothing but the crop is
    read and nothing is copied before the filter."""
    crop = img[y:y + h, x:x + w]
    if backend == 'pillow':
        return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((out_w, out_h), Image.BILINEAR))
    if not crop.flags.writeable:  # torch wants writable memory; only the crop is copied
        crop = crop.copy()
    # channels-last (HWC) is the layout of torch's fast uint8 kernel, and its output stays HWC
    t = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).contiguous(memory_format=torch.channels_last)
    out = F.interpolate(t, size=(out_h, out_w), mode='bilinear', antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


def _jitter_op(t: ColorJitter, photometric: str = 'pil') -> Photometric:
    # mmcv's pillow backend runs these PIL operations on the RGB image; 'opencv': the same on the BGR array
    if photometric == 'opencv':
        bgr = dict(order='bgr')
        enhance = (brightness, partial(contrast, **bgr), partial(saturation, **bgr), partial(opencv_hue, **bgr))
    else:
        enhance = (lambda img, f: ImageEnhance.Brightness(img).enhance(f),
                   lambda img, f: ImageEnhance.Contrast(img).enhance(f),
                   lambda img, f: ImageEnhance.Color(img).enhance(f), pil_hue)

    def run(img: Image_) -> Image_:
        order, *factors = t._rand_params()
        for index in order:
            if factors[index] is not None:
                img = enhance[index](img, factors[index])
        return img

    return run


def _grey_op(t: RandomGrayscale, photometric: str = 'pil') -> Photometric:
    # mmcv: the weighted sum of the BGR array's channels in float64 (in that order), truncated to uint8. The
    # same float64 products from tables, added in the same order: the same values, 3x cheaper.
    weights = np.array(t.channel_weights) / sum(t.channel_weights)
    tables = [np.arange(256) * w for w in weights]  # B, G, R
    blue, red = (0, 2) if photometric == 'opencv' else (2, 0)  # the array: BGR ('opencv') or RGB ('pil')

    def run(img: Image_) -> Image_:
        if t._random_prob() < t.prob:
            arr = np.asarray(img)
            grey = tables[0][arr[..., blue]]
            grey += tables[1][arr[..., 1]]
            grey += tables[2][arr[..., red]]
            grey = grey.astype(np.uint8)
            img = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR) if photometric == 'opencv' else Image.fromarray(
                grey, 'L').convert('RGB')
        return img

    return run


def _flip_op(t: RandomFlip, photometric: str = 'pil') -> Photometric:
    horizontal = t.direction == 'horizontal'
    if photometric == 'opencv':
        code = 1 if horizontal else 0
        return lambda img: cv2.flip(img, code) if t._choose_direction() else img
    flip = Image.FLIP_LEFT_RIGHT if horizontal else Image.FLIP_TOP_BOTTOM
    return lambda img: img.transpose(flip) if t._choose_direction() else img


def photometric_op(t: BaseTransform, photometric: str = 'pil') -> Optional[Photometric]:
    """A transform as an operation on one image, or None if it has none. It draws its random parameters
    with the transform's own methods, in the transform's order. With ``photometric='pil'`` it acts on a PIL
    RGB image and calls the PIL operations the transform calls (through mmcv's BGR/RGB copies), so it
    changes the image exactly as the transform does; with ``photometric='opencv'`` it acts on the BGR uint8
    array with PIL's arithmetic (:mod:`.photometric`): PIL's pixels for flip, brightness, contrast,
    saturation, grey and solarize, within rounding of them for the hue shift and the blur."""
    if isinstance(t, RandomFlip) and isinstance(t.prob, float) and t.direction in ('horizontal', 'vertical'):
        return _flip_op(t, photometric)
    if isinstance(t, RandomApply):
        ops = [photometric_op(c, photometric) for c in t.transforms.transforms]
        if any(op is None for op in ops):
            return None

        def apply(img: Image_) -> Image_:
            if t.random_apply():
                for op in ops:
                    img = op(img)
            return img

        return apply
    if isinstance(t, ColorJitter) and t.backend == 'pillow':
        return _jitter_op(t, photometric)
    if isinstance(t, RandomGrayscale) and t.keep_channels and t.color_format == 'bgr':
        return _grey_op(t, photometric)
    if isinstance(t, GaussianBlur):
        gaussian = opencv_blur if photometric == 'opencv' else pil_blur

        def blur(img: Image_) -> Image_:
            if t.random_disable():
                return img
            return gaussian(img, t.radius if t.radius is not None else t.random_magnitude())

        return blur
    if isinstance(t, Solarize):
        solar = solarize if photometric == 'opencv' else ImageOps.solarize

        def solarize_op(img: Image_) -> Image_:
            if t.random_disable():
                return img
            return solar(img, t.thr if t.thr is not None else t.random_magnitude())

        return solarize_op
    return None


class ViewPipeline:
    """One view's pipeline (transform configs, as any mmcv pipeline), run on an image and an optional box.

    When the pipeline is a crop (mmpretrain's ``RandomResizedCrop`` with bilinear interpolation, or
    :class:`RoICrop`) followed only by flips, colour jitter (pillow backend), grey, blur and solarize, it runs
    directly: the crop is cut from the decoded image as a view and resized (``resize``: torch's antialiased
    bilinear filter, or PIL's as the transforms), and the photometric transforms act on one PIL RGB image
    (:func:`photometric_op`), converted back to the image's BGR once at the end, or with
    ``photometric='opencv'`` on the BGR uint8 array itself (PIL's arithmetic). The random parameters are
    drawn by the transforms' own methods in the pipeline's order, so a seed gives the views of the mmcv
    pipeline: the same pixels with ``resize='pillow'`` (and ``photometric='pil'``). Any other pipeline runs
    as an mmcv ``Compose`` (``direct=False`` forces that).

    Args:
        pipeline: The view's transforms (dicts, built with mmpretrain's registry, or transforms).
        resize: 'torch' or 'pillow' (see :data:`RESIZE_BACKENDS`).
        direct: Use the direct path when the pipeline allows it.
        photometric: 'pil' or 'opencv': how the direct path runs the photometric transforms
            (see :data:`PHOTOMETRIC_BACKENDS`).
    """

    def __init__(self,
                 pipeline: Sequence[Union[dict, Callable]],
                 resize: str = 'torch',
                 direct: bool = True,
                 photometric: str = 'pil') -> None:
        if resize not in RESIZE_BACKENDS:
            raise ValueError(f'resize must be one of {RESIZE_BACKENDS}, got {resize!r}')
        if photometric not in PHOTOMETRIC_BACKENDS:
            raise ValueError(f'photometric must be one of {PHOTOMETRIC_BACKENDS}, got {photometric!r}')
        # Built in mmpretrain's scope, also the transforms that wrappers (RandomApply) build themselves.
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            self.transforms = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        self.compose = Compose(self.transforms)
        self.resize = resize
        self.photometric = photometric
        self._allow_direct = direct
        head = self.transforms[0] if self.transforms else None
        crop_ok = (isinstance(head, RandomResizedCrop) and head.interpolation == 'bilinear') or isinstance(
            head, RoICrop)
        ops = [photometric_op(t, photometric) for t in self.transforms[1:]]
        self.direct = direct and crop_ok and all(op is not None for op in ops)
        #: The direct path's photometric operations, in order (their transforms: ``transforms[1:]``).
        self.ops: List[Photometric] = ops if self.direct else []

    def _crop(self, img: np.ndarray, results: dict, box: Optional[np.ndarray]) -> np.ndarray:
        head = self.transforms[0]
        if isinstance(head, RandomResizedCrop):
            y, x, h, w = head.rand_crop_params(img)
            out_h, out_w = head.scale
        else:
            x, y, w, h = fit_roi(box, img.shape[1], img.shape[0], head.box_key, results.get('img_path', '?'))
            out_h, out_w = (head.size, head.size) if isinstance(head.size, int) else head.size
        return resize_crop(img, x, y, w, h, out_h, out_w, self.resize)

    def __call__(self, img: np.ndarray, results: dict, box: Optional[np.ndarray] = None) -> np.ndarray:
        """The view of ``img`` (uint8 HWC, BGR), for the box when the pipeline crops one."""
        if not self.direct:
            view = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_path=results.get('img_path'))
            if box is not None:
                view[getattr(self.transforms[0], 'box_key', 'roi_bbox')] = box
            out = self.compose(view)
            if out is None:
                raise RuntimeError(f'a view pipeline returned None for {results.get("img_path")}')
            return out['img']
        view = self._crop(img, results, box)
        if not self.ops:
            return view
        if self.photometric == 'opencv':  # on the BGR array, no PIL image, no channel conversion
            for op in self.ops:
                view = op(view)
            return view
        pil = Image.fromarray(cv2.cvtColor(view, cv2.COLOR_BGR2RGB))
        for op in self.ops:
            pil = op(pil)
        return cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)

    def __reduce__(self):
        # The operations are closures over the transforms: rebuilt from them (spawned loader workers).
        return type(self), (self.transforms, self.resize, self._allow_direct, self.photometric)

    def __repr__(self) -> str:
        return (f'ViewPipeline(direct={self.direct}, resize={self.resize!r}, photometric={self.photometric!r}, '
                f'transforms={self.transforms})')


@TRANSFORMS.register_module()
class ImageViews(BaseTransform):
    """``results['img']`` becomes the list of one view per pipeline, like mmpretrain's
    ``MultiView(num_views=[1] * n)``, without copying the results (and the decoded image) for every view,
    and with each pipeline run by :class:`ViewPipeline` (directly when it is a crop and photometric
    transforms).

    Args:
        pipelines (list[list[dict]]): One pipeline per view.
        resize (str): How the direct path resizes crops: 'torch' (default) or 'pillow'.
        direct (bool): Use the direct path where a pipeline allows it. Default True.
        crop_only (bool): Run only each pipeline's first transform, its crop (to uint8); the rest runs in
            the model's data preprocessor on the device (``ViewAugmentDataPreprocessor``, given the same
            pipelines). Default False.
        photometric (str): How the direct path runs the photometric transforms: 'pil' (default, the
            reference: PIL operations on a PIL image) or 'opencv' (PIL's arithmetic on the uint8 array: the
            same draws, PIL's pixels but for the hue and blur's rare rounding, cheaper; see
            :data:`PHOTOMETRIC_BACKENDS`).
    """

    def __init__(self,
                 pipelines: Sequence[list],
                 resize: str = 'torch',
                 direct: bool = True,
                 crop_only: bool = False,
                 photometric: str = 'pil') -> None:
        self.pipelines = [ViewPipeline(p[:1] if crop_only else p, resize, direct, photometric) for p in pipelines]

    def transform(self, results: dict) -> dict:
        img = results['img']
        results['img'] = [p(img, results) for p in self.pipelines]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(pipelines={self.pipelines})'


@TRANSFORMS.register_module()
class ORLViews(BaseTransform):
    """Build the image-level, intra-RoI and inter-RoI views of an ORL sample.

    ``results['img']`` becomes a list of six arrays, in the order of :data:`ORL_VIEW_NAMES`:

    - ``img_pipelines[0/1]`` on the query image (two global views);
    - ``patch_pipelines[0]`` on the intra box and ``patch_pipelines[1]`` on its jittered partner, both in
      the query image;
    - ``patch_pipelines[0]`` on the first box of the inter pair (query image) and ``patch_pipelines[1]`` on
      the second (neighbour image).

    Each image is decoded once (by the data set) and every view is cut from it; the patch pipelines start
    with :class:`RoICrop`, which gets the box. Each pipeline runs through :class:`ViewPipeline`: directly
    when it is a crop followed by photometric transforms, else as an mmcv ``Compose`` on a small dict of
    its own (``img``, ``img_shape``, ``img_path`` and the box under ``roi_bbox``). mmpretrain's
    ``PackInputs`` then turns the list into six tensors, collated per view, and the model's data
    preprocessor normalises (and with GPU-side augmentation, augments) each view batch.

    **Required keys:** ``img``, ``knn_img``, ``intra_key``, ``intra_partner_key``, ``inter_key``.
    **Modified keys:** ``img`` (list of 6 arrays). **Removed keys:** ``knn_img`` (not needed after cropping;
    keeps the results small).

    Args:
        img_pipelines (list[list[dict]]): The two image-view pipelines.
        patch_pipelines (list[list[dict]]): The two RoI-patch pipelines.
        intra_key (str): Key of the intra box ``[x, y, w, h]``.
        intra_partner_key (str): Key of its jittered partner.
        inter_key (str): Key of the inter pair (8 numbers: query box then neighbour box, ``xywh``).
        resize (str): How the direct path resizes crops: 'torch' (default) or 'pillow'.
        direct (bool): Use the direct path where a pipeline allows it. Default True.
        crop_only (bool): Run only each pipeline's first transform, the image views' ``RandomResizedCrop``
            and the patches' ``RoICrop`` (to uint8); the rest runs in the model's data preprocessor on the
            device (``ViewAugmentDataPreprocessor``, given the same pipelines). Default False.
        photometric (str): How the direct path runs the photometric transforms: 'pil' (default, the
            reference: PIL operations on a PIL image) or 'opencv' (PIL's arithmetic on the uint8 array: the
            same draws, PIL's pixels but for the hue and blur's rare rounding, cheaper; see
            :data:`PHOTOMETRIC_BACKENDS`).
    """

    def __init__(self,
                 img_pipelines: Sequence[list],
                 patch_pipelines: Sequence[list],
                 intra_key: str = 'intra_bbox',
                 intra_partner_key: str = 'intra_bbox_jittered',
                 inter_key: str = 'inter_bbox_pair',
                 resize: str = 'torch',
                 direct: bool = True,
                 crop_only: bool = False,
                 photometric: str = 'pil') -> None:
        if len(img_pipelines) != 2 or len(patch_pipelines) != 2:
            raise ValueError('ORLViews needs exactly two img_pipelines and two patch_pipelines, got '
                             f'{len(img_pipelines)} and {len(patch_pipelines)}')
        self.img_pipelines = [
            ViewPipeline(p[:1] if crop_only else p, resize, direct, photometric) for p in img_pipelines
        ]
        self.patch_pipelines = [
            ViewPipeline(p[:1] if crop_only else p, resize, direct, photometric) for p in patch_pipelines
        ]
        self.intra_key = intra_key
        self.intra_partner_key = intra_partner_key
        self.inter_key = inter_key

    def transform(self, results: dict) -> dict:
        """Replace ``img`` by the list of six views."""
        img = results['img']
        knn_img = results.pop('knn_img')
        knn_results = dict(img_path=results.get('knn_img_path'))
        pair = np.asarray(results[self.inter_key]).reshape(8)
        img1, img2 = self.img_pipelines
        patch1, patch2 = self.patch_pipelines
        results['img'] = [
            img1(img, results),
            img2(img, results),
            patch1(img, results, results[self.intra_key]),
            patch2(img, results, results[self.intra_partner_key]),
            patch1(img, results, pair[:4]),
            patch2(knn_img, knn_results, pair[4:]),
        ]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(img_pipelines={self.img_pipelines}, '
                f'patch_pipelines={self.patch_pipelines})')
