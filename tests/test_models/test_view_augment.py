"""GPU-side augmentation (ViewAugmentDataPreprocessor): each batched op gives the CPU transform's pixels for the
same parameters; the random parameters have the CPU pipeline's distributions; the views it makes have the
CPU pipeline's statistics; the *-gpuaug-* configs split their CPU configs' pipelines and train a step."""
import os.path as osp
import random
import zlib

import mmcv
import numpy as np
import pytest
import torch
from helpers import ROOT, make_correspondence_store, photo
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image, ImageFilter
from scipy import stats

import orl_plugin  # noqa: F401  (registers the components, patches mmcv.adjust_hue)
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.models.data_preprocessors import functional as F
from orl_plugin.models.data_preprocessors.batch_augment import BatchViewAugment

VIEWS = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/byol_views.py'))
GREY_WEIGHTS = (0.114, 0.587, 0.2989)  # the configs' BGR weights
GPUAUG = {  # GPU-side config: its CPU config
    'byol/byol_resnet50_8xb64-gpuaug-coslr-800e_coco.py': 'byol/byol_resnet50_8xb64-coslr-800e_coco.py',
    'byol/byol_resnet18_1xb32-gpuaug-coslr-30e_synthetic.py': 'byol/byol_resnet18_1xb32-coslr-30e_synthetic.py',
    'orl/stage3/orl_resnet50_8xb64-gpuaug-coslr-800e_coco.py': 'orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py',
    'orl/stage3/orl_resnet18_1xb16-gpuaug-coslr-30e_synthetic.py':
    'orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py',
}


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def _to_tensor(bgr: np.ndarray) -> torch.Tensor:
    """BGR HWC uint8 -> RGB (1, 3, H, W) float, the ops' layout."""
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)[None].float()


