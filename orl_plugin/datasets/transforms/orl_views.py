"""The six views of one ORL stage-3 sample."""
from typing import List, Sequence

import numpy as np
from mmcv.transforms import BaseTransform, Compose

from mmpretrain.registry import TRANSFORMS

#: Order of the views in ``results['img']`` (and so in the model inputs).
ORL_VIEW_NAMES = ('img_v1', 'img_v2', 'intra_v1', 'intra_v2', 'inter_v1',
                  'inter_v2')


@TRANSFORMS.register_module()
class ORLViews(BaseTransform):
    """Build the image-level, intra-RoI and inter-RoI views of an ORL sample.

    ``results['img']`` becomes a list of six arrays, in the order of
    :data:`ORL_VIEW_NAMES`:

    - ``img_pipelines[0/1]`` on the query image (two global views);
    - ``patch_pipelines[0]`` on the intra box and ``patch_pipelines[1]`` on
      its jittered partner, both in the query image;
    - ``patch_pipelines[0]`` on the first box of the inter pair (query image)
      and ``patch_pipelines[1]`` on the second (neighbour image).

    The patch pipelines receive ``img`` (the whole image) and the box under
    ``roi_bbox``, so they start with :class:`RoICrop`. mmpretrain's
    ``PackInputs`` then turns the list into six tensors, collated per view,
    and ``SelfSupDataPreprocessor`` normalises each view batch.

    **Required keys:** ``img``, ``knn_img``, ``intra_key``,
    ``intra_partner_key``, ``inter_key``.
    **Modified keys:** ``img`` (list of 6 arrays). **Removed keys:**
    ``knn_img`` (not needed after cropping; keeps the results small).

    Args:
        img_pipelines (list[list[dict]]): The two image-view pipelines.
        patch_pipelines (list[list[dict]]): The two RoI-patch pipelines.
        intra_key (str): Key of the intra box ``[x, y, w, h]``.
        intra_partner_key (str): Key of its jittered partner.
        inter_key (str): Key of the inter pair (8 numbers: query box then
            neighbour box, ``xywh``).
    """

    def __init__(self,
                 img_pipelines: Sequence[list],
                 patch_pipelines: Sequence[list],
                 intra_key: str = 'intra_bbox',
                 intra_partner_key: str = 'intra_bbox_jittered',
                 inter_key: str = 'inter_bbox_pair') -> None:
        if len(img_pipelines) != 2 or len(patch_pipelines) != 2:
            raise ValueError('ORLViews needs exactly two img_pipelines and '
                             'two patch_pipelines, got '
                             f'{len(img_pipelines)} and '
                             f'{len(patch_pipelines)}')
        self.img_pipelines = [self._compose(p) for p in img_pipelines]
        self.patch_pipelines = [self._compose(p) for p in patch_pipelines]
        self.intra_key = intra_key
        self.intra_partner_key = intra_partner_key
        self.inter_key = inter_key

    @staticmethod
    def _compose(pipeline: list) -> Compose:
        # Built from mmpretrain's registry, so it works with or without the
        # runner's default scope.
        return Compose([
            TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in pipeline
        ])

    @staticmethod
    def _run(pipeline: Compose, img: np.ndarray, results: dict,
             **extra) -> np.ndarray:
        # Each view starts from a fresh, small dict: the pipelines never see
        # (or copy) the other image and boxes.
        view = dict(
            img=img,
            img_shape=img.shape[:2],
            ori_shape=img.shape[:2],
            img_path=results.get('img_path'),
            **extra)
        out = pipeline(view)
        if out is None:
            raise RuntimeError(f'ORLViews: a view pipeline returned None for '
                               f'{results.get("img_path")}')
        return out['img']

    def transform(self, results: dict) -> dict:
        """Replace ``img`` by the list of six views."""
        img = results['img']
        knn_img = results.pop('knn_img')
        knn_results = dict(img_path=results.get('knn_img_path'))
        pair = np.asarray(results[self.inter_key]).reshape(8)
        views: List[np.ndarray] = [
            self._run(self.img_pipelines[0], img, results),
            self._run(self.img_pipelines[1], img, results),
            self._run(self.patch_pipelines[0], img, results,
                      roi_bbox=results[self.intra_key]),
            self._run(self.patch_pipelines[1], img, results,
                      roi_bbox=results[self.intra_partner_key]),
            self._run(self.patch_pipelines[0], img, results,
                      roi_bbox=pair[:4]),
            self._run(self.patch_pipelines[1], knn_img, knn_results,
                      roi_bbox=pair[4:]),
        ]
        results['img'] = views
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(img_pipelines='
                f'{self.img_pipelines}, patch_pipelines='
                f'{self.patch_pipelines})')
