"""The project's CUDA paths, checked in one run; run by ``tools/benchmarks/gpu_check.sh``.

Checks, each a row of one table (and a JSON record written after every check, so a run stopped by
its time limit keeps what it measured):

1. training iterations of stage 1 and stage 3 (the COCO ResNet-50 configs, AMP, on one process so
   SyncBN is reverted to BN by the runner) with the augmentation in the data-loader workers (CPU
   path) and on the device (``*-gpuaug-*`` configs): step time, data wait, samples/s, memory peak;
2. the GPU-side augmentation on CUDA against the same module on the CPU with the same seed;
3. stage 2a: faiss on the GPU against faiss-cpu (``exact_knn``), the same neighbours;
4. stage 2c: ``RoIFeature`` + ``TopRatioPairs`` on CUDA against the CPU, the same pairs (with the
   default TF32 convolutions and with strict fp32);
5. a 2-process NCCL run of stage 3 with SyncBN (if the machine has 2 GPUs).

Without CUDA (or with ``--tiny``) the same checks run at a tiny size on the CPU (ResNet-18 CPU
configs, 64/32 px views, fp32): that proves the script, not the CUDA paths.
"""
import argparse
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import time
import traceback
from typing import Callable, Optional

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from input_pipeline import ANN_FILE, STORE, make_data  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402

import orl_plugin  # noqa: E402,F401
from orl_plugin.utils.error_policy import check_out_file, out_help, run_cli  # noqa: E402

FULL = dict(
    stage1='configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py',
    stage1_gpuaug='configs/byol/byol_resnet50_8xb64-gpuaug-coslr-800e_coco.py',
    stage3='configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py',
    stage3_gpuaug='configs/orl/stage3/orl_resnet50_8xb64-gpuaug-coslr-800e_coco.py',
    mining='configs/orl/stage2/correspondence_byol-resnet50_8xb64_coco.py',
    img_size=224,
    patch_size=96,
    crop_size=224,
    batch=64,
    iters=30,
    images=96,
    knn_n=20000,
    pair_images=4)
TINY = dict(
    stage1='configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py',
    stage1_gpuaug='configs/byol/byol_resnet18_1xb32-gpuaug-coslr-30e_synthetic.py',
    stage3='configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py',
    stage3_gpuaug='configs/orl/stage3/orl_resnet18_1xb16-gpuaug-coslr-30e_synthetic.py',
    mining='configs/orl/stage2/correspondence_byol-resnet18_1xb64_synthetic.py',
    img_size=32,
    patch_size=16,
    crop_size=32,
    batch=2,
    iters=2,
    images=6,
    knn_n=300,
    pair_images=2)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tiny', action='store_true', help='the CPU size (default when CUDA is not available)')
    p.add_argument('--work-dir', default='work_dirs/benchmarks/gpu_check', help='generated data and training runs')
    p.add_argument(
        '--out',
        default='work_dirs/benchmarks/gpu_check.json',
        metavar='FILE',
        help=out_help('JSON, rewritten after every check'))
    p.add_argument('--workers', type=int, help='data-loader workers (default: CPUs - 2, at most 14; tiny: 0)')
    p.add_argument('--iters', type=int, help='training iterations per run (the first 5 are not timed)')
    p.add_argument('--batch', type=int, help='samples per iteration')
    p.add_argument('--skip', nargs='*', default=[], choices=['train', 'augment', 'knn', 'pairs', 'nccl'])
    args = p.parse_args(argv)
    args.tiny = args.tiny or not torch.cuda.is_available()
    return args


class Report:
    """Rows of the table, written to JSON after each check."""

    def __init__(self, path: str, meta: dict) -> None:
        self.path, self.rows, self.meta = path, [], meta

    def add(self, check: str, result: str, ok: Optional[bool], **extra) -> None:
        row = dict(check=check, result=result, ok=ok, **extra)
        self.rows.append(row)
        flag = {True: 'ok', False: 'FAIL', None: '-'}[ok]
        print(f'[gpu_check] {flag:4s} {check}: {result}', flush=True)
        from orl_plugin.store import atomic_write_json
        atomic_write_json(self.path, dict(meta=self.meta, rows=self.rows), indent=2)

    def run(self, check: str, fn: Callable[[], None]) -> None:
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # one broken path must not hide the others
            self.add(check, f'error: {type(e).__name__}: {e}', False, traceback=traceback.format_exc(limit=8))
        print(f'[gpu_check] {check} took {time.time() - t0:.0f} s', flush=True)

    def table(self) -> str:
        lines = ['| check | result | ok |', '|---|---|---|']
        for r in self.rows:
            lines.append(
                f"| {r['check']} | {r['result']} | {dict([(True, 'yes'), (False, 'NO'), (None, '-')])[r['ok']]} |")
        return '\n'.join(lines)