def _to_bgr(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()[..., ::-1].astype(np.uint8)


def _pil_blur(bgr, sigma):
    return np.asarray(Image.fromarray(bgr).filter(ImageFilter.GaussianBlur(radius=float(sigma))))


def _grey(bgr, _):
    t = TRANSFORMS.build(dict(type='RandomGrayscale', prob=1.0, keep_channels=True, channel_weights=GREY_WEIGHTS))
    return t(dict(img=bgr.copy()))['img']


# op: (batched op on RGB float, the CPU function on a BGR uint8 image, parameter range)
OPS = {
    'brightness': (F.adjust_brightness, lambda im, f: mmcv.adjust_brightness(im, f, backend='pillow'), (0.0, 1.6)),
    'contrast': (F.adjust_contrast, lambda im, f: mmcv.adjust_contrast(im, f, backend='pillow'), (0.0, 1.6)),
    'saturation': (F.adjust_saturation, lambda im, f: mmcv.adjust_color(im, f, backend='pillow'), (0.0, 1.6)),
    'hue': (F.adjust_hue, lambda im, f: mmcv.adjust_hue(im, f, backend='pillow'), (-0.5, 0.5)),
    'blur': (F.gaussian_blur, _pil_blur, (0.1, 2.0)),
    'solarize': (F.solarize, lambda im, t: mmcv.solarize(im, t), (0, 256)),
    'grayscale': (lambda x, _: F.grayscale(x, GREY_WEIGHTS, 'bgr'), _grey, (0, 1)),
    'hflip': (lambda x, _: F.hflip(x), lambda im, _: mmcv.imflip(im, 'horizontal'), (0, 1)),
}


@pytest.mark.parametrize('op', sorted(OPS))
@pytest.mark.parametrize('size', [(37, 53), (64, 48)])
def test_op_gives_the_cpu_transforms_pixels(op, size):
    """Tolerance 0: with the same parameters every batched op writes the CPU transform's uint8 values
    (PIL ImageEnhance/HSV/box-blur rounding reproduced), per sample of a batch with 12 parameters."""
    batched, cpu, (low, high) = OPS[op]
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    values = np.concatenate([[low, high], rng.uniform(low, high, 10)])
    if op == 'solarize':
        values = np.round(values)
    images = [photo(*size, seed=i) for i in range(len(values))]
    out = batched(torch.cat([_to_tensor(im) for im in images]), torch.tensor(values, dtype=torch.float64))
    for im, value, got in zip(images, values, out):
        want = cpu(im, float(value))
        np.testing.assert_array_equal(_to_bgr(got), want, err_msg=f'{op} {value}')


def _cpu_draws(pipeline, n: int, seed: int) -> dict:
    """What the CPU transforms of a view pipeline draw, n times, from their own random methods."""
    np.random.seed(seed)
    random.seed(seed)
    flip, jitter, grey, blur, solar = (TRANSFORMS.build(t) for t in pipeline)
    cj = jitter.transforms.transforms[0]
    out = {k: [] for k in ('flip', 'jitter', 'order', 'b', 'c', 's', 'h', 'grey', 'blur', 'sigma', 'solarize')}
    for _ in range(n):
        out['flip'].append(flip._choose_direction() == 'horizontal')
        out['jitter'].append(jitter.random_apply())
        order, b, c, s, h = cj._rand_params()
        out['order'].append(int(''.join(map(str, order)), 4))
        for k, v in zip('bcsh', (b, c, s, h)):
            out[k].append(v)
        out['grey'].append(grey._random_prob() < grey.prob)
        out['blur'].append(not blur.random_disable())
        out['sigma'].append(blur.random_magnitude())
        out['solarize'].append(not solar.random_disable())
    return {k: np.asarray(v) for k, v in out.items()}


def _device_draws(pipeline, n: int, seed: int) -> dict:
    flip, jitter, grey, blur, solar = BatchViewAugment(pipeline).sample(n, torch.Generator().manual_seed(seed))
    cj = jitter['ops'][0]
    order = cj['order'].numpy()
    return dict(
        flip=flip['on'].numpy(),
        jitter=jitter['on'].numpy(),
        order=(order * 4**np.arange(3, -1, -1)).sum(1),
        b=cj['factors'][0].numpy(),
        c=cj['factors'][1].numpy(),
        s=cj['factors'][2].numpy(),
        h=cj['factors'][3].numpy(),
        grey=grey['on'].numpy(),
        blur=blur['on'].numpy(),
        sigma=blur['magnitude'].numpy(),
        solarize=solar['on'].numpy())


@pytest.mark.parametrize('view', [1, 2])
def test_random_parameters_have_the_cpu_distributions(view):
    """20,000 draws each: how often each op applies (two-proportion z-test, |z| < 4.5), the colour-jitter
    factors and the blur sigma (two-sample Kolmogorov-Smirnov, p > 1e-4), the jitter order (chi-square
    over the 24 permutations, p > 1e-4); and the rates are the configs' (flip 0.5, jitter 0.8, grey 0.2,
    blur 1.0 / 0.1, solarize 0.0 / 0.2, within 4.5 standard errors)."""
    n = 20000
    pipeline = VIEWS[f'view_pipeline{view}'][1:]
    cpu, dev = _cpu_draws(pipeline, n, seed=view), _device_draws(pipeline, n, seed=view)
    expected = dict(flip=0.5, jitter=0.8, grey=0.2, blur=(1.0, 0.1)[view - 1], solarize=(0.0, 0.2)[view - 1])
    for key, p in expected.items():
        a, b = cpu[key].mean(), dev[key].mean()
        se = max(np.sqrt(p * (1 - p) / n), 1e-12)
        assert abs(b - p) < 4.5 * se and abs(a - p) < 4.5 * se, (key, a, b, p)
        pooled = (a + b) / 2
        if 0 < pooled < 1:
            z = (a - b) / np.sqrt(pooled * (1 - pooled) * 2 / n)
            assert abs(z) < 4.5, (key, a, b)
    for key in ('b', 'c', 's', 'h', 'sigma'):
        assert stats.ks_2samp(cpu[key], dev[key]).pvalue > 1e-4, key
    assert dev['b'].min() >= 0.6 and dev['b'].max() <= 1.4 and dev['h'].min() >= -0.1 and dev['h'].max() <= 0.1
    assert dev['sigma'].min() >= 0.1 and dev['sigma'].max() <= 2.0
    counts = np.array([np.bincount(cpu['order'], minlength=256), np.bincount(dev['order'], minlength=256)])
    counts = counts[:, counts.sum(0) > 0]
    assert counts.shape[1] == 24  # permutations only
    assert stats.chi2_contingency(counts).pvalue > 1e-4


def _crops(n: int, size: int, seed: int) -> np.ndarray:
    """n random size x size crops of photo-like images with a colour cast (BGR uint8)."""
    rng = np.random.default_rng(seed)
    big = [photo(96, 128, seed=100 + i) for i in range(8)]
    for im in big:
        im[..., 2] = np.clip(im[..., 2].astype(int) + 40, 0, 255)  # warm: red above blue
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        im = big[rng.integers(len(big))]
        y, x = rng.integers(0, 96 - size), rng.integers(0, 128 - size)
        out[i] = im[y:y + size, x:x + size]
    return out


def _summaries(rgb: np.ndarray) -> dict:
    """Per-image statistics of (N, H, W, 3) RGB views."""
    f = rgb.astype(np.float64)
    return dict(
        red=f[..., 0].mean((1, 2)),
        green=f[..., 1].mean((1, 2)),
        blue=f[..., 2].mean((1, 2)),
        spread=f.std((1, 2, 3)),
        grey=(np.ptp(f, axis=3).max((1, 2)) == 0).astype(float),
        bright=(f > 200).mean((1, 2, 3)))


def test_views_have_the_cpu_pipelines_statistics():
    """1,500 views per pipeline from the same crops, CPU pipeline vs the data preprocessor (stage 1's two
    views): per-image channel means, contrast, share of bright pixels (KS, p > 1e-4) and the share of
    grey views (z-test, |z| < 4.5) agree (a fixed jitter order, for one, fails it; the channel order is
    checked exactly by the next test)."""
    n, size = 1500, 24
    crops = _crops(n, size, seed=0)
    pipelines = [VIEWS.view_pipeline1[1:], VIEWS.view_pipeline2[1:]]
    np.random.seed(0)
    cpu = [np.stack([Compose(p)(dict(img=c.copy()))['img'][..., ::-1] for c in crops]) for p in pipelines]
    pre = MODELS.build(dict(type='ViewAugmentDataPreprocessor', view_pipelines=pipelines, to_rgb=True, seed=0))
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
    dev = pre(dict(inputs=[batch, batch.clone()], data_samples=None), training=True)['inputs']
    for view, (a, b) in enumerate(zip(cpu, dev)):
        sa, sb = _summaries(a), _summaries(b.permute(0, 2, 3, 1).numpy())
        for key in ('red', 'green', 'blue', 'spread', 'bright'):
            assert stats.ks_2samp(sa[key], sb[key]).pvalue > 1e-4, (view, key)
        ga, gb = sa['grey'].mean(), sb['grey'].mean()
        pooled = (ga + gb) / 2
        assert abs(ga - gb) < 4.5 * np.sqrt(pooled * (1 - pooled) * 2 / n), (view, ga, gb)
        assert 0.1 < gb < 0.3  # grey p=0.2 (a crop that is grey already counts too)


DETERMINISTIC = [  # every op with probability 1 and fixed parameters: the output is fixed
    dict(type='RandomFlip', prob=1.0),
    dict(type='RandomApply', transforms=[dict(type='ColorJitter', contrast=(1.3, 1.3))], prob=1.0),
    dict(type='RandomApply', transforms=[dict(type='ColorJitter', hue=(-0.05, -0.05))], prob=1.0),
    dict(type='GaussianBlur', radius=0.8, prob=1.0),
    dict(type='Solarize', thr=100, prob=1.0),
]
GREY_SOLARIZE = [
    dict(type='RandomGrayscale', prob=1.0, keep_channels=True, channel_weights=GREY_WEIGHTS),
    dict(type='Solarize', thr=128, prob=1.0),
]


def test_preprocessor_output_equals_cpu_pipeline_then_normalisation():
    """Tolerance 0 through the whole module: six views of two sizes (grouped into batches by size and
    pipeline structure, routed back in order), channel conversion and normalisation as
    SelfSupDataPreprocessor on the CPU pipeline's output."""
    norm = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    pipelines = [DETERMINISTIC, GREY_SOLARIZE, DETERMINISTIC, GREY_SOLARIZE, [], DETERMINISTIC]
    sizes = [40, 40, 24, 24, 24, 24]
    images = [np.stack([photo(s, s, seed=10 * v + i) for i in range(3)]) for v, s in enumerate(sizes)]
    pre = MODELS.build(dict(type='ViewAugmentDataPreprocessor', view_pipelines=pipelines, **norm))
    inputs = [torch.from_numpy(im).permute(0, 3, 1, 2).contiguous() for im in images]
    got = pre(dict(inputs=inputs, data_samples=None), training=True)['inputs']
    cpu = [
        torch.from_numpy(np.stack([Compose(p)(dict(img=im.copy()))['img']
                                   for im in ims])).permute(0, 3, 1, 2).contiguous()
        for p, ims in zip(pipelines, images)
    ]
    want = SelfSupDataPreprocessor(**norm)(dict(inputs=cpu, data_samples=None))['inputs']
    assert len(got) == 6
    for v, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, rtol=0, atol=0, msg=f'view {v}')
    # outside training it only normalises
    plain = pre(dict(inputs=inputs, data_samples=None), training=False)['inputs']
    torch.testing.assert_close(plain[4], got[4], rtol=0, atol=0)


