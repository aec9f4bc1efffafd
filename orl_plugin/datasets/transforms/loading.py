"""``LoadImageOrSkip``: image loading that reports a bad image as ``BadImageError``.

mmcv's ``LoadImageFromFile(ignore_empty=True)`` cannot mark an image as skipped: it returns
``None``, which mmengine's ``BaseDataset`` turns into an exception in test mode (and into a
silent retry with another image in training mode). This transform instead raises one dedicated
exception type, naming the file and the reason; the stage-2 ``MiningLoop`` catches exactly that
type in its data-loader workers, records the image as skipped and goes on, while every other
error (a bug in a later transform, say) still stops the run. Outside a mining loop the error
simply says which image is bad.
"""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio

from mmpretrain.registry import TRANSFORMS


class BadImageError(Exception):
    """An image that cannot be read or decoded (missing, empty, corrupt, zero-sized)."""

    def __init__(self, img_path: str, reason: str) -> None:
        super().__init__(f'{img_path}: {reason}')
        self.img_path = img_path
        self.reason = reason

    def __reduce__(self):
        # Keeps the exception picklable across data-loader worker processes.
        return type(self), (self.img_path, self.reason)


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageFromFile):
    """Load ``results['img_path']``; raise ``BadImageError`` if it cannot be used.

    Same arguments and outputs as mmcv's ``LoadImageFromFile`` (``img``, ``img_shape``,
    ``ori_shape``) except ``ignore_empty``, which is replaced by the error above.
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 *,
                 backend_args: Optional[dict] = None) -> None:
        super().__init__(to_float32=to_float32, color_type=color_type,
                         imdecode_backend=imdecode_backend, backend_args=backend_args)

    def transform(self, results: dict) -> dict:
        filename = results['img_path']
        try:
            img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except Exception as e:  # missing file, permission, remote backend failure
            raise BadImageError(filename, f'cannot read ({type(e).__name__}: {e})') from e
        if len(img_bytes) == 0:
            raise BadImageError(filename, 'empty file')
        try:
            img = mmcv.imfrombytes(img_bytes, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as e:  # decoder errors (PIL/turbojpeg raise, cv2 returns None)
            raise BadImageError(filename, f'cannot decode ({type(e).__name__}: {e})') from e
        if img is None:
            raise BadImageError(filename, 'cannot decode (not an image or corrupt)')
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise BadImageError(filename, f'zero-sized image {img.shape}')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_float32={self.to_float32}, '
                f"color_type='{self.color_type}', imdecode_backend='{self.imdecode_backend}', "
                f'backend_args={self.backend_args})')
