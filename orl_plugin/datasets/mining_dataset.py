"""``ProposalDataset``: an image list joined with its raw selective-search boxes (stage 2c)."""
import copy
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset

from mmpretrain.registry import DATASETS
from .orl_store import MiningStore


@DATASETS.register_module()
class ProposalDataset(BaseDataset):
    """Images of a scene data set, each with its raw proposals from a selective-search store.

    Image ``i`` of the image list (``SceneImageDataset`` by default) is joined with
    ``MiningStore.open(proposal_file).boxes(i)``: the store must list the same images in the
    same order, which is checked when the data set is built (lengths always; file names and
    image ids where the store has them: an official selective-search JSON has neither). A
    mismatch raises an error naming both files, the position and the two file names.

    The boxes are read from the memory-mapped store when a sample is fetched, not held in the
    data list, so data-loader workers share them through the page cache.

    Data info keys: those of the image list (``img_path``, ``file_name``, ``img_id``,
    ``sample_idx``, ``width``, ``height``, ``gt_bboxes``, ``gt_labels``, ...) plus
    ``proposals`` (``(N, 4)`` int32 ``xywh``, in the store's order).

    Args:
        proposal_file (str): Selective-search ``*.orlstore`` directory or official JSON
            (relative paths are joined to ``data_root``).
        ann_file, data_root, data_prefix: The image list, as ``SceneImageDataset`` takes them
            (ignored when ``image_list`` is given).
        image_list (dict, optional): Config of the image-list data set instead (any data set
            whose data infos have ``img_path``).
        pipeline, metainfo, test_mode, lazy_init, serialize_data: As mmengine's
            ``BaseDataset``.
    """

    def __init__(self,
                 proposal_file: str,
                 ann_file: Union[str, List[str]] = '',
                 data_root: str = '',
                 data_prefix: Union[dict, List[dict]] = dict(img_path=''),
                 image_list: Optional[dict] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 metainfo: Optional[dict] = None,
                 test_mode: bool = True,
                 lazy_init: bool = False,
                 serialize_data: bool = True) -> None:
        if data_root and not osp.isabs(proposal_file):
            proposal_file = osp.join(data_root, proposal_file)
        self.proposal_file = proposal_file
        if image_list is None:
            image_list = dict(
                type='SceneImageDataset',
                ann_file=ann_file,
                data_root=data_root,
                data_prefix=data_prefix)
        self.image_list_cfg = copy.deepcopy(image_list)
        self._image_metainfo: dict = {}
        self._store: Optional[MiningStore] = None
        self._store_pid: Optional[int] = None
        # The image list resolves its own paths: the base class gets none to join.
        super().__init__(
            ann_file='',
            metainfo=metainfo,
            data_root='',
            data_prefix=dict(img_path=''),
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            serialize_data=serialize_data)

    @property
    def metainfo(self) -> dict:
        """The image list's meta information (classes, ...), updated by ``metainfo``."""
        meta = copy.deepcopy(self._image_metainfo)
        meta.update(copy.deepcopy(self._metainfo))
        return meta

    def _get_store(self) -> MiningStore:
        """The store, opened once per process (memory maps are re-made in each worker)."""
        pid = os.getpid()
        if self._store is None or (self._store_pid != pid and self._store.source == 'store'):
            self._store = MiningStore.open(
                self.proposal_file, kind='selective_search', validate=self._store is None)
            self._store_pid = pid
        return self._store

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._store is not None and self._store.source == 'store':
            state['_store'] = None
        return state

    def load_data_list(self) -> List[dict]:
        """Build the image list and check that the store holds the same images, in order."""
        cfg = copy.deepcopy(self.image_list_cfg)
        # Read once and dropped: no need to serialise it (that costs a gc.collect()).
        cfg.update(pipeline=[], test_mode=True, lazy_init=False, serialize_data=False)
        images = DATASETS.build(cfg)
        self._image_metainfo = copy.deepcopy(getattr(images, 'metainfo', {}))
        infos = [images.get_data_info(i) for i in range(len(images))]
        store = self._get_store()
        where = (f'selective-search file {self.proposal_file} and image list '
                 f'{cfg.get("ann_file") or cfg.get("data_prefix")}')
        if store.num_images != len(infos):
            raise ValueError(
                f'{where} do not match: the store has {store.num_images} images, the image '
                f'list {len(infos)}; run selective search on the same image list (same ann '
                'files, same order)')
        if store.has_image_list:
            names = np.asarray(store.array('file_names'))
            ids = np.asarray(store.image_ids)
            for i, info in enumerate(infos):
                name = info.get('file_name', osp.basename(info['img_path']))
                stored = bytes(names[i]).decode('utf-8')
                if stored and stored != name:
                    raise ValueError(
                        f'{where} do not match at position {i}: the store has file_name '
                        f'{stored!r}, the image list {name!r}')
                if 'img_id' in info and ids[i] >= 0 and int(ids[i]) != int(info['img_id']):
                    raise ValueError(
                        f'{where} do not match at position {i} ({name}): the store has image '
                        f'id {int(ids[i])}, the image list {info["img_id"]}')
        for i, info in enumerate(infos):
            info['sample_idx'] = i
        return infos

    def get_data_info(self, idx: int) -> dict:
        """Data info of image ``idx`` with its raw ``proposals`` from the store."""
        info = super().get_data_info(idx)
        info['proposals'] = self._get_store().boxes(info['sample_idx'])
        return info