def test_seeded_and_errors():
    pipelines = [VIEWS.view_pipeline1[1:], VIEWS.view_pipeline2[1:]]
    batch = torch.from_numpy(_crops(8, 16, seed=1)).permute(0, 3, 1, 2).contiguous()
    outs = [
        MODELS.build(dict(type='ViewAugmentDataPreprocessor', view_pipelines=pipelines,
                          seed=5))(dict(inputs=[batch, batch], data_samples=None), training=True)['inputs']
        for _ in range(2)
    ]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    pre = MODELS.build(dict(type='ViewAugmentDataPreprocessor', view_pipelines=pipelines))
    with pytest.raises(ValueError, match='2 view pipelines but the batch has 6 views'):
        pre(dict(inputs=[batch] * 6, data_samples=None), training=True)
    with pytest.raises(ValueError, match='RandomErasing has no device version'):
        MODELS.build(dict(type='ViewAugmentDataPreprocessor', view_pipelines=[[dict(type='RandomErasing')]]))


@pytest.mark.parametrize('gpuaug', sorted(GPUAUG))
def test_gpuaug_configs_split_their_cpu_pipelines(gpuaug):
    """The loader runs each view's crop (``crop_only``); the data preprocessor gets the same view pipelines,
    one per model input in its order, and skips their crops; nothing else differs from the CPU config."""
    dev, cpu = (Config.fromfile(osp.join(ROOT, 'configs', rel)) for rel in (gpuaug, GPUAUG[gpuaug]))
    dev_views, cpu_views = dev.train_dataloader.dataset.pipeline[1], cpu.train_dataloader.dataset.pipeline[1]
    if cpu_views.type == 'MultiView':  # stage 1: ImageViews cuts the crops
        assert cpu_views.num_views == [1] * len(cpu_views.transforms)
        assert dev_views == dict(type='ImageViews', pipelines=cpu_views.transforms, crop_only=True)
        order = cpu_views.transforms
    elif cpu_views.type == 'ImageViews':  # stage 1 on COCO: its CPU path runs ImageViews already
        assert dev_views == dict(type='ImageViews', pipelines=cpu_views.pipelines, crop_only=True)
        order = cpu_views.pipelines
    else:
        assert dev_views == dict(cpu_views, crop_only=True)
        order = cpu_views.img_pipelines + cpu_views.patch_pipelines * 2  # ORLViews' six views
    pre = dev.model.data_preprocessor
    assert pre.type == 'ViewAugmentDataPreprocessor' and pre.view_pipelines == order
    assert {k: v for k, v in pre.items() if k not in ('type', 'view_pipelines')} == \
        {k: v for k, v in cpu.model.data_preprocessor.items() if k != 'type'}
    built = MODELS.build(pre)
    assert [len(a.ops) for a in built.view_augments] == [len(p) - 1 for p in order]  # the crop skipped
    for cfg in (dev, cpu):
        cfg.train_dataloader.dataset.pipeline[1] = None
        cfg.model.data_preprocessor = None
        cfg.pop('train_pipeline')
        # COCO's GPU configs may decode with OpenCV: the same pixels on JPEG (test_decoding), a faster loader
        cfg.train_dataloader.dataset.pipeline[0].pop('imdecode_backend', None)
        cfg.train_dataloader.dataset.pop('imdecode_backend', None)
    assert dev.to_dict() == cpu.to_dict()


