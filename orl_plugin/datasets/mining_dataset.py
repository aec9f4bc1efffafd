"""``ProposalDataset``: an image list joined with its raw selective-search boxes (stage 2c)."""
import copy
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset
from mmpretrain.registry import DATASETS

from ..store import MiningStore, StoreHandle, check_image_list


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
            # the masks (where the JSON has them) are for the 2c metric's "inside an object" rule
            image_list = dict(
                type='SceneImageDataset',
                ann_file=ann_file,
                data_root=data_root,
                data_prefix=data_prefix,
                with_masks=True)
        self.image_list_cfg = copy.deepcopy(image_list)
        self._image_metainfo: dict = {}
        self._store = StoreHandle(proposal_file, kind='selective_search')
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
        """The store, opened once per process (each worker maps it itself)."""
        return self._store.get()

    def load_data_list(self) -> List[dict]:
        """Build the image list and check that the store holds the same images, in order."""
        cfg = copy.deepcopy(self.image_list_cfg)
        # Read once and dropped: no need to serialise it (that costs a gc.collect()).
        cfg.update(pipeline=[], test_mode=True, lazy_init=False, serialize_data=False)
        images = DATASETS.build(cfg)
        self._image_metainfo = copy.deepcopy(getattr(images, 'metainfo', {}))
        infos = [images.get_data_info(i) for i in range(len(images))]
        store = self._get_store()
        check_image_list(
            store,
            infos,
            store_desc=f'selective-search file {store.path}',
            list_desc=f'image list {cfg.get("ann_file") or cfg.get("data_prefix")}',
            remedy='run selective search on the same image list (same ann files, same order)')
        for i, info in enumerate(infos):
            info['sample_idx'] = i
        return infos

    def get_data_info(self, idx: int) -> dict:
        """Data info of image ``idx`` with its raw ``proposals`` from the store."""
        info = super().get_data_info(idx)
        info['proposals'] = self._get_store().boxes(info['sample_idx'])
        return info
