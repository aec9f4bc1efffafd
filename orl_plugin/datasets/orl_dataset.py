"""Stage-3 data set of ORL: images plus their mined RoI correspondences."""
import copy
import logging
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import mmcv
import numpy as np
from mmengine import fileio
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmpretrain.registry import DATASETS
from ..store import MiningStore, StoreHandle, check_image_list


@DATASETS.register_module()
class ORLDataset(BaseDataset):
    """Images of a scene data set with their stage-2 correspondence data.

    Every sample is one query image ``i`` (a position in the image list) and,
    drawn with ``np.random`` in this order:

    1. a neighbour slot ``j``, uniformly among the slots of ``knn(i)`` whose
       pair list is not empty; the neighbour image is ``knn(i)[j]``;
    2. an intra box, uniformly among the kept boxes of ``i``;
    3. an inter pair, uniformly among ``pairs(i, j)``.

    Both images are loaded here (so a corrupt file makes :meth:`prepare_data`
    return ``None`` and mmengine's ``BaseDataset`` re-draws another sample, up
    to ``max_refetch`` times); the pipeline (``BoxJitter``, ``ORLViews``,
    ``PackInputs``) builds the views. Results keys given to the pipeline:
    ``img``, ``knn_img`` (uint8 HWC, BGR for the cv2 backend), ``img_path``,
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
        color_type (str): ``mmcv.imfrombytes`` flag. Defaults to 'color'.
        imdecode_backend (str): Defaults to 'cv2' (as ``LoadImageFromFile``).
        backend_args (dict, optional): mmengine file backend arguments.
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
                 imdecode_backend: str = 'cv2',
                 backend_args: Optional[dict] = None,
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
            image_list = dict(
                type='SceneImageDataset',
                ann_file=ann_file,
                data_root=data_root,
                data_prefix=data_prefix)
        self.image_list_cfg = copy.deepcopy(image_list)
        self.num_neighbours = num_neighbours
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args
        self.num_excluded = 0
        self._store = StoreHandle(correspondence_file, kind='correspondence')
        self._img_paths = np.zeros(0, dtype='S1')
        self._bad_images: set = set()
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
                raise ValueError(
                    f'{self._describe_image_list()} dropped images (first at '
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
            store,
            images,
            store_desc=f'correspondence file {store.path}',
            list_desc=self._describe_image_list())

        k = store.num_neighbours
        kk = k if self.num_neighbours is None else min(self.num_neighbours, k)
        if kk <= 0:
            raise ValueError(f'{self.correspondence_file}: no neighbours to '
                             f'draw from (stored k={k}, num_neighbours='
                             f'{self.num_neighbours})')
        n = store.num_images
        num_boxes = np.diff(np.asarray(store.array('box_offsets')))
        num_pairs = np.diff(np.asarray(
            store.array('pair_offsets'))).reshape(n, k)[:, :kk]
        usable = (num_boxes > 0) & (num_pairs > 0).any(axis=1)
        skipped = [s for s in store.skipped if 0 <= int(s['index']) < n]
        usable[[int(s['index']) for s in skipped]] = False
        excluded = np.flatnonzero(~usable)
        self.num_excluded = int(excluded.size)
        if excluded.size:
            examples = ', '.join(
                images[int(i)].get('file_name', images[int(i)]['img_path'])
                for i in excluded[:5])
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
        self._img_paths = np.array(
            [info['img_path'].encode('utf-8') for info in images], dtype=bytes)
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
    def _load_image(self, path: str) -> Optional[np.ndarray]:
        """Read an image; ``None`` (logged once per file) when it cannot be
        read or decoded."""
        error = 'decoder returned nothing'
        img = None
        try:
            img_bytes = fileio.get(path, backend_args=self.backend_args)
            img = mmcv.imfrombytes(
                img_bytes, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as e:  # any unreadable file is re-drawn, not fatal
            error = f'{type(e).__name__}: {e}'
        if img is None:
            if path not in self._bad_images:
                self._bad_images.add(path)
                print_log(
                    f'ORLDataset: cannot read image {path} ({error}); '
                    'drawing another sample',
                    logger='current',
                    level=logging.WARNING)
        return img

    def prepare_data(self, idx: int) -> Optional[dict]:
        """Draw the neighbour, intra box and inter pair of sample ``idx``,
        load both images and run the pipeline (``None`` if an image is bad).
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
        boxes = store.boxes(i)
        intra_bbox = boxes[np.random.randint(len(boxes))].astype(np.int64)
        pairs = pair_lists[j]
        pair = pairs[np.random.randint(len(pairs))].astype(np.int64)
        n = int(knn[j])
        knn_path = bytes(self._img_paths[n]).decode('utf-8')

        img = self._load_image(info['img_path'])
        if img is None:
            return None
        knn_img = self._load_image(knn_path)
        if knn_img is None:
            return None
        info.update(
            img=img,
            img_shape=img.shape[:2],
            ori_shape=img.shape[:2],
            knn_img=knn_img,
            knn_img_path=knn_path,
            knn_store_idx=n,
            knn_slot=j,
            intra_bbox=intra_bbox,
            inter_bbox_pair=pair)
        return self.pipeline(info)