def _tiny_run(cfg: Config, tmp_path, data_root: str) -> Runner:
    cfg.work_dir = str(tmp_path / 'work')
    dl = cfg.train_dataloader
    dl.update(batch_size=4, num_workers=0, persistent_workers=False)
    dl.dataset.data_root = data_root
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', T_max=1, by_epoch=True, convert_to_iter_based=True)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.custom_hooks = []
    cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg)


def test_stage1_step_with_gpuaug(tmp_path):
    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, 10, seed=0, img_size=(64, 64), workers=1)
    cfg = Config.fromfile(osp.join(ROOT, 'configs/byol/byol_resnet18_1xb32-gpuaug-coslr-30e_synthetic.py'))
    for view in cfg.train_dataloader.dataset.pipeline[1].pipelines:
        view[0].scale = 32
    runner = _tiny_run(cfg, tmp_path, root)
    runner.train()
    assert runner.iter == 2
    assert np.isfinite(runner.message_hub.get_scalar('train/loss').current())


def test_stage3_step_with_gpuaug(tmp_path):

    root = str(tmp_path / 'scenes')
    make_synthetic_scenes(root, num_images=10, seed=0, img_size=(96, 96), workers=1)
    make_correspondence_store(root)
    cfg = Config.fromfile(osp.join(ROOT, 'configs/orl/stage3/orl_resnet18_1xb16-gpuaug-coslr-30e_synthetic.py'))
    views = cfg.train_dataloader.dataset.pipeline[1]
    for p in views.img_pipelines:
        p[0].scale = 32
    for p in views.patch_pipelines:
        p[0].size = 16
    runner = _tiny_run(cfg, tmp_path, root)
    seen = []
    runner.model.data_preprocessor.register_forward_hook(lambda m, args, out: seen.append(out['inputs']))
    runner.train()
    assert runner.iter == 2
    hub = runner.message_hub
    for key in ('loss', 'loss_global', 'loss_intra', 'loss_inter'):
        assert np.isfinite(hub.get_scalar(f'train/{key}').current()), key
    assert [tuple(v.shape) for v in seen[0]] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 4
    assert all(v.dtype == torch.float32 for v in seen[0])
