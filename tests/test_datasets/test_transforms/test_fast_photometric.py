"""The direct path's ``photometric='opencv'`` (the photometric chain on the uint8 array with PIL's
arithmetic) against the PIL reference: each op with fixed parameters (exact for brightness, contrast,
saturation, flip, grey and solarize; within stated tolerances for the hue and the blur), each transform's
operation with random ones, the views with random ones (same draws, same statistics), the COCO CPU configs
that use it, and the stage-3 data set with it."""
import os.path as osp
import pickle
import random
import zlib

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, make_correspondence_store, photo
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS, TRANSFORMS
from PIL import Image, ImageEnhance, ImageOps

import orl_plugin  # noqa: F401
from orl_plugin.datasets.transforms.orl_views import ViewPipeline, photometric_op
from orl_plugin.datasets.transforms.photometric import (brightness, contrast, opencv_blur, opencv_hue, pil_blur,
                                                        pil_hue, pil_luma, saturation, solarize)

STAGE1 = 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py'
STAGE3 = 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py'
# Tolerances against PIL (uint8 levels), per image: the OpenCV ops keep PIL's quantisation and differ only
# where a float32 sum lands on the other side of a rounding edge. Measured: hue under 0.3 % of the values,
# at most 6 levels (a pixel whose hue level truncates the other way), mean under 0.01; blur 0 for most
# sigmas, under 12 % of the values by 1-2 levels for sigmas whose box weights sum to 2**24 - 1 (1.0, 2.0).
HUE = dict(max_abs=8, mean_abs=0.03, differing=0.01)
BLUR = dict(max_abs=2, mean_abs=0.15, differing=0.15)
# colour jitter with the hue: HUE's levels stretched by up to 1.4x contrast and 1.4x brightness after it
JITTER = dict(max_abs=16, mean_abs=0.05, differing=0.01)


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _gap(a, b) -> dict:
    d = np.abs(np.asarray(a, dtype=np.int64) - np.asarray(b, dtype=np.int64))
    return dict(max_abs=int(d.max()), mean_abs=float(d.mean()), differing=float((d > 0).mean()))


def _within(gap: dict, tol: dict) -> bool:
    return all(gap[k] <= tol[k] for k in tol)


def _values(name: str, low: float, high: float, n: int = 12) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return np.concatenate([[low, high], rng.uniform(low, high, n - 2)])


@pytest.mark.parametrize('size', [(37, 53), (96, 96)])
def test_hue_is_pils(size):
    """12 factors over mmcv's whole range (-0.5..0.5, ends included): within HUE of PIL; the same op with
    the factor's sign flipped is 10x beyond the tolerance wherever that changes the hue (0.02..0.45)."""
    for i, f in enumerate(_values('hue', -0.5, 0.5)):
        rgb = photo(*size, seed=i)
        want = pil_hue(Image.fromarray(rgb), f)
        got = opencv_hue(rgb, f, 'rgb')
        assert _within(_gap(got, want), HUE), (f, _gap(got, want))
        assert (opencv_hue(rgb[..., ::-1], f, 'bgr') == got[..., ::-1]).all(), f  # BGR: the same pixels
        if 0.02 <= abs(f) <= 0.45:
            assert _gap(opencv_hue(rgb, -f, 'rgb'), want)['mean_abs'] > 10 * HUE['mean_abs'], f


@pytest.mark.parametrize('size', [(37, 53), (96, 96)])
def test_blur_is_pils(size):
    """12 sigmas over the configs' range (0.1..2.0, ends included) and PIL's worst case 1.0: within BLUR
    of PIL; the same op with sigma doubled or halved is beyond it (mean difference over 5x the tolerance)
    wherever the blur is more than a pixel wide (sigma >= 0.5)."""
    for i, sigma in enumerate(np.append(_values('blur', 0.1, 2.0), 1.0)):
        img = photo(*size, seed=20 + i)
        want = pil_blur(Image.fromarray(img), float(sigma))
        gap = _gap(opencv_blur(img, float(sigma)), want)
        assert _within(gap, BLUR), (sigma, gap)
        if sigma >= 0.5:
            for wrong in (2 * sigma, sigma / 2):
                assert _gap(opencv_blur(img, float(wrong)), want)['mean_abs'] > 5 * BLUR['mean_abs'], (sigma, wrong)


ENHANCE = dict(
    brightness=(brightness, ImageEnhance.Brightness),
    contrast=(contrast, ImageEnhance.Contrast),
    saturation=(saturation, ImageEnhance.Color))


def _rounded_blend(degenerate, img: np.ndarray, f: float) -> np.ndarray:
    """A wrong blend: PIL's float32 arithmetic, but rounded instead of truncated."""
    out = degenerate + np.float32(f) * (img.astype(np.float32) - degenerate)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('name', list(ENHANCE))
