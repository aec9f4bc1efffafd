"""Image lists: reading one from COCO files or a folder, and the one check that a store matches it.

Every mined file is aligned by position with the image list it was mined on (neighbours are
0-based positions in it), so each reader of a store checks that list first:
:func:`check_image_list`.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, Sequence, Union

import numpy as np
from mmengine.fileio import list_dir_or_file

from .format import OfficialFormatError

# One rule for "is an image file" (the scene data set lists folders with it too).
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')

__all__ = ['IMG_EXTENSIONS', 'load_image_list', 'check_image_list']


def load_image_list(sources: Union[str, Sequence[str]]) -> tuple[list, np.ndarray]:
    """File names and ids of one or more COCO-format JSONs (concatenated in order), or of an
    image folder (image files under it, recursive, sorted by relative path; ids = positions),
    in the order ``SceneImageDataset`` lists them."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [os.fspath(sources)]
    names: list = []
    ids: list = []
    for src in sources:
        if osp.isdir(src):
            suffixes = tuple(set(IMG_EXTENSIONS + tuple(e.upper() for e in IMG_EXTENSIONS)))
            found = sorted(list_dir_or_file(src, list_dir=False, suffix=suffixes, recursive=True))
            ids.extend(range(len(names), len(names) + len(found)))
            names.extend(found)
            continue
        name = osp.abspath(src)
        try:
            with open(src, encoding='utf-8') as f:
                data = json.load(f)
        except ValueError as e:
            raise OfficialFormatError(f'{name}: not valid JSON ({e})') from None
        images = data.get('images') if isinstance(data, dict) else None
        if not isinstance(images, list):
            raise OfficialFormatError(f'{name}: field "images" missing or not a list '
                                      '(expected a COCO-format annotation file)')
        for i, im in enumerate(images):
            if not isinstance(im, dict) or 'file_name' not in im or 'id' not in im:
                raise OfficialFormatError(f'{name}: images[{i}] lacks "file_name" or "id"')
            names.append(im['file_name'])
            ids.append(im['id'])
    return names, np.asarray(ids, dtype=np.int64)


def check_image_list(store: Any,
                     infos: Sequence[dict],
                     *,
                     store_desc: str,
                     list_desc: str,
                     remedy: str = 'mine stage 2 on the same image list (same ann files, same '
                     'order)') -> None:
    """Raise ``ValueError`` unless ``store`` lists the images of ``infos``, in the same order.

    ``infos`` are data-set data infos (``file_name`` or ``img_path``, optionally ``img_id``).
    The lengths are always compared; where the store has an image list (an official
    selective-search JSON has none) also every file name, and every image id that both sides
    know (store id >= 0, ``img_id`` in the info). The message names both sides, the position and
    the two values, and ends with ``remedy``.
    """
    where = f'{store_desc} and {list_desc}'
    if store.num_images != len(infos):
        raise ValueError(f'{where} do not match: the store has {store.num_images} images, the '
                         f'image list {len(infos)}; {remedy}')
    if not store.has_image_list:
        return
    names = np.asarray(store.array('file_names'))
    ids = np.asarray(store.image_ids)
    for i, info in enumerate(infos):
        name = info.get('file_name') or osp.basename(info['img_path'])
        stored = bytes(names[i]).decode('utf-8')
        if stored and stored != name:
            raise ValueError(f'{where} do not match at position {i}: the store has file_name '
                             f'{stored!r}, the image list {name!r}; {remedy}')
        if 'img_id' in info and ids[i] >= 0 and int(ids[i]) != int(info['img_id']):
            raise ValueError(f'{where} do not match at position {i} ({name}): the store has '
                             f'image id {int(ids[i])}, the image list {info["img_id"]}; {remedy}')
