"""The CPU path's direct view pipelines (ViewPipeline, ImageViews, ORLViews): the same random draws and
pixels as the mmcv transforms (tolerance 0 with PIL's resize), torch's resize within one level of PIL's,
fallback for other pipelines, and crop_boxes as before."""
import os.path as osp
import random

import numpy as np
import pytest
from helpers import ROOT
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import TRANSFORMS
from PIL import Image

import orl_plugin  # noqa: F401
from orl_plugin.datasets.transforms import crop_boxes
from orl_plugin.datasets.transforms.orl_views import ViewPipeline, resize_crop
from orl_plugin.datasets.transforms.roi_crop import BoxOutsideImageError

STAGE3 = Config.fromfile(osp.join(ROOT, 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py'))


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """Photo-like BGR uint8: a smooth colour field with grain and a flat grey patch."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC)).astype(np.float64)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    img[h // 3:h // 2, w // 3:w // 2] = 128
    return img


def _sample(views, seed: int, img, knn) -> list:
    np.random.seed(seed)
    random.seed(seed)
    results = dict(
        img=img,
        knn_img=knn,
        img_path='query.jpg',
        knn_img_path='neighbour.jpg',
        intra_bbox=np.array([20, 30, 150, 110]),
        intra_bbox_jittered=np.array([10, 40, 170, 90]),
        inter_bbox_pair=np.array([5, 5, 200, 150, 60, 20, 40, 70]))  # a small box: upsampled to 96
    return views(results)['img']


def test_orl_views_direct_path_is_the_mmcv_pipeline():
    """Tolerance 0: 40 samples of the COCO stage-3 views (six views each; every op of both pipelines
    drawn many times), the direct path with PIL's resize against the mmcv transforms run one by one."""
    img, knn = _photo(240, 320, 0), _photo(200, 300, 1)
    ref = TRANSFORMS.build(dict(STAGE3.train_pipeline[1], direct=False))
    direct = TRANSFORMS.build(dict(STAGE3.train_pipeline[1], resize='pillow', photometric='pil'))
    assert all(p.direct for p in direct.img_pipelines + direct.patch_pipelines)
    assert not any(p.direct for p in ref.img_pipelines + ref.patch_pipelines)
    for seed in range(40):
        for v, (a, b) in enumerate(zip(_sample(ref, seed, img, knn), _sample(direct, seed, img, knn))):
            np.testing.assert_array_equal(a, b, err_msg=f'seed {seed} view {v}')


def test_orl_views_pickle():
    """Spawned data-loader workers get a copy that draws and crops the same."""
    import pickle
    img, knn = _photo(120, 160, 9), _photo(100, 150, 10)
    views = TRANSFORMS.build(STAGE3.train_pipeline[1])
    copy = pickle.loads(pickle.dumps(views))
    for a, b in zip(_sample(views, 3, img, knn), _sample(copy, 3, img, knn)):
        np.testing.assert_array_equal(a, b)


def test_image_views_direct_path_is_multiview():
    """ImageViews (stage 1's GPU-aug loader; here with the whole CPU views) gives MultiView's views."""
    img = _photo(240, 320, 2)
    views = [STAGE3.view_pipeline1, STAGE3.view_pipeline2]
    multi = TRANSFORMS.build(dict(type='MultiView', num_views=[1, 1], transforms=views))
    direct = TRANSFORMS.build(dict(type='ImageViews', pipelines=views, resize='pillow'))
    for seed in range(20):
        out = []
        for t in (multi, direct):
            np.random.seed(seed)
            random.seed(seed)
            out.append(t(dict(img=img, img_shape=img.shape[:2]))['img'])
        for a, b in zip(*out):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('seed', range(4))
def test_torch_resize_within_one_level_of_pil(seed):
    """torch's antialiased bilinear against PIL's on 30 random crops (shrinking and enlarging, also one axis
    each way): at most one level apart, on under 3 % of the pixels (about 0.2 % for shrinking crops like
    RandomResizedCrop's; up to a fifth for crops enlarged along one axis and shrunk along the other, where
    the two round their intermediate row differently), and unbiased (mean signed difference under 0.02)."""
    rng = np.random.default_rng(seed)
    img = _photo(240, 320, 10 + seed)
    differing, signed, total = 0, 0, 0
    for _ in range(30):
        w, h = int(rng.integers(8, 320)), int(rng.integers(8, 240))
        x, y = int(rng.integers(0, 321 - w)), int(rng.integers(0, 241 - h))
        out = int(rng.choice([32, 96, 224]))
        a = resize_crop(img, x, y, w, h, out, out, 'torch').astype(int)
        b = resize_crop(img, x, y, w, h, out, out, 'pillow').astype(int)
        assert np.abs(a - b).max() <= 1
        differing += int((a != b).sum())
        signed += int((a - b).sum())
        total += a.size
    assert differing / total < 0.03
    assert abs(signed / total) < 0.02


def test_torch_resize_keeps_the_views_close():
    """With torch's resize the views of the same draws stay within rounding of the mmcv pipeline's: mean
    absolute difference under half a level (the jitter's contrast can stretch a one-level difference)."""
    img, knn = _photo(240, 320, 3), _photo(200, 300, 4)
    ref = TRANSFORMS.build(dict(STAGE3.train_pipeline[1], direct=False))
    fast = TRANSFORMS.build(dict(STAGE3.train_pipeline[1], photometric='pil'))
    diffs = [
        np.abs(a.astype(int) - b.astype(int)).mean() for seed in range(10)
        for a, b in zip(_sample(ref, seed, img, knn), _sample(fast, seed, img, knn))
    ]
    assert np.mean(diffs) < 0.5


def test_other_pipelines_run_as_mmcv_compose():
    bicubic = dict(type='RandomResizedCrop', scale=32, interpolation='bicubic', backend='pillow')
    assert not ViewPipeline([bicubic, dict(type='RandomFlip', prob=0.5)]).direct
    assert not ViewPipeline([dict(type='RoICrop', size=32), dict(type='RandomErasing')]).direct
    assert ViewPipeline([dict(type='RoICrop', size=32)]).direct  # a crop alone: the GPU-aug loader
    img = _photo(64, 64, 5)
    np.random.seed(0)
    out = ViewPipeline([bicubic])(img, {})
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_box_outside_the_image_is_named():
    patch = ViewPipeline([dict(type='RoICrop', size=32)])
    with pytest.raises(BoxOutsideImageError, match=r'roi_bbox=\[400, 10, 20, 20\].*img\.jpg of size 64x48'):
        patch(_photo(48, 64, 6), dict(img_path='img.jpg'), np.array([400, 10, 20, 20]))
    # partly outside: clipped, as RoICrop does
    img = _photo(48, 64, 7)
    out = ViewPipeline([dict(type='RoICrop', size=16)], resize='pillow')(img, {}, np.array([50, 40, 30, 30]))
    ref = TRANSFORMS.build(dict(type='RoICrop', size=16))(dict(img=img, roi_bbox=np.array([50, 40, 30, 30])))
    np.testing.assert_array_equal(out, ref['img'])


def test_crop_boxes_as_pil_crop_and_resize():
    """Inside the image only the box is converted; a box across the border is padded black, as PIL's
    crop (the official TF.resized_crop) does; both as before."""
    img = _photo(48, 64, 8)
    pil = Image.fromarray(img)
    boxes = np.array([[0, 0, 64, 48], [10, 5, 20, 30], [50, 40, 30, 30], [-5, -5, 20, 20]])
    out = crop_boxes(img, boxes, 24)
    for box, got in zip(boxes.tolist(), out):
        x, y, w, h = box
        want = np.asarray(pil.crop((x, y, x + w, y + h)).resize((24, 24), Image.BILINEAR))
        np.testing.assert_array_equal(got, want)


def test_fit_roi_is_clip_boxes_xywh():
    """The one-box clip of the direct path rounds and clips as the data set's clip_boxes_xywh."""
    from orl_plugin.datasets.transforms.box_ops import clip_boxes_xywh
    from orl_plugin.datasets.transforms.roi_crop import fit_roi
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.integers(-80, 700, (400, 4)), rng.uniform(-80, 700, (400, 4)).round(1) + 0.5])
    clipped, valid = clip_boxes_xywh(boxes, 640, 480)
    for box, want, ok in zip(boxes, clipped, valid):
        if ok:
            assert fit_roi(box, 640, 480) == tuple(int(v) for v in want)
        else:
            with pytest.raises(BoxOutsideImageError):
                fit_roi(box, 640, 480)