@pytest.mark.parametrize('size', [(37, 53), (96, 96)])
def test_enhance_is_pils_exactly(name, size):
    """12 factors over 0..2 (ends included: interpolation and extrapolation, ColorJitter's 0.6..1.4 inside)
    and 1: PIL's pixels exactly, on RGB and on BGR arrays. Wrong versions differ on every image: the factor
    off by 0.1, and rounding instead of PIL's truncation (non-integer factors)."""
    ours, pils = ENHANCE[name]
    luma_wrong = 0
    for i, f in enumerate(np.append(_values(name, 0.0, 2.0), 1.0)):
        rgb = np.ascontiguousarray(photo(*size, seed=40 + i))
        want = np.asarray(pils(Image.fromarray(rgb)).enhance(float(f)))
        order = {} if name == 'brightness' else dict(order='rgb')
        assert (ours(rgb, f, **order) == want).all(), f
        bgr_order = {} if name == 'brightness' else dict(order='bgr')
        assert (ours(np.ascontiguousarray(rgb[..., ::-1]), f, **bgr_order)[..., ::-1] == want).all(), f
        assert (ours(rgb, f + 0.1, **order) != want).any(), f
        if not float(f).is_integer():
            degenerate = dict(
                brightness=np.float32(0),
                contrast=np.float32(int(pil_luma(rgb, 'rgb').mean() + 0.5)),
                saturation=pil_luma(rgb, 'rgb')[..., None])[name]
            assert (_rounded_blend(degenerate, rgb, f) != want).any(), f
        if name != 'brightness':  # PIL's luma, not OpenCV's (other integer weights)
            assert (pil_luma(rgb, 'rgb') == np.asarray(Image.fromarray(rgb).convert('L'))).all()
            luma_wrong += (cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) != pil_luma(rgb, 'rgb')).any()
    assert name == 'brightness' or luma_wrong > 0


def test_solarize_is_pils_exactly():
    """12 thresholds over 0..256 (ends included, integers and fractions): PIL's ``ImageOps.solarize``
    exactly; inverting from the level above the threshold (``>`` for ``>=``) differs."""
    rgb = photo(64, 64, seed=60)
    thresholds = np.append(_values('solarize', 0, 256), [128, 127.5, 200])
    for thr in thresholds:
        want = np.asarray(ImageOps.solarize(Image.fromarray(rgb), thr))
        assert (solarize(rgb, thr) == want).all(), thr
        if float(thr).is_integer() and 0 < thr < 256:
            assert (solarize(rgb, thr + 1) != want).any(), thr


def _ops_cases():
    jitter = dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4)
    return [
        (dict(type='RandomFlip', prob=0.5), None),
        (dict(type='RandomFlip', prob=0.5, direction='vertical'), None),
        (dict(type='RandomGrayscale', prob=0.5, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)), None),
        (dict(type='Solarize', thr=128, prob=0.5), None),
        (dict(type='RandomApply', transforms=[jitter], prob=0.8), None),
        (dict(type='RandomApply', transforms=[dict(jitter, saturation=0.2, hue=0.1)], prob=0.8), JITTER),
        (dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5), BLUR),
    ]


@pytest.mark.parametrize('cfg,tol', _ops_cases())
def test_transform_ops_on_arrays_are_pils(cfg, tol):
    """Each transform's 'opencv' operation (on the BGR array) against its 'pil' one (on the PIL RGB image),
    20 seeds: the same random draws, and PIL's pixels (exactly, or within the blur's tolerance and the
    hue's, stretched by the jitter after it, when they run)."""
    t = TRANSFORMS.build(cfg)
    fast, ref = photometric_op(t, 'opencv'), photometric_op(t, 'pil')
    bgr = photo(48, 64, seed=70)
    for seed in range(20):
        np.random.seed(seed)
        random.seed(seed)
        got = fast(bgr)
        state = np.random.get_state()[1].tolist(), random.getstate()
        np.random.seed(seed)
        random.seed(seed)
        want = np.asarray(ref(Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))))[..., ::-1]
        assert state == (np.random.get_state()[1].tolist(), random.getstate()), seed
        assert got.dtype == np.uint8 and got.shape == bgr.shape
        if tol is None:
            assert (got == want).all(), seed
        else:
            assert _within(_gap(got, want), tol), (seed, _gap(got, want))


def _run(views, seed: int, img: np.ndarray, knn: np.ndarray):
    """The views of one sample and the random state after it (what was drawn)."""
    np.random.seed(seed)
    random.seed(seed)
    results = dict(
        img=img,
        knn_img=knn,
        img_shape=img.shape[:2],
        img_path='query.jpg',
        knn_img_path='neighbour.jpg',
        intra_bbox=np.array([20, 30, 150, 110]),
        intra_bbox_jittered=np.array([10, 40, 170, 90]),
        inter_bbox_pair=np.array([5, 5, 200, 150, 60, 20, 140, 70]))
    out = views(results)['img']
    return out, (np.random.get_state()[1].tolist(), np.random.get_state()[2], random.getstate())


def _views_cfg(rel: str) -> dict:
    cfg = Config.fromfile(osp.join(ROOT, rel))
    return cfg.train_dataloader.dataset.pipeline[1].to_dict()


