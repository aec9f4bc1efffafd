"""CPU cost per sample of the stage-1 and stage-3 input pipelines, side by side in one run.

For each stage it measures three paths on the same COCO-like JPEGs (640x480, photo-like content, made here
and cached under the work dir):

- ``official``: the official code's way (OpenSelfSup ``BYOLDataset`` / ORL ``ORLDataset`` with
  ``prefetch=True``): ``Image.open().convert('RGB')``, torchvision transforms on PIL images, uint8 arrays
  out. The baseline of every ratio.
- ``cpu``: this project's CPU path, the data set and pipeline of the COCO configs
  (``configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py``,
  ``configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py``): OpenCV decoding, the views cut from the
  decoded image, hue and blur by OpenCV in PIL's arithmetic (``photometric='opencv'``).
- ``cpu-pil``: the same with PIL decoding and PIL's hue and blur (``photometric='pil'``; stage 1 through
  mmcv's ``MultiView``), the mmcv/PIL reference pipeline: the COCO configs before they switched to the direct path.
- ``gpuaug``: the data-loader side of the ``*-gpuaug-*`` configs (decode, crop and resize to uint8; the
  rest runs in the model's data preprocessor on the GPU).
- ``...+pillow``: a path with the config's decoder switched from OpenCV to PIL (the loader's other
  backend), to show how much of it is the decoder.

Two measurements: CPU-ms per sample in this process on one core (process CPU time, paths interleaved in
rounds), and CPU-ms per sample per data-loader worker with N workers (the workers' CPU time from /proc,
plus the main process's share). ``cores/GPU`` is what 1,000 samples/s per GPU need: numerically the
ms per sample. ``--breakdown`` adds where each path's CPU time goes (exclusive time per transform).

    python tools/benchmarks/input_pipeline.py                 # 48 images, 240 samples a path, 1 and 2 workers
    python tools/benchmarks/input_pipeline.py --breakdown
    python tools/benchmarks/input_pipeline.py --quick         # seconds: the test's size
"""
import argparse
import io
import math
import os
import os.path as osp
import platform
import random
import sys
import time
from collections import defaultdict
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

os.environ.setdefault('OMP_NUM_THREADS', '1')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms as T  # noqa: E402
import torchvision.transforms.functional as TF  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import default_collate  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmpretrain.registry import DATASETS  # noqa: E402

import orl_plugin  # noqa: E402,F401  (registers the components)
from orl_plugin.datasets.transforms.orl_views import ViewPipeline  # noqa: E402
from orl_plugin.store import MiningStore, atomic_write_json, write_correspondence_store  # noqa: E402
from orl_plugin.utils.error_policy import check_out_file, out_help, run_cli  # noqa: E402

CONFIGS = {
    'stage1/cpu': 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py',
    'stage1/gpuaug': 'configs/byol/byol_resnet50_8xb64-gpuaug-coslr-800e_coco.py',
    'stage3/cpu': 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py',
    'stage3/gpuaug': 'configs/orl/stage3/orl_resnet50_8xb64-gpuaug-coslr-800e_coco.py',
}
PATHS = ('stage1/official', 'stage1/cpu-pil', 'stage1/cpu', 'stage1/gpuaug', 'stage3/official', 'stage3/cpu-pil',
         'stage3/cpu', 'stage3/gpuaug')
# Paths with the config's decoder switched from OpenCV to PIL (the loader's other backend; the same pixels
# for JPEGs): how much of a path is the decoder.
DECODER_PATHS = ('stage3/cpu+pillow', 'stage3/gpuaug+pillow')
# The budgets of CPU-ms per sample the paths are measured against.
TARGETS = {'stage3/cpu': 15.0, 'stage3/gpuaug': 8.0, 'stage1/gpuaug': 5.0}
ANN_FILE = 'annotations/images.json'
STORE = 'orl/correspondence.orlstore'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--num-images', type=int, default=48)
    p.add_argument('--samples', type=int, default=240, help='samples per path on one core')
    p.add_argument('--rounds', type=int, default=3, help='the paths take turns this many times')
    p.add_argument('--workers', type=int, nargs='*', default=[1, 2], help='data-loader worker counts')
    p.add_argument('--worker-samples', type=int, default=160, help='samples per path and worker count')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--paths', nargs='+', default=list(PATHS + DECODER_PATHS), choices=PATHS + DECODER_PATHS)
    p.add_argument('--breakdown', action='store_true', help='also time every transform of every path')
    p.add_argument('--quick', action='store_true', help='a few samples of each path (seconds; for the test)')
    p.add_argument('--work-dir', default='work_dirs/benchmarks/input_pipeline', help='the generated JPEGs')
    p.add_argument('--out', default='work_dirs/benchmarks/input_pipeline.json', metavar='FILE', help=out_help('JSON'))
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.num_images, args.samples, args.rounds = 4, 6, 1
        args.workers, args.worker_samples, args.batch_size = [1], 4, 2
    return args


