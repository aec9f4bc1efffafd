"""The package's one image decoder (:func:`decode_image`) and its loading transform ``LoadImageOrSkip``.

Every stage reads images the way the official ORL code does, ``Image.open(path).convert('RGB')``:
the EXIF orientation tag is **ignored**, so an image comes back in its raw pixel orientation, the
one the boxes of official selective-search, KNN and correspondence files refer to (mmcv's pillow
path for ``flag='color'`` and ``cv2.IMREAD_COLOR`` would rotate it, and those boxes would no longer
fit). Both backends (``'pillow'``, the default, and ``'cv2'``) give that orientation.
"""
import io
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmpretrain.registry import TRANSFORMS
from PIL import Image, ImageOps, UnidentifiedImageError

#: Decoders :func:`decode_image` supports.
BACKENDS = ('pillow', 'cv2')
#: ``color_type`` values; the ``*_ignore_orientation`` names (mmcv's) are accepted as aliases.
COLOR_TYPES = ('color', 'grayscale')
_JPEG_SOI, _JPEG_EOI = b'\xff\xd8', b'\xff\xd9'


class BadImageError(Exception):
    """An image that cannot be read or decoded (missing, empty, truncated, corrupt, zero-sized).

    The one exception type of a bad image, naming the file and the reason: the training data sets count it and
    draw another sample, the stage-2 ``MiningLoop`` records the image as skipped; every other error (a bug in a
    later transform, say) still stops the run.

    ``kind`` is a short category (``'unreadable'``, ``'empty'``, ``'undecodable'``, ``'truncated'``,
    ``'zero-size'``); ``reason`` the full explanation.
    """

    def __init__(self, img_path: str, reason: str, kind: str = 'undecodable') -> None:
        super().__init__(f'{img_path}: {reason}')
        self.img_path = img_path
        self.reason = reason
        self.kind = kind

    def __reduce__(self):
        # Keeps the exception picklable across data-loader worker processes.
        return type(self), (self.img_path, self.reason, self.kind)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """``img.convert('RGB')`` as an array, except that 16-bit images are scaled to 8 bits.

    PIL's conversion clips 16-bit values at 255 (a washed-out, nearly white image); the high byte
    is what OpenCV keeps, so both backends agree. 8-bit images (all of COCO) are converted exactly
    as the official code does: grey replicated, alpha dropped (not composited), CMYK by PIL.
    """
    if img.mode.startswith('I;16') or img.mode in ('I', 'F'):
        arr = np.asarray(img)
        if img.mode.startswith('I;16') or arr.max(initial=0) > 255:
            arr = np.clip(arr, 0, 65535).astype(np.uint16) >> 8
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == 'RGB':
        img.load()
        return np.asarray(img)  # convert('RGB') would only copy it
    return np.asarray(img.convert('RGB'))