@pytest.mark.parametrize('rel', [STAGE1, STAGE3])
def test_views_have_the_reference_draws_and_statistics(rel):
    """30 samples of the COCO config's views (stage 1: two 224 views; stage 3: two 224 views and four 96
    patches) with photometric 'opencv' and 'pil' (the reference), from the same seeds: every sample draws
    the same random numbers (the random state after it is the same), so the views can be compared one by
    one: per view at most 16 levels apart (HUE's 8, stretched by up to 1.4x contrast and 1.4x brightness
    after it), channel means within 0.5 levels (a view whose contrast reference, the rounded mean luma,
    rounds to the next level moves by |1 - factor| <= 0.4) and spread within 0.1; over all views the channel
    means within 0.01 on average, under 1 % of the values differing and no bias (mean signed difference
    under 0.005). Measured: at most 9 levels, one view in 180 moved 0.11 by its contrast mean, 0.003 on
    average, spread within 0.03, 0.3 % of the values, bias 0.001."""
    views = _views_cfg(rel)
    assert views['photometric'] == 'opencv'
    fast = TRANSFORMS.build(views)
    ref = TRANSFORMS.build(dict(views, photometric='pil'))
    pipelines = getattr(fast, 'pipelines', None) or fast.img_pipelines + fast.patch_pipelines
    assert all(p.direct and p.photometric == 'opencv' for p in pipelines)
    img, knn = photo(240, 320, 0), photo(200, 300, 1)  # BGR, as loaded
    signed, values, differing, means_moved = 0, 0, 0, []
    for seed in range(30):
        (a, draws_a), (b, draws_b) = _run(fast, seed, img, knn), _run(ref, seed, img, knn)
        assert draws_a == draws_b, seed
        for v, (x, y) in enumerate(zip(a, b)):
            assert x.shape == y.shape and x.dtype == y.dtype == np.uint8
            x, y = x.astype(np.int64), y.astype(np.int64)
            d = x - y
            assert np.abs(d).max() <= 16, (seed, v)
            moved = np.abs(x.mean((0, 1)) - y.mean((0, 1))).max()
            assert moved < 0.5 and abs(x.std() - y.std()) < 0.1, (seed, v)
            signed, values, differing = signed + d.sum(), values + d.size, differing + (d != 0).sum()
            means_moved.append(moved)
    assert np.mean(means_moved) < 0.01
    assert differing / values < 0.01
    assert abs(signed / values) < 0.005


def test_option_is_checked_and_survives_pickling():
    crop = dict(type='RandomResizedCrop', scale=32, interpolation='bilinear', backend='pillow')
    blur = dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=1.)
    with pytest.raises(ValueError, match="photometric must be one of \\('pil', 'opencv'\\), got 'cv'"):
        ViewPipeline([crop, blur], photometric='cv')
    copy = pickle.loads(pickle.dumps(ViewPipeline([crop, blur], photometric='opencv')))
    assert copy.direct and copy.photometric == 'opencv'


def test_coco_cpu_configs_use_it_and_decode_with_opencv():
    """The shipped COCO stage-1 and stage-3 CPU-augmentation configs: OpenCV photometric ops (the same draws
    and statistics, above) and OpenCV decoding (PIL's pixels on JPEG, test_decoding.py)."""
    s1 = Config.fromfile(osp.join(ROOT, STAGE1)).train_dataloader.dataset.pipeline
    assert s1[0].imdecode_backend == 'cv2'
    assert s1[1].type == 'ImageViews' and s1[1].photometric == 'opencv' and not s1[1].get('crop_only')
    s3 = Config.fromfile(osp.join(ROOT, STAGE3)).train_dataloader.dataset
    assert s3.imdecode_backend == 'cv2'
    assert s3.pipeline[1].type == 'ORLViews' and s3.pipeline[1].photometric == 'opencv'


def test_stage3_coco_dataset_with_opencv_photometric(tmp_path):
    """The COCO stage-3 CPU config's data set as shipped (OpenCV decoding, photometric='opencv') on a small
    synthetic set with a correspondence store: each sample packs the six views at the config's sizes."""

    from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes

    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, num_images=6, seed=0, img_size=(128, 128), workers=1)
    make_correspondence_store(root)
    cfg = Config.fromfile(osp.join(ROOT, STAGE3)).train_dataloader.dataset
    cfg.update(data_root=root, ann_file='annotations/instances_train.json', data_prefix=dict(img_path='images/'))
    ds = DATASETS.build(cfg)
    views = ds.pipeline.transforms[1]
    assert ds.loader.imdecode_backend == 'cv2'
    assert all(p.direct and p.photometric == 'opencv' for p in views.img_pipelines + views.patch_pipelines)
    np.random.seed(0)
    random.seed(0)
    for i in range(len(ds)):
        inputs = ds[i]['inputs']
        assert [tuple(x.shape) for x in inputs] == [(3, 224, 224)] * 2 + [(3, 96, 96)] * 4
        assert all(x.dtype == torch.uint8 for x in inputs)