def _device() -> torch.device:
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def _sync(dev: str) -> None:
    if dev == 'cuda':
        torch.cuda.synchronize()


def _mib(n: float) -> str:
    return f'{n / 2**20:,.0f} MiB'


# ----------------------------------------------------------------------------------- 1. training
def _train_cfg(rel: str, size: dict, data_root: str, work_dir: str, workers: int, batch: int, iters: int,
               tiny: bool) -> Config:
    cfg = Config.fromfile(osp.join(ROOT, rel))
    cfg.work_dir = work_dir
    dl = cfg.train_dataloader
    dl.update(batch_size=batch, num_workers=workers, persistent_workers=workers > 0, pin_memory=not tiny)
    dl.dataset.update(data_root=data_root, ann_file=ANN_FILE, data_prefix=dict(img_path='images/'))
    if dl.dataset.type == 'ORLDataset':
        dl.dataset.correspondence_file = STORE
    views = dl.dataset.pipeline[1]
    for p in views.get('transforms', []) + views.get('pipelines', []) + views.get('img_pipelines', []):
        p[0].scale = size['img_size']
    for p in views.get('patch_pipelines', []):
        p[0].size = size['patch_size']
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(iters // 2, 1))
    cfg.custom_hooks = []
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    cfg.optim_wrapper.type = 'OptimWrapper' if tiny else 'AmpOptimWrapper'
    if tiny:
        cfg.optim_wrapper.pop('loss_scale', None)
    return cfg


def check_training(report: Report, size: dict, data_root: str, args) -> None:
    for stage in ('stage1', 'stage3'):
        for aug in ('cpu', 'gpu'):
            name = f'{stage} training, {aug}-side augmentation'

            def run(stage=stage, aug=aug, name=name):
                rel = size[stage if aug == 'cpu' else f'{stage}_gpuaug']
                cfg = _train_cfg(rel, size, data_root, osp.join(args.work_dir, f'{stage}_{aug}'), args.workers,
                                 args.batch, args.iters, args.tiny)
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                runner = Runner.from_cfg(cfg)
                runner.train()
                hub = runner.message_hub
                step = np.asarray(hub.get_scalar('train/time').data[0])
                wait = np.asarray(hub.get_scalar('train/data_time').data[0])
                skip = min(5, max(len(step) - 2, 0))
                step, wait = step[skip:], wait[skip:]
                loss = float(hub.get_scalar('train/loss').current())
                peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
                bn = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in runner.model.modules())
                ok = bool(np.isfinite(loss)) and bn == 0
                report.add(
                    name, f'{step.mean() * 1000:.0f} ms/iter ({wait.mean() * 1000:.0f} ms data wait), '
                    f'{args.batch / step.mean():.0f} samples/s, batch {args.batch}, {args.workers} workers, '
                    f'loss {loss:.3f}, peak {_mib(peak)}, SyncBN left: {bn}',
                    ok,
                    ms_per_iter=float(step.mean() * 1000),
                    data_wait_ms=float(wait.mean() * 1000),
                    samples_per_s=float(args.batch / step.mean()),
                    peak_bytes=int(peak),
                    amp=not args.tiny)
                del runner

            report.run(name, run)