# ----------------------------------------------------------------------------------------------- data
def _octaves(rng: np.random.Generator, h: int, w: int, ch: int, finest: int, slope: float) -> np.ndarray:
    """Noise with detail at every scale from a quarter of the width down to the pixel (amplitude per
    octave ~ size**-slope; 0 is the flat per-octave energy of natural images' 1/f spectrum)."""
    out = np.zeros((h, w, ch), np.float32)
    size = 4
    while size <= finest:
        f = rng.normal(size=(max(2, size * h // w), size, ch)).astype(np.float32)
        out += cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, ch) * size**-slope
        size *= 2
    return out


def photo_like(rng: np.random.Generator, w: int = 640, h: int = 480) -> np.ndarray:
    """An RGB uint8 image with photographic statistics where decoding and resizing feel them: 1/f
    luminance texture, weak correlated chroma, a lighting gradient, a dozen textured objects (ellipses
    and boxes, some with stripes) with sharp or soft edges, thin lines, sensor grain."""
    lum = _octaves(rng, h, w, 1, 512, 0.2)
    chroma = _octaves(rng, h, w, 3, 32, 0.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = ((xx / w - 0.5) * rng.uniform(-60, 60) + (yy / h - 0.5) * rng.uniform(-60, 60))[..., None]
    img = rng.uniform(80, 170, 3).astype(np.float32) + (lum - lum.mean()) / lum.std() * 38 + light
    img += (chroma - chroma.mean((0, 1))) / chroma.std() * 14
    for _ in range(int(rng.integers(8, 16))):
        mask = np.zeros((h, w), np.uint8)
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            axes = (int(rng.integers(15, w // 4)), int(rng.integers(15, h // 4)))
            cv2.ellipse(mask, c, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            cv2.rectangle(mask, c, (c[0] + int(rng.integers(20, w // 3)), c[1] + int(rng.integers(20, h // 3))), 255,
                          -1)
        soft = mask.astype(np.float32) / 255
        if rng.random() < 0.5:
            soft = cv2.GaussianBlur(soft, (0, 0), float(rng.uniform(0.6, 2.5)))
        tex = _octaves(rng, h, w, 1, 512, rng.uniform(0.0, 0.5))
        tex = (tex - tex.mean()) / tex.std() * rng.uniform(8, 35)
        if rng.random() < 0.4:  # stripes: fabric, bricks, blinds
            period, angle = rng.uniform(4, 16), rng.uniform(0, np.pi)
            tex += 25 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)[..., None]
        obj = rng.uniform(20, 235, 3).astype(np.float32) + tex + light * 0.5
        img = img * (1 - soft[..., None]) + obj * soft[..., None]
    for _ in range(int(rng.integers(3, 10))):
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p1, p2, rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_jpeg(path: str, seed: int, index: int) -> int:
    if not osp.exists(path):
        buf = io.BytesIO()
        Image.fromarray(photo_like(np.random.default_rng([seed, index]))).save(buf, 'JPEG', quality=94)
        with open(path + '.tmp', 'wb') as f:
            f.write(buf.getvalue())
        os.replace(path + '.tmp', path)
    return osp.getsize(path)


def make_data(root: str, num_images: int, seed: int, processes: int = 1) -> dict:
    """JPEGs (quality 94: COCO-like file sizes), a COCO-style image list and a correspondence store
    shaped like COCO's (10 neighbours; 10-60 kept boxes of 96 px or more per image; 10 % of the box
    pairs per neighbour). Files already there are kept (the same seed makes the same files)."""
    img_dir = osp.join(root, 'images')
    os.makedirs(img_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f'{i:06d}.jpg' for i in range(num_images)]
    jobs = [(osp.join(img_dir, name), seed, i) for i, name in enumerate(names)]
    if processes > 1:
        import multiprocessing
        with multiprocessing.get_context('fork').Pool(processes) as pool:
            sizes = pool.starmap(_write_jpeg, jobs)
    else:
        sizes = [_write_jpeg(*job) for job in jobs]
    images = [dict(id=i + 1, file_name=name, width=640, height=480) for i, name in enumerate(names)]
    atomic_write_json(osp.join(root, ANN_FILE), dict(images=images, annotations=[], categories=[]))
    k = min(10, num_images - 1)
    boxes = []
    for _ in range(num_images):
        n = int(rng.integers(10, 61))
        w = rng.integers(96, 400, n)
        h = np.clip((w * np.exp(rng.uniform(-1, 1, n))).astype(int), 96, 470)
        boxes.append(np.stack([rng.integers(0, 640 - w), rng.integers(0, 480 - h), w, h], 1).astype(np.int64))
    knn = np.stack([rng.choice(np.delete(np.arange(num_images), i), k, replace=False) for i in range(num_images)])
    pairs = []
    for i in range(num_images):
        row = []
        for j in knn[i]:
            m = max(1, int(0.1 * len(boxes[i])))
            row.append(
                np.concatenate(
                    [boxes[i][rng.integers(0, len(boxes[i]), m)], boxes[j][rng.integers(0, len(boxes[j]), m)]], 1))
        pairs.append(row)
    write_correspondence_store(
        osp.join(root, STORE),
        boxes,
        knn,
        pairs,
        file_names=[im['file_name'] for im in images],
        image_ids=[im['id'] for im in images])
    return dict(
        num_images=num_images, mean_jpeg_kib=float(np.mean(sizes) / 1024), width=640, height=480, jpeg_quality=94)


# ------------------------------------------------------------------------------------ official-style
class _Blur:
    """OpenSelfSup ``GaussianBlur(sigma_min, sigma_max)``: PIL's blur, sigma drawn with numpy."""

    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=np.random.uniform(0.1, 2.0)))


class _Solarize:
    """OpenSelfSup ``Solarization``: through numpy and back."""

    def __call__(self, img):
        arr = np.array(img)
        return Image.fromarray(np.where(arr < 128, arr, 255 - arr).astype(np.uint8))


def official_pipelines(crop: Optional[int], prof: Optional['Profile'] = None) -> List[Callable]:
    """The two views of the official configs (stage-1 images, or stage-3 patches with ``crop=None``)."""
    t = prof.step if prof else (lambda name, fn: fn)
    pipes = []
    for blur, solarize in ((1.0, 0.0), (0.1, 0.2)):
        head = [t('RandomResizedCrop', T.RandomResizedCrop(crop, interpolation=T.InterpolationMode.BILINEAR))
                ] if crop else []
        pipes.append(
            T.Compose(head + [
                t('RandomHorizontalFlip', T.RandomHorizontalFlip()),
                T.RandomApply([t('ColorJitter', T.ColorJitter(0.4, 0.4, 0.2, 0.1))], p=0.8),
                t('RandomGrayscale', T.RandomGrayscale(p=0.2)),
                T.RandomApply([t('GaussianBlur', _Blur())], p=blur),
                T.RandomApply([t('Solarize', _Solarize())], p=solarize),
            ]))
    return pipes


def _official_to_tensor(img) -> torch.Tensor:
    # openselfsup.datasets.utils.to_numpy, then torch.from_numpy as the official prefetch=True path
    return torch.from_numpy(np.rollaxis(np.array(img, dtype=np.uint8), 2))


def _decode(path: str) -> Image.Image:
    return Image.open(path).convert('RGB')


class OfficialStage1:
    """OpenSelfSup ``BYOLDataset`` (``prefetch=True``) with ORL's stage-1 pipelines."""

    def __init__(self, root: str, prof: Optional['Profile'] = None) -> None:
        self.paths = sorted(
            osp.join(root, 'images', f) for f in os.listdir(osp.join(root, 'images')) if f.endswith('.jpg'))
        self.pipelines = official_pipelines(224, prof)
        t = prof.step if prof else (lambda name, fn: fn)
        self.decode, self.to_tensor = t('decode', _decode), t('to uint8 tensor', _official_to_tensor)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> dict:
        img = self.decode(self.paths[idx])
        views = [self.to_tensor(p(img)) for p in self.pipelines]
        return dict(img=torch.stack(views), idx=idx)


def _official_jitter(img, box, attempts=200):
    # ORL aug_bbox: area x U(0.5, 2), log-uniform ratio in (0.5, 2), centre shift U(-0.5, 0.5), IoU > 0.5
    img_w, img_h = img.size
    x, y, w, h = box
    for _ in range(attempts):
        area = random.uniform(0.5, 2.0) * w * h
        ratio = math.exp(random.uniform(math.log(0.5), math.log(2.0)))
        aw, ah = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        ax = int(round(x + 0.5 * w + random.uniform(-0.5, 0.5) * w - 0.5 * aw))
        ay = int(round(y + 0.5 * h + random.uniform(-0.5, 0.5) * h - 0.5 * ah))
        if ax >= 0 and ay >= 0 and ax + aw <= img_w and ay + ah <= img_h:
            iw = max(min(ax + aw, x + w) - max(ax, x), 0)
            ih = max(min(ay + ah, y + h) - max(ay, y), 0)
            inter = iw * ih
            if inter / float(aw * ah + w * h - inter) > 0.5:
                return [ax, ay, aw, ah]
    return box


class OfficialStage3:
    """ORL's ``ORLDataset`` + ``COCOORLJson`` (``prefetch=True``, patch size 96): boxes from Python lists."""

    def __init__(self, root: str, prof: Optional['Profile'] = None) -> None:
        store = MiningStore.open(osp.join(root, STORE))
        n = store.num_images
        self.paths = [osp.join(root, 'images', f) for f in store.file_names()]
        self.knn = [list(map(int, store.knn(i))) for i in range(n)]
        self.boxes = [store.boxes(i).tolist() for i in range(n)]
        self.pairs = [[p.tolist() for p in store.image_pairs(i)] for i in range(n)]
        self.img_pipelines = official_pipelines(224, prof)
        self.patch_pipelines = official_pipelines(None, prof)
        t = prof.step if prof else (lambda name, fn: fn)
        self.decode, self.to_tensor = t('decode', _decode), t('to uint8 tensor', _official_to_tensor)
        self.resized_crop = t('RoICrop (resized_crop)', TF.resized_crop)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx: int) -> dict:
        slot = random.randint(0, len(self.knn[idx]) - 1)
        img = self.decode(self.paths[idx])
        knn_img = self.decode(self.paths[self.knn[idx][slot]])
        ibox1 = random.choice(self.boxes[idx])
        ibox2 = _official_jitter(img, ibox1)
        pair = random.choice(self.pairs[idx][slot])
        crops = [(img, ibox1), (img, ibox2), (img, pair[:4]), (knn_img, pair[4:])]
        patches = [
            self.resized_crop(im, b[1], b[0], b[3], b[2], [96, 96], T.InterpolationMode.BILINEAR) for im, b in crops
        ]
        p1, p2 = self.patch_pipelines
        views = [
            self.img_pipelines[0](img), self.img_pipelines[1](img),
            p1(patches[0]),
            p2(patches[1]),
            p1(patches[2]),
            p2(patches[3])
        ]
        v = [self.to_tensor(x) for x in views]
        return dict(img=torch.stack(v[:2]), ipatch=torch.stack(v[2:4]), kpatch=torch.stack(v[4:]))


# ------------------------------------------------------------------------------------- this project
def reference_views(views: dict) -> dict:
    """A config's views transform as the mmcv/PIL reference: PIL's photometric ops (``photometric='pil'``;
    stage 1's ``ImageViews`` as mmcv's ``MultiView``, as the configs had it)."""
    if views['type'] == 'ImageViews':
        return dict(type='MultiView', num_views=[1] * len(views['pipelines']), transforms=views['pipelines'])
    return dict(views, photometric='pil')


def project_dataset(rel_cfg: str, root: str, decoder: Optional[str] = None, reference: bool = False):
    cfg = Config.fromfile(osp.join(ROOT, rel_cfg))
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=root, ann_file=ANN_FILE, data_prefix=dict(img_path='images/'))
    if ds.type == 'ORLDataset':
        ds.correspondence_file = STORE
    if reference:
        ds.pipeline[1] = reference_views(ds.pipeline[1])
    if decoder:  # ORLDataset decodes itself; stage 1 with its pipeline's loader
        ds.update(imdecode_backend=decoder) if ds.type == 'ORLDataset' else ds.pipeline[0].update(
            imdecode_backend=decoder)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(ds)


def build_path(name: str, root: str, prof: Optional['Profile'] = None):
    if name == 'stage1/official':
        return OfficialStage1(root, prof)
    if name == 'stage3/official':
        return OfficialStage3(root, prof)
    base, _, decoder = name.partition('+')
    reference = base.endswith('-pil')  # the mmcv/PIL reference: PIL decoding and photometric ops
    ds = project_dataset(CONFIGS[base.replace('-pil', '')], root, decoder or ('pillow' if reference else None),
                         reference)
    if prof is not None:
        prof.instrument(ds.pipeline)
        if hasattr(ds, '_load_image'):
            ds._load_image = prof.step('decode', ds._load_image)
    return ds


# ------------------------------------------------------------------------------------------ timing
def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def time_one_core(paths: Dict[str, object], samples: int, rounds: int, seed: int) -> Dict[str, dict]:
    """Process CPU ms per sample, the paths taking turns ``rounds`` times (the machine's speed drifts)."""
    per_round = max(1, samples // rounds)
    rng = np.random.default_rng(seed)
    cpu = defaultdict(list)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for name, ds in paths.items():  # warm-up: first-call costs (imports, caches, store mapping)
            _seed(seed)
            for i in range(2):
                ds[i % len(ds)]
        for r in range(rounds):
            for name, ds in paths.items():
                _seed(seed + r)
                idx = rng.integers(0, len(ds), per_round)
                t0 = time.process_time()
                for i in idx:
                    ds[int(i)]
                cpu[name].append((time.process_time() - t0) * 1000 / per_round)
    return {
        name: dict(ms=float(np.mean(v)), rounds_ms=[round(x, 3) for x in v], samples=per_round * rounds)
        for name, v in cpu.items()
    }


def _proc_cpu_s(pid: int) -> float:
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')  # utime + stime


class _ListSampler(torch.utils.data.Sampler):

    def __init__(self) -> None:
        self.indices: List[int] = []

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class _Scoped(torch.utils.data.Dataset):
    """The path under mmpretrain's default scope, as in a runner's workers."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return self.ds[i]


def _worker_init(worker_id: int, seed: int) -> None:
    _seed(seed + worker_id)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def time_workers(ds, workers: int, samples: int, batch: int, seed: int) -> dict:
    """CPU ms per sample in the workers (and the main process's share) with ``workers`` loader workers."""
    rng = np.random.default_rng(seed)
    sampler = _ListSampler()
    loader = torch.utils.data.DataLoader(
        _Scoped(ds),
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=True,
        collate_fn=default_collate,
        worker_init_fn=partial(_worker_init, seed=seed))
    sampler.indices = rng.integers(0, len(ds), batch * workers * 2).tolist()  # warm-up epoch
    for _ in loader:
        pass
    pids = [w.pid for w in loader._iterator._workers]
    samples = max(samples // batch, 1) * batch
    sampler.indices = rng.integers(0, len(ds), samples).tolist()
    w0, m0, t0 = [_proc_cpu_s(p) for p in pids], time.process_time(), time.perf_counter()
    for _ in loader:
        pass
    wall = time.perf_counter() - t0
    w1, m1 = [_proc_cpu_s(p) for p in pids], time.process_time()
    del loader
    worker_ms = (sum(w1) - sum(w0)) * 1000 / samples
    return dict(
        workers=workers,
        samples=samples,
        worker_ms=worker_ms,
        main_ms=(m1 - m0) * 1000 / samples,
        wall_samples_per_s=samples / wall)


# --------------------------------------------------------------------------------------- breakdown
class Profile:
    """Exclusive process CPU time per named step (a step's time less that of the steps inside it)."""

    CONTAINERS = ('transforms', 'pipelines', 'img_pipelines', 'patch_pipelines')

    def __init__(self) -> None:
        self.total: Dict[str, float] = defaultdict(float)
        self.stack: List[float] = []

    def step(self, name: str, fn: Callable) -> Callable:

        def timed(*args, **kwargs):
            self.stack.append(0.0)
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.process_time() - t0
                inner = self.stack.pop()
                self.total[name] += dt - inner
                if self.stack:
                    self.stack[-1] += dt

        return timed

    def instrument(self, obj, seen: Optional[set] = None) -> None:
        """Time every mmcv transform under ``obj`` (Compose, RandomApply, MultiView, ORLViews)."""
        seen = set() if seen is None else seen
        if obj is None or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for o in obj:
                self.instrument(o, seen)
            return
        if isinstance(obj, ViewPipeline) and obj.direct:  # the crop, then one operation per transform
            obj._crop = self.step(f'{type(obj.transforms[0]).__name__} (direct)', obj._crop)
            obj.ops = [self.step(f'{type(t).__name__} (direct)', op) for t, op in zip(obj.transforms[1:], obj.ops)]
            return
        if callable(getattr(obj, 'transform', None)):  # mmcv BaseTransform: __call__ calls self.transform
            obj.transform = self.step(type(obj).__name__, obj.transform)
        for attr in self.CONTAINERS:
            self.instrument(getattr(obj, attr, None), seen)


def breakdown(names: Sequence[str], root: str, samples: int, seed: int) -> Dict[str, Dict[str, float]]:
    """CPU ms per sample per step, for each path (one core); 'other' is what no step covers."""
    out = {}
    for name in names:
        prof = Profile()
        ds = build_path(name, root, prof)
        rng = np.random.default_rng(seed)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            _seed(seed)
            t0 = time.process_time()
            for i in rng.integers(0, len(ds), samples):
                ds[int(i)]
            total = time.process_time() - t0
        steps = {k: v * 1000 / samples for k, v in sorted(prof.total.items(), key=lambda kv: -kv[1])}
        steps['other'] = (total - sum(prof.total.values())) * 1000 / samples
        steps['total'] = total * 1000 / samples
        out[name] = steps
    return out


# ------------------------------------------------------------------------------------------- report
def table(result: dict) -> str:
    one, multi = result['one_core'], result.get('workers', {})
    counts = sorted({w['workers'] for runs in multi.values() for w in runs})
    head = ['path', 'CPU-ms/sample (1 core)', 'x baseline', 'rounds']
    head += [f'ms/sample/worker ({n} w.)' for n in counts] + ['cores/GPU @1000/s', 'target']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for name in result['paths']:
        if name not in one:
            continue
        base = one.get(name.split('/')[0] + '/official', {}).get('ms')
        ms = one[name]['ms']
        cells = [
            name, f'{ms:.1f}', f'{ms / base:.2f}' if base else '-',
            ' / '.join(f'{x:.1f}' for x in one[name]['rounds_ms'])
        ]
        for n in counts:
            run = next((w for w in multi.get(name, []) if w['workers'] == n), None)
            cells.append(f"{run['worker_ms']:.1f} (+{run['main_ms']:.1f} main)" if run else '-')
        target = TARGETS.get(name)
        cells += [f'{ms:.1f}', f"<= {target:g}: {'met' if ms <= target else 'missed'}" if target else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    os.makedirs(args.work_dir, exist_ok=True)
    data_root = osp.join(args.work_dir, f'coco_like_{args.num_images}_seed{args.seed}')
    t0 = time.time()
    data = make_data(data_root, args.num_images, args.seed)
    print(
        f'data: {args.num_images} JPEGs 640x480, mean {data["mean_jpeg_kib"]:.0f} KiB, under {data_root} '
        f'({time.time() - t0:.0f} s)',
        flush=True)
    paths = {name: build_path(name, data_root) for name in args.paths}
    result = dict(
        paths=list(args.paths),
        data=data,
        args={k: v for k, v in vars(args).items()},
        machine=dict(
            cpus=os.cpu_count(),
            loadavg_start=list(os.getloadavg()),
            python=platform.python_version(),
            torch=torch.__version__))
    result['one_core'] = time_one_core(paths, args.samples, args.rounds, args.seed)
    print('one core done', flush=True)
    result['workers'] = {}
    for name, ds in paths.items():
        result['workers'][name] = [
            time_workers(ds, n, args.worker_samples, args.batch_size, args.seed) for n in args.workers
        ]
    if args.breakdown:
        result['breakdown'] = breakdown(args.paths, data_root, max(args.samples // 2, 2), args.seed)
    result['machine']['loadavg_end'] = list(os.getloadavg())
    result['table'] = table(result)
    print(result['table'])
    if args.breakdown:
        for name, steps in result['breakdown'].items():
            print(f'\n{name}: ' + ', '.join(f'{k} {v:.2f}' for k, v in steps.items()))
    load = result['machine']
    print(f'\nload average {load["loadavg_start"][0]:.1f} at the start, {load["loadavg_end"][0]:.1f} at the end '
          f'({load["cpus"]} CPUs); cores/GPU = CPU-ms per sample x 1,000 samples/s / 1,000')
    atomic_write_json(out, result, indent=2)
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    run_cli(main)
