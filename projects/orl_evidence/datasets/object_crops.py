"""Ground-truth object crops of a COCO-format scene set, labelled by category: the data of the
*measuring instrument*, never of ORL.

The instrument is a classifier trained with the ground-truth labels on these crops. Used as the
stage-1 model of stage 2, it gives the features mining would get from a perfect stage 1, which
separates "stage 2 is correct" from "stage 1 learned". ORL itself never sees a label.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from orl_plugin.datasets.scene_dataset import SceneImageDataset


def context_box(box_xyxy: Sequence[float],
                context: float,
                width: Optional[int] = None,
                height: Optional[int] = None) -> np.ndarray:
    """Integer ``[x, y, w, h]`` box around ``box_xyxy`` grown by ``context`` times its width and
    height on every side, clipped to the image when its size is known."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    pad_w, pad_h = context * (x2 - x1), context * (y2 - y1)
    left, top = max(0, math.floor(x1 - pad_w)), max(0, math.floor(y1 - pad_h))
    right, bottom = math.ceil(x2 + pad_w), math.ceil(y2 + pad_h)
    if width is not None:
        right = min(int(width), right)
    if height is not None:
        bottom = min(int(height), bottom)
    return np.array([left, top, right - left, bottom - top], dtype=np.int64)


@DATASETS.register_module()
class ObjectCropDataset(BaseDataset):
    """One sample per annotated object of a COCO-format scene set, for the measuring instrument
    (a supervised classifier; not ORL, which never uses labels).

    Each data info holds the scene's ``img_path``, the object's category as ``gt_label`` (index
    into ``metainfo['classes']``, the scene set's categories sorted by id, as
    :class:`SceneImageDataset` reads them) and ``roi_bbox``, the object's box grown by
    ``context`` on every side (``[x, y, w, h]`` int, clipped to the image). The pipeline crops it,
    e.g. ``LoadImageOrSkip`` then ``RoICrop(size=64, box_key='roi_bbox')`` (the crop helper of
    stage 2c and 3), then ``PackInputs``.

    Args:
        ann_file: COCO-format JSON with annotations, relative to ``data_root`` unless absolute.
        data_root: root joined to relative ``ann_file`` and ``data_prefix`` paths.
        data_prefix: ``dict(img_path=...)``, the image folder.
        context: margin added on every side, as a fraction of the object's width / height.
        min_size: objects whose box has a side under this many pixels are left out.
        metainfo: ``dict(classes=...)`` to fix the class order (matched by category name).
        pipeline, **kwargs: as mmpretrain's ``BaseDataset``.
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 context: float = 0.1,
                 min_size: float = 4.0,
                 metainfo: Optional[dict] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 **kwargs: Any) -> None:
        if context < 0:
            raise ValueError(f'ObjectCropDataset: context must be >= 0, got {context}')
        self.context = float(context)
        self.min_size = float(min_size)
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            metainfo=metainfo,
            pipeline=pipeline,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """One data info per kept object of the scene set (see the class)."""
        classes = self._metainfo.get('classes')
        scenes = SceneImageDataset(
            ann_file=self.ann_file,
            data_prefix=dict(img_path=self.img_prefix),
            metainfo=dict(classes=classes) if classes else None,
            pipeline=[])
        self._metainfo['classes'] = tuple(scenes.metainfo['classes'])
        data_list: List[dict] = []
        num_images = 0
        for idx in range(len(scenes)):
            info = scenes.get_data_info(idx)
            if 'gt_bboxes' not in info:
                raise ValueError(f'ObjectCropDataset: {self.ann_file} has no "annotations"; the instrument '
                                 'needs ground-truth boxes and categories')
            boxes, labels = info['gt_bboxes'], info['gt_labels']
            sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            keep = np.flatnonzero(sides >= self.min_size)
            num_images += bool(len(keep))
            for k in keep:
                data_list.append(
                    dict(
                        img_path=info['img_path'],
                        img_id=info['img_id'],
                        file_name=info['file_name'],
                        object_index=int(k),
                        gt_label=int(labels[k]),
                        roi_bbox=context_box(boxes[k], self.context, info.get('width'), info.get('height'))))
        print_log(
            f'ObjectCropDataset (measuring-instrument data: ground-truth labels, not ORL): '
            f'{len(data_list)} object crops of {num_images} images, {len(self._metainfo["classes"])} '
            f'classes, from {self.ann_file}',
            logger='current')
        return data_list

    def extra_repr(self) -> List[str]:
        """The lines ``repr()`` adds: the file, the context, the role."""
        return [
            f'Annotation file: \t{self.ann_file}', f'Context: \t{self.context}',
            'Role: \tmeasuring instrument (ground-truth labels), not ORL'
        ]
