"""Stage-3 data set of ORL: images plus their mined RoI correspondences."""
import copy
import logging
import math
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS

from ..store import MiningStore, StoreHandle, check_image_list
from .bad_images import DEFAULT_MAX_BAD_FRACTION, BadImageTally
from .transforms.box_ops import clip_boxes_xywh, warn_dropped_boxes
from .transforms.loading import BadImageError, LoadImageOrSkip
from .transforms.roi_crop import BoxOutsideImageError


@DATASETS.register_module()
class ORLDataset(BaseDataset):
    """Images of a scene data set with their stage-2 correspondence data.

    Every sample is one query image ``i`` (a position in the image list) and,
    drawn with ``np.random`` in this order:

    1. a neighbour slot ``j``, uniformly among the slots of ``knn(i)`` whose
       pair list is not empty; the neighbour image is ``knn(i)[j]``;
    2. an intra box, uniformly among the kept boxes of ``i``;
    3. an inter pair, uniformly among ``pairs(i, j)``.

    Both images are decoded here by ``LoadImageOrSkip`` (the package's one
    decoder: PIL, EXIF orientation ignored, so official box files fit). An
    unreadable image makes :meth:`prepare_data` return ``None``, mmengine's
    ``BaseDataset`` draws another sample, and the file is named once in the
    log and counted; the run stops with an error naming them when they pass
    ``max_bad_fraction`` (see :class:`BadImageTally`). Stored boxes partly
    outside their image are clipped to it; those wholly outside or of zero
    area are not drawn, and counted (``num_dropped_boxes``, this process)
    with a warning naming the image; a sample left with no box or pair is
    drawn again. The pipeline (``BoxJitter``, ``ORLViews``, ``PackInputs``)
    builds the views. Results keys given to the pipeline:
    ``img``, ``knn_img`` (uint8 HWC BGR), ``img_path``,
    ``knn_img_path``, ``store_idx``, ``knn_store_idx``, ``knn_slot``,
    ``intra_bbox`` (int64 ``[x, y, w, h]``) and ``inter_bbox_pair``
    (int64, 8: query box then neighbour box, ``xywh``).

    Images without kept boxes or without any pair (skipped in mining) are
    excluded; ``num_excluded`` counts them and a warning reports them.

    Args:
        correspondence_file (str): Native ``*.orlstore`` directory or official
            ORL correspondence JSON (relative paths are joined to
            ``data_root``). Its images must be the image list, in order.
        ann_file, data_root, data_prefix: The image list, as
            ``SceneImageDataset`` takes them (ignored when ``image_list`` is
            given).
        image_list (dict, optional): Config of the image-list data set
            instead (any data set whose data infos have ``img_path`` and
            ``file_name``).
        num_neighbours (int, optional): Only draw from the first (nearest)
            ``num_neighbours`` slots, like the official ``topk_knn_image``.
            Defaults to all stored neighbours.
        color_type, imdecode_backend, ignore_orientation, backend_args: As
            ``LoadImageOrSkip`` (defaults: colour, PIL, orientation ignored).
        max_bad_fraction (float, optional): Share of unreadable images above
            which training stops (default 0.5, the rule of every stage:
            :mod:`~orl_plugin.datasets.bad_images`); ``None``: never.
        pipeline, test_mode, lazy_init, max_refetch, serialize_data,
        metainfo: As mmengine's ``BaseDataset``.
    """

    def __init__(self,
                 correspondence_file: str,
                 ann_file: Union[str, List[str]] = '',
                 data_root: str = '',
                 data_prefix: Union[dict, List[dict]] = dict(img_path=''),
                 image_list: Optional[dict] = None,
                 num_neighbours: Optional[int] = None,
                 color_type: str = 'color',
                 imdecode_backend: str = 'pillow',
                 ignore_orientation: bool = True,
                 backend_args: Optional[dict] = None,
                 max_bad_fraction: Optional[float] = DEFAULT_MAX_BAD_FRACTION,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 metainfo: Optional[dict] = None,
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 max_refetch: int = 1000,
                 serialize_data: bool = True) -> None:
        if data_root and not osp.isabs(correspondence_file):
            correspondence_file = osp.join(data_root, correspondence_file)
        self.correspondence_file = correspondence_file
        if image_list is None:
            image_list = dict(type='SceneImageDataset', ann_file=ann_file, data_root=data_root, data_prefix=data_prefix)
        self.image_list_cfg = copy.deepcopy(image_list)
        self.num_neighbours = num_neighbours
        self.loader = LoadImageOrSkip(
            color_type=color_type,
            imdecode_backend=imdecode_backend,
            ignore_orientation=ignore_orientation,
            backend_args=backend_args)
        self.max_bad_fraction = max_bad_fraction
        self.bad_images: Optional[BadImageTally] = None
        self.num_dropped_boxes = 0
        self._warned_boxes: set = set()
        self.num_excluded = 0
        self._store = StoreHandle(correspondence_file, kind='correspondence')
        self._img_paths = np.zeros(0, dtype='S1')
        # The image list and the store resolve their own paths, so the base
        # class gets no ann_file / data_root to join.
        super().__init__(
            ann_file='',
            metainfo=metainfo,
            data_root='',
            data_prefix=dict(img_path=''),
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
            serialize_data=serialize_data)

    # ------------------------------------------------------------------ set-up
    def _describe_image_list(self) -> str:
        cfg = self.image_list_cfg
        ann = cfg.get('ann_file')
        if ann:
            return f'image list {ann}'
        return f'image list {cfg.get("type")} with data_prefix ' \
               f'{cfg.get("data_prefix")} under {cfg.get("data_root", "")!r}'

    def _build_image_list(self) -> List[dict]:
        cfg = copy.deepcopy(self.image_list_cfg)
        cfg['pipeline'] = []
        cfg['test_mode'] = True
        cfg['lazy_init'] = False
        dataset = DATASETS.build(cfg)
        images = [dataset.get_data_info(i) for i in range(len(dataset))]
        for i, info in enumerate(images):
            if info.get('position', i) != i:
                raise ValueError(f'{self._describe_image_list()} dropped images (first at '
                                 f'position {i}, e.g. with check_files=True); ORLDataset '
                                 'needs the full list that the correspondence file '
                                 f'{self.correspondence_file} was mined on')
        return images

    def _get_store(self) -> MiningStore:
        """The store, opened once per process (each worker maps it itself)."""
        return self._store.get()

    def load_data_list(self) -> List[dict]:
        """Check the store against the image list and list the usable images.
        """
        images = self._build_image_list()
        store = self._get_store()
        check_image_list(
            store, images, store_desc=f'correspondence file {store.path}', list_desc=self._describe_image_list())

        k = store.num_neighbours
        kk = k if self.num_neighbours is None else min(self.num_neighbours, k)
        if kk <= 0:
            raise ValueError(f'{self.correspondence_file}: no neighbours to '
                             f'draw from (stored k={k}, num_neighbours='
                             f'{self.num_neighbours})')
        n = store.num_images
        num_boxes = np.diff(np.asarray(store.array('box_offsets')))
        num_pairs = np.diff(np.asarray(store.array('pair_offsets'))).reshape(n, k)[:, :kk]
        usable = (num_boxes > 0) & (num_pairs > 0).any(axis=1)
        skipped = [s for s in store.skipped if 0 <= int(s['index']) < n]
        usable[[int(s['index']) for s in skipped]] = False
        excluded = np.flatnonzero(~usable)
        self.num_excluded = int(excluded.size)
        if excluded.size:
            examples = ', '.join(images[int(i)].get('file_name', images[int(i)]['img_path']) for i in excluded[:5])
            print_log(
                f'ORLDataset: excluded {excluded.size} of {n} images of '
                f'{self.correspondence_file} that have no kept boxes or no '
                f'RoI pairs ({len(skipped)} listed as skipped in mining), '
                f'e.g. {examples}',
                logger='current',
                level=logging.WARNING)
        if not usable.any():
            raise ValueError(f'{self.correspondence_file}: no image has both '
                             'kept boxes and RoI pairs')

        # One fixed-width bytes buffer for the neighbour paths instead of N
        # Python strings that every worker would copy-on-write.
        self._img_paths = np.array([info['img_path'].encode('utf-8') for info in images], dtype=bytes)
        data_list = []
        for i in np.flatnonzero(usable):
            info = images[int(i)]
            data_list.append(
                dict(
                    img_path=info['img_path'],
                    file_name=info.get('file_name', ''),
                    img_id=info.get('img_id', int(i)),
                    store_idx=int(i)))
        return data_list

    # ------------------------------------------------------------------ sampling
    def full_init(self) -> None:
        """Load and check the data list; then make the bad-image tally its workers share."""
        if self._fully_initialized:
            return
        super().full_init()
        _, world_size = get_dist_info()
        self.bad_images = BadImageTally(
            type(self).__name__,
            len(self._img_paths),
            self.max_bad_fraction,
            per_epoch=math.ceil(len(self) / world_size))

    def _img_path(self, position: int) -> str:
        return bytes(self._img_paths[position]).decode('utf-8')

    def _read(self, path: str) -> np.ndarray:
        """Decode one image as training does (``BadImageError`` if it cannot be read)."""
        return self.loader(dict(img_path=path))['img']

    def _load_image(self, position: int) -> Optional[np.ndarray]:
        """Decode image ``position`` of the image list; ``None`` (counted, and
        named once in the log) when it cannot be read."""
        try:
            img = self.loader(dict(img_path=self._img_path(position)))['img']
        except BadImageError as e:
            self.bad_images.mark_bad(position, e, self._img_path, self._read)
            return None
        self.bad_images.mark_ok(position)
        return img

    def _fit_boxes(self, position: int, boxes: np.ndarray, shape: tuple, pairs: np.ndarray, knn_shape: tuple) -> tuple:
        """Clip the boxes of the query image and the pair boxes to their
        images; drop (count, warn once per image) those with no pixel in it.
        """
        (h, w), (kh, kw) = shape[:2], knn_shape[:2]
        boxes, ok = clip_boxes_xywh(boxes, w, h)
        query, ok_q = clip_boxes_xywh(pairs[:, :4], w, h)
        other, ok_n = clip_boxes_xywh(pairs[:, 4:], kw, kh)
        ok_pairs = ok_q & ok_n
        dropped = int((~ok).sum() + (~ok_pairs).sum())
        if dropped:
            self.num_dropped_boxes += dropped
            if position not in self._warned_boxes:
                self._warned_boxes.add(position)
                warn_dropped_boxes(
                    type(self).__name__,
                    self._img_path(position),
                    dropped,
                    len(boxes) + len(pairs),
                    w,
                    h,
                    self.num_dropped_boxes,
                    what='kept boxes and RoI pairs')
        return boxes[ok], np.concatenate([query, other], axis=1)[ok_pairs]

    def prepare_data(self, idx: int) -> Optional[dict]:
        """Draw the neighbour, intra box and inter pair of sample ``idx``,
        load both images and run the pipeline (``None``, i.e. another sample,
        if an image is unreadable or no stored box fits it).
        """
        info = self.get_data_info(idx)
        store = self._get_store()
        i = info['store_idx']
        knn = store.knn(i)
        pair_lists = store.image_pairs(i)[:len(knn)]
        if self.num_neighbours is not None:
            pair_lists = pair_lists[:self.num_neighbours]
        slots = [j for j, p in enumerate(pair_lists) if len(p)]
        j = slots[np.random.randint(len(slots))]
        n = int(knn[j])

        img = self._load_image(i)
        if img is None:
            return None
        knn_img = self._load_image(n)
        if knn_img is None:
            return None
        boxes, pairs = self._fit_boxes(i, store.boxes(i), img.shape,
                                       np.asarray(pair_lists[j]).reshape(-1, 8), knn_img.shape)
        if not len(boxes) or not len(pairs):
            return None
        intra_bbox = boxes[np.random.randint(len(boxes))]
        pair = pairs[np.random.randint(len(pairs))]
        info.update(
            img=img,
            img_shape=img.shape[:2],
            ori_shape=img.shape[:2],
            knn_img=knn_img,
            knn_img_path=self._img_path(n),
            knn_store_idx=n,
            knn_slot=j,
            intra_bbox=intra_bbox,
            inter_bbox_pair=pair)
        try:
            return self.pipeline(info)
        except BoxOutsideImageError as e:
            # Only reachable with a pipeline that makes its own boxes: the
            # stored ones were fitted above.
            self.num_dropped_boxes += 1
            print_log(f'{type(self).__name__}: {e}; drawing another sample', logger='current', level=logging.WARNING)
            return None