# --------------------------------------------------------------------------- 2. augmentation CUDA
def _other_device() -> str:
    """The device compared with the CPU: CUDA, or the CPU again at the tiny size (the script's logic)."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def check_augment(report: Report, size: dict, args) -> None:
    other = _other_device()
    cfg = Config.fromfile(osp.join(ROOT, size['stage3_gpuaug']))
    g = torch.Generator().manual_seed(0)
    n, s_img, s_patch = args.batch, size['img_size'], size['patch_size']
    views = [torch.randint(0, 256, (n, 3, s, s), generator=g, dtype=torch.uint8) for s in [s_img] * 2 + [s_patch] * 4]
    outs = {}
    for key, dev in (('cpu', 'cpu'), ('other', other)):
        pre = MODELS.build(dict(cfg.model.data_preprocessor, seed=3)).to(dev)
        data = dict(inputs=[v.to(dev) for v in views], data_samples=None)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            pre(copy.deepcopy(data), training=True)  # warm-up
            pre._generator = None
            _sync(dev)
            t0 = time.perf_counter()
            out = pre(data, training=True)['inputs']
            _sync(dev)
        outs[key] = ([o.cpu() for o in out], time.perf_counter() - t0)
    diff = max(float((a - b).abs().max()) for a, b in zip(outs['cpu'][0], outs['other'][0]))
    std = float(torch.tensor(cfg.model.data_preprocessor.std).min())
    report.add(
        f'GPU-side augmentation, {other.upper()} vs CPU (same seed)',
        f'six views of {n} samples: max |diff| {diff:.2e} (normalised; one uint8 level is {1 / std:.3f}); '
        f'{outs["other"][1] * 1000:.1f} ms on {other.upper()}, {outs["cpu"][1] * 1000:.0f} ms on the CPU',
        diff <= 1 / std + 1e-6 if other == 'cuda' else None,
        max_abs_diff=diff,
        device_ms=outs['other'][1] * 1000)


# ------------------------------------------------------------------------------------------ 3. 2a
def check_knn(report: Report, size: dict) -> None:
    from orl_plugin.evaluation.knn_metric import _faiss_gpu_available, exact_knn
    rng = np.random.default_rng(0)
    n, d = size['knn_n'], 256
    centres = rng.normal(size=(max(n // 50, 2), d))
    x = centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, d))
    x[1::97] = x[0::97][:len(x[1::97])]  # exact duplicates: ties broken by index
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    t0 = time.time()
    cpu = exact_knn(x, 10, use_gpu=False)
    t_cpu = time.time() - t0
    on_gpu = _faiss_gpu_available()
    t0 = time.time()
    gpu = exact_knn(x, 10, use_gpu=on_gpu)
    t_gpu = time.time() - t0
    same_rows = float((cpu == gpu).all(1).mean())
    sims = np.einsum('nd,nkd->nk', x, x[cpu]), np.einsum('nd,nkd->nk', x, x[gpu])
    gap = float(np.abs(sims[0] - sims[1]).max())
    report.add(
        f'2a KNN, faiss {"GPU" if on_gpu else "CPU (faiss has no GPU here)"} vs faiss-cpu',
        f'{n} x {d}, k=10: {same_rows:.4%} of rows identical; largest similarity gap of a differing '
        f'neighbour {gap:.1e}; {t_gpu:.2f} s vs {t_cpu:.2f} s on the CPU',
        gap < 1e-5 if on_gpu else None,
        same_rows=same_rows)


# ------------------------------------------------------------------------------------------ 4. 2c
def check_pairs(report: Report, size: dict, data_root: str) -> None:
    from orl_plugin.datasets.transforms import crop_boxes
    from orl_plugin.store import MiningStore
    other = _other_device()
    cfg = Config.fromfile(osp.join(ROOT, size['mining']))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    feature, rule = MODELS.build(dict(type='RoIFeature')), MODELS.build(dict(type='TopRatioPairs'))
    store = MiningStore.open(osp.join(data_root, STORE))
    names = store.file_names()
    from PIL import Image
    images = [np.asarray(Image.open(osp.join(data_root, 'images', f)).convert('RGB'))[..., ::-1] for f in names]
    ids = list(range(size['pair_images']))
    needed = sorted(set(ids) | {int(j) for i in ids for j in store.knn(i)[:3]})
    crops = {i: crop_boxes(images[i], store.boxes(i), size['crop_size']) for i in needed}

    def pairs_on(dev: str, tf32: bool):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        m = copy.deepcopy(model).to(dev)
        emb = {i: feature(m, c, batch_size=64) for i, c in crops.items()}
        out = {}
        for i in ids:
            for j in store.knn(i)[:3]:
                out[(i, int(j))] = rule(emb[i], emb[int(j)], store.boxes(i), store.boxes(int(j)))
        return out, {i: e.float().cpu() for i, e in emb.items()}

    defaults = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    cpu, emb_cpu = pairs_on('cpu', False)
    for tf32 in ((False, True) if other == 'cuda' else (False, )):
        dev, emb_dev = pairs_on(other, tf32)
        same = sum(np.array_equal(cpu[k], dev[k]) for k in cpu)
        diff = max(float((emb_cpu[i] - emb_dev[i]).abs().max()) for i in emb_cpu)
        report.add(
            f'2c pairs, {other.upper()} vs CPU ({"TF32 convolutions" if tf32 else "strict fp32"})',
            f'{same}/{len(cpu)} pair lists identical ({sum(len(v) for v in cpu.values())} pairs, '
            f'{sum(len(c) for c in crops.values())} boxes); max |embedding diff| {diff:.1e}',
            same == len(cpu) if other == 'cuda' and not tf32 else None,
            identical_lists=same,
            lists=len(cpu),
            max_emb_diff=diff)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = defaults


# ------------------------------------------------------------------------------------------ 5. NCCL
def check_nccl(report: Report, size: dict, data_root: str, args) -> None:
    if torch.cuda.device_count() < 2:
        report.add('2-process NCCL stage 3 (SyncBN)', f'skipped: {torch.cuda.device_count()} GPU(s)', None)
        return
    work = osp.join(args.work_dir, 'nccl')
    os.makedirs(work, exist_ok=True)
    cfg = _train_cfg(size['stage3_gpuaug'], size, data_root, work, min(args.workers, 4), 16, 6, False)
    cfg_path = osp.join(work, 'stage3_nccl.py')
    cfg.dump(cfg_path)
    env = dict(os.environ, PORT=os.environ.get('PORT', '29511'), PYTHON=sys.executable)
    t0 = time.time()
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), cfg_path, '2'],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    logs = sorted(osp.join(dp, f) for dp, _, fs in os.walk(work) for f in fs if f.endswith('.json') and 'scalars' in f)
    losses = []
    for path in logs:
        with open(path) as f:
            losses += [json.loads(line).get('loss') for line in f if '"loss"' in line]
    ok = proc.returncode == 0 and bool(losses) and all(np.isfinite(v) for v in losses)
    report.add(
        '2-process NCCL stage 3 (SyncBN)',
        f'exit {proc.returncode}, {len(losses)} logged losses, last {losses[-1] if losses else None}, '
        f'{time.time() - t0:.0f} s',
        ok,
        stderr_tail=proc.stderr[-2000:])


def main(argv=None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out)
    size = TINY if args.tiny else FULL
    args.workers = args.workers if args.workers is not None else (
        0 if args.tiny else min(max((os.cpu_count() or 2) - 2, 1), 14))
    args.iters = args.iters or size['iters']
    args.batch = args.batch or size['batch']
    os.makedirs(args.work_dir, exist_ok=True)
    meta = dict(
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu',
        tiny=args.tiny,
        gpus=torch.cuda.device_count(),
        cpus=os.cpu_count(),
        torch=torch.__version__,
        batch=args.batch,
        iters=args.iters,
        workers=args.workers)
    report = Report(out, meta)
    print(f'[gpu_check] {meta}', flush=True)
    t0 = time.time()
    data_root = osp.join(args.work_dir, f'coco_like_{size["images"]}')
    report.meta['data'] = make_data(data_root, size['images'], 0, processes=min(os.cpu_count() or 1, 16))
    print(f'[gpu_check] data ready ({time.time() - t0:.0f} s)', flush=True)
    if 'train' not in args.skip:
        check_training(report, size, data_root, args)
    if 'augment' not in args.skip:
        report.run('GPU-side augmentation, CUDA vs CPU (same seed)', lambda: check_augment(report, size, args))
    if 'knn' not in args.skip:
        report.run('2a KNN, faiss GPU vs faiss-cpu', lambda: check_knn(report, size))
    if 'pairs' not in args.skip:
        report.run('2c pairs, CUDA vs CPU', lambda: check_pairs(report, size, data_root))
    if 'nccl' not in args.skip:
        report.run('2-process NCCL stage 3 (SyncBN)', lambda: check_nccl(report, size, data_root, args))
    if torch.cuda.is_available():
        report.meta['max_memory_allocated'] = torch.cuda.max_memory_allocated()
    print(f'\n{meta["device"]}, {meta["gpus"]} GPU(s), {meta["cpus"]} CPUs, torch {meta["torch"]}'
          f'{" (tiny CPU size)" if args.tiny else ""}; {time.time() - t0:.0f} s in all\n')
    print(report.table())
    report.add('total', f'{time.time() - t0:.0f} s', all(r['ok'] is not False for r in report.rows))
    return 0 if all(r['ok'] is not False for r in report.rows) else 1


if __name__ == '__main__':
    run_cli(main)
