"""Scene-image list for self-supervised pre-training and mining: COCO-format JSONs or a plain folder."""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.fileio import exists, join_path, list_dir_or_file, load
from mmengine.logging import MMLogger
from mmengine.utils import is_abs
from mmpretrain.registry import DATASETS

from ..store import IMG_EXTENSIONS  # one rule for "is an image file"
from .bad_images import DEFAULT_MAX_BAD_FRACTION, BadImageTally
from .transforms.loading import BadImageError, LoadImageOrSkip, read_image


@DATASETS.register_module()
class SceneImageDataset(BaseDataset):
    """Images of scenes, in a fixed order, with their COCO boxes when the JSON has them.

    Sources (``ann_file``):

    - one COCO-format JSON, or a list of them (e.g. COCO ``instances_train2017.json`` followed by
      ``image_info_unlabeled2017.json`` for COCO+). Images come in the order of each JSON's ``images``
      list, the JSONs concatenated in the order given: the 0-based position is the index that the
      official ORL KNN / correspondence files use. Labels are never needed; when a JSON has
      ``annotations`` every one of its images gets ``gt_bboxes`` (float32 (n, 4) xyxy) and
      ``gt_labels`` (int64 (n,), index into ``metainfo['classes']``); crowd and empty boxes are left out.
      When the JSON has ``segmentation`` fields, an image whose kept objects all have one also gets
      ``gt_masks``: those segmentations as given (polygons or RLE), aligned with ``gt_bboxes``
      (the mining metrics judge "a box lies inside an object" on them; they stay out of the
      pipeline's input).
    - ``''``: every image file under ``data_prefix['img_path']`` (recursive), sorted by relative path.

    Each data_info has ``img_path``, ``img_id`` (COCO id; the position for folders), ``sample_idx``
    (dataset index), ``position`` (0-based position in the concatenated source lists), ``file_name``
    (as in the JSON / relative to the folder), ``source`` (its annotation file or folder) and
    ``width``/``height`` when the JSON gives them.
    ``sample_idx == position`` unless ``check_files`` dropped images.

    Missing image files: by default they are found lazily, when the loading transform runs, and the
    :class:`FileNotFoundError` names the file, the dataset position and the annotation file. With
    ``check_files=True`` the existence of every file is checked once at initialisation; missing files
    are skipped, counted, logged (``self.skipped`` lists ``dict(index, file_name, reason)`` with the
    source position) and the dataset gets shorter, so its indices no longer match position-based
    mining files made from the full list (``position`` keeps the original one).

    Unreadable images in training (``LoadImageOrSkip`` in the pipeline raises ``BadImageError`` for
    missing, empty, truncated or corrupt files): the sample is replaced by another random one
    (mmengine's re-draw), the file is named once in a warning with its reason and counted, and the
    run stops with an error naming every unreadable file it finds when more than ``max_bad_fraction``
    of the images are unreadable (:mod:`~orl_plugin.datasets.bad_images`: the rule of every stage;
    :class:`~orl_plugin.datasets.bad_images.BadImageTally` is shared by the loader workers). In test
    mode (the mining steps) the error goes to the caller, which skips the image and applies the same
    rule.

    Args:
        ann_file: COCO-format JSON path(s), relative to ``data_root`` unless absolute; ``''`` for a folder.
        data_root: root joined to relative ``ann_file`` and ``data_prefix`` paths.
        data_prefix: ``dict(img_path=...)`` for all sources, or one such dict per annotation file.
        metainfo: ``dict(classes=...)`` to fix the class order (categories are matched by name);
            default: the JSON categories sorted by id.
        check_files: check at init that every image exists, skipping (and counting) missing ones.
        max_bad_fraction: the share of unreadable images above which a stage reading this data set
            stops (default 0.5: a wrong path or a broken folder); ``None``: never stop.
        backend_args: mmengine file backend arguments for reading JSONs and listing folders.
        with_masks: keep the JSON's segmentations as ``gt_masks``; ``None`` (default): in test mode only
            (mining and evaluation read them; training never does); ``False`` leaves them
            out (COCO's polygons are most of its annotation file: training needs none of them).
        **kwargs: the other :class:`mmengine.dataset.BaseDataset` arguments (``pipeline``,
            ``test_mode``, ``lazy_init``, ``indices``, ``serialize_data``, ...).
    """

    METAINFO: dict = dict(classes=())

    def __init__(self,
                 ann_file: Union[str, Sequence[str]] = '',
                 data_root: str = '',
                 data_prefix: Union[dict, Sequence[dict]] = dict(img_path=''),
                 metainfo: Optional[dict] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 check_files: bool = False,
                 backend_args: Optional[dict] = None,
                 max_bad_fraction: Optional[float] = DEFAULT_MAX_BAD_FRACTION,
                 with_masks: Optional[bool] = None,
                 **kwargs: Any) -> None:
        if isinstance(ann_file, (list, tuple)):
            ann_files = [str(a) for a in ann_file]
        else:
            ann_files = [str(ann_file)] if ann_file else []
        if isinstance(data_prefix, dict):
            prefixes = [dict(data_prefix)] * max(len(ann_files), 1)
        else:
            prefixes = [dict(p) for p in data_prefix]
            if len(prefixes) == 1:
                prefixes = prefixes * max(len(ann_files), 1)
            if len(prefixes) != max(len(ann_files), 1):
                raise ValueError(f'SceneImageDataset: got {len(prefixes)} data_prefix dicts for '
                                 f'{len(ann_files)} ann files; give one per ann file or a single one')
        for p in prefixes:
            if 'img_path' not in p:
                raise ValueError(f'SceneImageDataset: data_prefix {p} has no "img_path" key')
            if p['img_path'] is None:
                p['img_path'] = ''
        self._ann_files = ann_files
        self._prefixes = prefixes
        self.check_files = check_files
        self.backend_args = copy.deepcopy(backend_args)
        self.skipped: List[dict] = []
        self.max_bad_fraction = max_bad_fraction
        self.with_masks = with_masks
        self.bad_images: Optional[BadImageTally] = None
        self._user_classes = metainfo is not None and 'classes' in metainfo
        super().__init__(
            ann_file=ann_file if isinstance(ann_file, str) else list(ann_files),
            data_root=data_root,
            data_prefix=prefixes[0],
            metainfo=metainfo,
            pipeline=list(pipeline),
            **kwargs)

    # -- paths ------------------------------------------------------------------------------------

    def _join_prefix(self) -> None:
        """Join ``data_root`` to every relative ann file and image prefix (one per source)."""

        def join(path: str) -> str:
            return path if (not path or is_abs(path) or not self.data_root) else join_path(self.data_root, path)

        self._ann_files = [join(a) for a in self._ann_files]
        self._prefixes = [{k: join(v) for k, v in p.items()} for p in self._prefixes]
        if isinstance(self.ann_file, str):
            self.ann_file = self._ann_files[0] if self._ann_files else ''
        else:
            self.ann_file = list(self._ann_files)
        self.data_prefix = dict(self._prefixes[0])

    @property
    def ann_files(self) -> List[str]:
        """The annotation files, joined with ``data_root``, in order."""
        return list(self._ann_files)

    # -- loading ----------------------------------------------------------------------------------

    def load_data_list(self) -> List[dict]:
        """Read every source in order; see the class docstring for the fields."""
        if self._ann_files:
            data_list = self._load_coco_sources()
        else:
            data_list = self._load_folder(self._prefixes[0]['img_path'])
        for position, info in enumerate(data_list):
            info['position'] = position
        if self.check_files:
            data_list = self._drop_missing(data_list)
        return data_list

    def _load_folder(self, folder: str) -> List[dict]:
        if not folder:
            raise ValueError('SceneImageDataset: ann_file is empty, so data_prefix["img_path"] must name '
                             'a folder of images')
        if not exists(folder, backend_args=self.backend_args):
            raise FileNotFoundError(f'SceneImageDataset: image folder {folder!r} does not exist')
        suffixes = tuple(set(IMG_EXTENSIONS + tuple(e.upper() for e in IMG_EXTENSIONS)))
        names = sorted(
            list_dir_or_file(folder, list_dir=False, suffix=suffixes, recursive=True, backend_args=self.backend_args))
        if not self._user_classes:
            self._metainfo['classes'] = ()
        return [
            dict(img_path=join_path(folder, name), img_id=i, file_name=name, source=folder)
            for i, name in enumerate(names)
        ]

    def _load_coco_sources(self) -> List[dict]:
        raw = []
        for ann_file in self._ann_files:
            content = load(ann_file, backend_args=self.backend_args)
            if not isinstance(content, dict):
                raise ValueError(f'{ann_file}: expected a COCO-format JSON object, got {type(content).__name__}')
            if not isinstance(content.get('images'), list):
                raise ValueError(f'{ann_file}: missing or invalid field "images" (a list is required)')
            raw.append(content)
        cat_names = self._resolve_classes(raw)
        name_to_label = {name: i for i, name in enumerate(cat_names)}

        data_list: List[dict] = []
        for ann_file, prefix, content in zip(self._ann_files, self._prefixes, raw):
            cat_id_to_label = {
                c['id']: name_to_label[c['name']] for c in content.get('categories') or [] if c['name'] in name_to_label
            }
            has_anns = 'annotations' in content
            anns_by_image = self._group_annotations(ann_file, content) if has_anns else {}
            with_masks = self.test_mode if self.with_masks is None else self.with_masks
            has_masks = has_anns and with_masks and any(ann.get('segmentation') for ann in content['annotations'])
            for k, img in enumerate(content['images']):
                for field in ('file_name', 'id'):
                    if not isinstance(img, dict) or field not in img:
                        raise ValueError(f'{ann_file}: images[{k}] is missing field "{field}"')
                info = dict(
                    img_path=join_path(prefix['img_path'], img['file_name']),
                    img_id=img['id'],
                    file_name=img['file_name'],
                    source=ann_file)
                if 'width' in img and 'height' in img:
                    info['width'], info['height'] = int(img['width']), int(img['height'])
                if has_anns:
                    info['gt_bboxes'], info['gt_labels'], masks = self._parse_boxes(
                        anns_by_image.get(img['id'], []), cat_id_to_label, info.get('width'), info.get('height'))
                    if has_masks and all(m for m in masks):
                        info['gt_masks'] = masks
                data_list.append(info)
        return data_list

    def _resolve_classes(self, raw: List[dict]) -> Tuple[str, ...]:
        """Class order: the user's ``metainfo['classes']``, else the JSON categories sorted by id."""
        if self._user_classes:
            self._metainfo['classes'] = tuple(self._metainfo['classes'])
            return self._metainfo['classes']
        found: Optional[Tuple[Tuple[Any, str], ...]] = None
        found_in = ''
        for ann_file, content in zip(self._ann_files, raw):
            cats = content.get('categories') or []
            for k, c in enumerate(cats):
                for field in ('id', 'name'):
                    if field not in c:
                        raise ValueError(f'{ann_file}: categories[{k}] is missing field "{field}"')
            if not cats:
                continue
            these = tuple(sorted((c['id'], c['name']) for c in cats))
            if found is None:
                found, found_in = these, ann_file
            elif these != found:
                raise ValueError(f'{ann_file}: field "categories" differs from the one in {found_in}; '
                                 'the annotation files must share their categories')
        classes = tuple(name for _, name in found) if found else ()
        self._metainfo['classes'] = classes
        return classes

    @staticmethod
    def _group_annotations(ann_file: str, content: dict) -> Dict[Any, List[dict]]:
        anns = content['annotations']
        if not isinstance(anns, list):
            raise ValueError(f'{ann_file}: field "annotations" must be a list')
        grouped: Dict[Any, List[dict]] = {}
        for k, ann in enumerate(anns):
            for field in ('image_id', 'bbox', 'category_id'):
                if field not in ann:
                    raise ValueError(f'{ann_file}: annotations[{k}] is missing field "{field}"')
            grouped.setdefault(ann['image_id'], []).append(ann)
        return grouped

    @staticmethod
    def _parse_boxes(anns: List[dict], cat_id_to_label: Dict[Any, int], width: Optional[int],
                     height: Optional[int]) -> Tuple[np.ndarray, np.ndarray, List[Any]]:
        """COCO xywh -> xyxy float32, 0-based labels and the ``segmentation`` of each (``None``
        where it has none); skip crowd, unknown-class and empty boxes."""
        boxes, labels, masks = [], [], []
        for ann in anns:
            if ann.get('iscrowd', 0) or ann['category_id'] not in cat_id_to_label:
                continue
            x, y, w, h = (float(v) for v in ann['bbox'])
            if w < 1 or h < 1:
                continue
            if width is not None and height is not None:
                # Same rule as mmdet's CocoDataset: a box entirely outside its image is dropped.
                if max(0.0, min(x + w, width) - max(x, 0.0)) * max(0.0, min(y + h, height) - max(y, 0.0)) == 0:
                    continue
            boxes.append((x, y, x + w, y + h))
            labels.append(cat_id_to_label[ann['category_id']])
            masks.append(ann.get('segmentation') or None)
        return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64), masks)

    def _drop_missing(self, data_list: List[dict]) -> List[dict]:
        kept = []
        for info in data_list:
            if exists(info['img_path'], backend_args=self.backend_args):
                kept.append(info)
            else:
                self.skipped.append(
                    dict(
                        index=info['position'],
                        file_name=info['file_name'],
                        reason=f'image file not found: {info["img_path"]}'))
        if self.skipped:
            first = self.skipped[0]
            MMLogger.get_current_instance().warning(
                f'SceneImageDataset: skipped {len(self.skipped)} of {len(data_list)} images whose file is '
                f'missing (first: position {first["index"]}, {first["file_name"]!r}); dataset indices no '
                'longer equal source positions')
        return kept

    # -- access -----------------------------------------------------------------------------------

    def full_init(self) -> None:
        """Load the image list; in training also make the bad-image tally its workers share."""
        if self._fully_initialized:
            return
        super().full_init()
        if not self.test_mode:
            self.bad_images = BadImageTally(type(self).__name__, len(self), self.max_bad_fraction)

    def _img_path(self, idx: int) -> str:
        return self.get_data_info(idx)['img_path']

    def _read(self, path: str) -> Any:
        """Read one image as the pipeline's loader does (``BadImageError`` if it cannot be read)."""
        transforms = getattr(self.pipeline, 'transforms', [])
        if transforms and isinstance(transforms[0], LoadImageOrSkip):
            return transforms[0](dict(img_path=path))
        return read_image(path, backend_args=self.backend_args)

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline. In training an unreadable image gives ``None`` (mmengine then draws
        another sample) and is counted; a missing file under mmcv's loader raises an error that
        says where it comes from."""
        data_info = self.get_data_info(idx)
        # The masks are for the metrics (MiningLoop reads them from get_data_info), not the
        # pipeline: a ragged list per image would not collate.
        data_info.pop('gt_masks', None)
        try:
            results = self.pipeline(data_info)
        except BadImageError as e:
            if self.bad_images is None:
                raise
            self.bad_images.mark_bad(idx, e, self._img_path, self._read)
            return None
        except FileNotFoundError as e:
            if exists(data_info['img_path'], backend_args=self.backend_args):
                raise
            raise FileNotFoundError(
                f'image file not found: {data_info["img_path"]} (dataset index {data_info["sample_idx"]}, '
                f'position {data_info["position"]}, file_name {data_info["file_name"]!r}, from '
                f'{data_info["source"]})') from e
        if self.bad_images is not None:
            self.bad_images.mark_ok(idx)
        return results

    def get_cat_ids(self, idx: int) -> List[int]:
        """Labels present in image ``idx`` (for ``ClassBalancedDataset``); empty without annotations."""
        info = self.get_data_info(idx)
        return [int(x) for x in info.get('gt_labels', [])]


def scene_data_infos(cfg: Dict[str, Any], limit: int = 0) -> List[dict]:
    """Data infos of a data set config (``SceneImageDataset`` unless it names another type), its
    pipeline left out, built in mmpretrain's registry whatever scope the caller has; the first
    ``limit`` only when ``limit`` > 0. For tools that read images and boxes, not samples."""
    from mmengine.registry import DefaultScope
    cfg = dict(cfg, pipeline=[])
    cfg.setdefault('type', 'SceneImageDataset')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(cfg)
    n = min(len(dataset), limit) if limit > 0 else len(dataset)
    return [dataset.get_data_info(i) for i in range(n)]