def jpeg_is_truncated(content: bytes) -> bool:
    """Whether JPEG bytes stop before the image's end-of-image marker.

    OpenCV decodes a JPEG cut short with the missing rows grey and no error (PIL raises). The
    common case (the file ends with the marker) costs nothing; otherwise the marker segments
    are walked, so data appended after the marker (phone "motion photos") is not mistaken for
    truncation, and the marker of an embedded EXIF thumbnail is not mistaken for the image's.
    """
    if content.rstrip(b'\0')[-2:] == _JPEG_EOI:
        return False
    n, pos = len(content), 2
    while pos + 1 < n:
        if content[pos] != 0xFF:
            return False  # not a marker where one must be: leave the verdict to the decoder
        marker = content[pos + 1]
        if marker == 0xD9:
            return False
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 1 if marker == 0xFF else 2  # fill byte, or a marker without a length
            continue
        if pos + 4 > n:
            return True
        pos += 2 + int.from_bytes(content[pos + 2:pos + 4], 'big')
        if marker == 0xDA:  # entropy-coded data: FF is followed by 00 (stuffing), RSTn or a marker
            while True:
                pos = content.find(b'\xff', pos)
                if pos < 0 or pos + 1 >= n:
                    return True
                nxt = content[pos + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    pos += 2
                elif nxt == 0xFF:
                    pos += 1
                else:
                    break
    return True


def decode_image(content: bytes,
                 img_path: str = '<bytes>',
                 backend: str = 'pillow',
                 color_type: str = 'color',
                 ignore_orientation: bool = True) -> np.ndarray:
    """Decode image bytes as the official ORL code reads images; raise :class:`BadImageError`.

    Args:
        content: The file's bytes.
        img_path: Named in errors.
        backend: ``'pillow'`` (the official decoder) or ``'cv2'``.
        color_type: ``'color'``: ``(H, W, 3)`` uint8 **BGR** (mmcv's channel order; the data
            preprocessors' ``to_rgb=True`` turns it into RGB); ``'grayscale'``: ``(H, W)``.
        ignore_orientation: Keep the raw pixel orientation whatever the EXIF tag says, like
            ``Image.open().convert('RGB')`` (default). ``False`` applies the EXIF rotation, which
            makes boxes mined on the raw orientation (every official file) point elsewhere.
    """
    color_type = color_type.replace('_ignore_orientation', '')
    if color_type not in COLOR_TYPES:
        raise ValueError(f'color_type must be one of {COLOR_TYPES}, got {color_type!r}')
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if len(content) == 0:
        raise BadImageError(img_path, 'empty file', 'empty')
    if backend == 'cv2' and content[:2] == _JPEG_SOI and jpeg_is_truncated(content):
        raise BadImageError(img_path, 'truncated JPEG (no end-of-image marker)', 'truncated')
    try:
        if backend == 'pillow':
            with Image.open(io.BytesIO(content)) as pil:
                if not ignore_orientation:
                    pil = ImageOps.exif_transpose(pil)
                rgb = _pil_to_rgb(pil)
            img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if color_type == 'color' else cv2.COLOR_RGB2GRAY)
        else:
            flag = cv2.IMREAD_COLOR if color_type == 'color' else cv2.IMREAD_GRAYSCALE
            if ignore_orientation:
                flag |= cv2.IMREAD_IGNORE_ORIENTATION
            img = cv2.imdecode(np.frombuffer(content, np.uint8), flag)
    except UnidentifiedImageError as e:
        raise BadImageError(img_path, 'cannot decode (not an image, or a format PIL does not '
                            'read)') from e
    except Exception as e:  # PIL raises on corrupt / truncated data
        kind = 'truncated' if 'truncated' in str(e) else 'undecodable'
        raise BadImageError(img_path, f'cannot decode ({type(e).__name__}: {e})', kind) from e
    if img is None:  # what cv2 answers for anything it cannot decode
        raise BadImageError(img_path, 'cannot decode (not an image or corrupt)')
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise BadImageError(img_path, f'zero-sized image {img.shape}', 'zero-size')
    return img


def read_image(img_path: str, backend_args: Optional[dict] = None, **decode_kwargs) -> np.ndarray:
    """Read ``img_path`` through mmengine's file backends and :func:`decode_image` it."""
    try:
        content = fileio.get(img_path, backend_args=backend_args)
    except Exception as e:  # missing file, permission, remote backend failure
        raise BadImageError(img_path, f'cannot read ({type(e).__name__}: {e})', 'unreadable') from e
    return decode_image(content, img_path, **decode_kwargs)


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageFromFile):
    """Load ``results['img_path']`` with :func:`read_image`; raise ``BadImageError`` if unusable.

    The one loading transform of every stage. By default it decodes like the official ORL code:
    PIL, EXIF orientation ignored (the raw pixel orientation, in which official box files are
    written), BGR uint8 out. Outputs as mmcv's ``LoadImageFromFile``: ``img``, ``img_shape``,
    ``ori_shape``.

    Args:
        to_float32: Cast the image to float32.
        color_type: ``'color'`` or ``'grayscale'`` (mmcv's ``*_ignore_orientation`` names work too).
        imdecode_backend: ``'pillow'`` (default, the official decoder) or ``'cv2'``.
        ignore_orientation: Ignore the EXIF orientation tag (default); ``False`` rotates by it.
        backend_args: mmengine file backend arguments.
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'pillow',
                 ignore_orientation: bool = True,
                 *,
                 backend_args: Optional[dict] = None) -> None:
        super().__init__(
            to_float32=to_float32, color_type=color_type, imdecode_backend=imdecode_backend, backend_args=backend_args)
        # Checked here, not on the first image.
        if color_type.replace('_ignore_orientation', '') not in COLOR_TYPES:
            raise ValueError(f'LoadImageOrSkip: color_type must be one of {COLOR_TYPES}, '
                             f'got {color_type!r}')
        if imdecode_backend not in BACKENDS:
            raise ValueError(f'LoadImageOrSkip: imdecode_backend must be one of {BACKENDS}, '
                             f'got {imdecode_backend!r}')
        self.ignore_orientation = ignore_orientation

    def transform(self, results: dict) -> dict:
        img = read_image(
            results['img_path'],
            self.backend_args,
            backend=self.imdecode_backend,
            color_type=self.color_type,
            ignore_orientation=self.ignore_orientation)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_float32={self.to_float32}, '
                f"color_type='{self.color_type}', imdecode_backend='{self.imdecode_backend}', "
                f'ignore_orientation={self.ignore_orientation}, backend_args={self.backend_args})')
