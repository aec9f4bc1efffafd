"""Scale benchmark: official correspondence JSON vs the native memory-mapped store.

Builds a synthetic correspondence set of COCO size (118,287 images, 100 kept boxes, 10 neighbours
x 10 pairs each; ``--num-images`` scales it down), writes it as a native store and as official JSON,
then measures, each format in a fresh process:

- bytes on disk;
- load time: ``json.load`` (what the official code does) and ``MiningStore.open`` of the JSON
  (parse + validate + convert), vs ``MiningStore.open`` of the store;
- the extra memory a PyTorch data-loader worker costs reading random samples (query boxes, one
  neighbour's pairs, the neighbour's file name), from ``/proc/self/smaps_rollup`` in the worker
  before and after, with 1 and 2 workers. Workers are forked after the parent loaded the data,
  as DataLoader does on Linux: for JSON this is where reference-count writes copy the parent's
  pages (private, per worker); for the store the worker only maps page-cache pages (shared).

    python tools/benchmarks/store_scale.py --out work_dirs/benchmarks/store_scale.json  # full size
    python tools/benchmarks/store_scale.py --num-images 2000 --out /tmp/store_scale.json  # quick
"""
import argparse
import gc
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import numpy as np

from orl_plugin.utils.error_policy import check_out_file, out_help, run_cli

TARGET_OPEN_S = 1.0
TARGET_WORKER_MB = 50.0


# --------------------------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------------------------
def smaps() -> dict:
    """Memory of this process in bytes (Rss, Pss, Pss_Anon, Pss_File, Private_*, USS)."""
    out = {}
    with open('/proc/self/smaps_rollup') as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == 'kB':
                out[parts[0].rstrip(':')] = int(parts[1]) * 1024
    out['USS'] = out.get('Private_Clean', 0) + out.get('Private_Dirty', 0)
    return out


def mem_delta(before: dict, after: dict) -> dict:
    keys = ('USS', 'Pss', 'Pss_Anon', 'Pss_File', 'Private_Dirty', 'Private_Clean', 'Rss')
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def dir_bytes(path: str) -> int:
    if osp.isfile(path):
        return osp.getsize(path)
    return sum(osp.getsize(osp.join(path, f)) for f in os.listdir(path))


def worker_cost(read_sample, num_samples: int, num_images: int, k: int, num_workers: int = 1) -> list:
    """Fork ``num_workers`` DataLoader workers that each read ``num_samples`` random samples;
    returns each worker's memory growth (measured after all of them finished reading, so pages
    that several workers touch show up as shared)."""
    import multiprocessing

    from torch.utils.data import DataLoader, Dataset

    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(num_workers)

    class OneJobPerWorker(Dataset):

        def __len__(self) -> int:
            return num_workers

        def __getitem__(self, w: int) -> str:
            rng = np.random.default_rng(w)
            idx = rng.integers(0, num_images, num_samples)
            slot = rng.integers(0, k, num_samples)
            gc.collect()
            before = smaps()
            t0 = time.perf_counter()
            for i, j in zip(idx.tolist(), slot.tolist()):
                read_sample(i, j)
            dt = time.perf_counter() - t0
            barrier.wait()
            after = smaps()
            return json.dumps(dict(delta=mem_delta(before, after), seconds=dt, before=before, after=after))

    loader = DataLoader(
        OneJobPerWorker(), batch_size=None, num_workers=num_workers, shuffle=False, multiprocessing_context=ctx)
    return [json.loads(item) for item in loader]


def worker_costs(read_sample, args, num_images: int, k: int) -> dict:
    out = {}
    for w in args.workers:
        res = worker_cost(read_sample, args.samples, num_images, k, w)
        out[str(w)] = dict(
            per_worker=res,
            mean_delta={key: float(np.mean([r['delta'][key] for r in res])) for key in res[0]['delta']},
            seconds=float(np.mean([r['seconds'] for r in res])))
    return out


# --------------------------------------------------------------------------------------------
# phases (each runs in its own interpreter so memory figures do not mix)
# --------------------------------------------------------------------------------------------
def phase_generate(args) -> dict:
    from orl_plugin.store import MiningStore, write_official_json

    n, b, k, p = args.num_images, args.boxes, args.neighbours, args.pairs
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    # COCO-like 640x480 images, boxes that pass ORL's filter (w, h >= 96)
    x = rng.integers(0, 640 - 96, n * b)
    y = rng.integers(0, 480 - 96, n * b)
    w = rng.integers(96, 640 - x + 1)
    h = rng.integers(96, 480 - y + 1)
    boxes = np.stack([x, y, w, h], 1).astype(np.int16)
    del x, y, w, h
    knn = ((np.arange(n)[:, None] + rng.integers(1, max(n, 2), (n, k))) % n).astype(np.int32)
    qi = (np.repeat(np.arange(n), k * p) * b + rng.integers(0, b, n * k * p))
    ni = np.repeat(knn.reshape(-1).astype(np.int64), p) * b + rng.integers(0, b, n * k * p)
    pairs = np.concatenate([boxes[qi], boxes[ni]], 1)
    del qi, ni
    store = MiningStore.from_arrays(
        'correspondence',
        image_ids=np.arange(1, n + 1) * 7,
        file_names=[f'{i:012d}.jpg' for i in range(n)],
        boxes=boxes,
        box_offsets=np.arange(n + 1, dtype=np.int64) * b,
        knn=knn,
        pairs=pairs,
        pair_offsets=np.arange(n * k + 1, dtype=np.int64) * p,
        params=dict(
            bbox_min_size=96,
            bbox_max_aspect_ratio=3,
            bbox_max_iou=0.5,
            intra_bbox_num=b,
            knn_image_num=k,
            knn_bbox_pair_ratio=p / b),
        provenance=dict(tool='store_scale.py', synthetic=True))
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.save(args.store)
    t_store = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_official_json(MiningStore.open(args.store), args.json, include_meta=False, verbose=args.verbose)
    t_json = time.perf_counter() - t0
    return dict(
        generate_s=t_gen,
        write_store_s=t_store,
        write_json_s=t_json,
        store_bytes=dir_bytes(args.store),
        json_bytes=dir_bytes(args.json),
        total_boxes=int(boxes.shape[0]),
        total_pairs=int(pairs.shape[0]))


def phase_native(args) -> dict:
    import torch  # noqa: F401  (import first so its memory is not counted as the store's)

    from orl_plugin.store import MiningStore
    gc.collect()
    m0 = smaps()
    times, cpu = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        store = MiningStore.open(args.store)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    t0 = time.perf_counter()
    MiningStore.open(args.store, validate=False)
    t_novalid = time.perf_counter() - t0
    m1 = smaps()

    def read(i: int, j: int) -> None:
        store.boxes(i)
        nb = store.knn(i)[j]
        store.pairs(i, j)
        store.file_name(int(nb))

    cost = worker_costs(read, args, store.num_images, store.num_neighbours)
    return dict(
        open_s_first=times[0],
        open_s_median=float(np.median(times)),
        open_cpu_s_median=float(np.median(cpu)),
        open_s_no_validate=t_novalid,
        parent_load_mem=mem_delta(m0, m1),
        worker=cost)


def phase_json(args) -> dict:
    import torch  # noqa: F401

    from orl_plugin.store import MiningStore
    gc.collect()
    m0 = smaps()
    t0, c0 = time.perf_counter(), time.process_time()
    with open(args.json, encoding='utf-8') as f:
        data = json.load(f)
    t_parse, c_parse = time.perf_counter() - t0, time.process_time() - c0
    m1 = smaps()
    # the official COCOORLJson data source keeps these lists and indexes them per sample
    fns = data['images']['file_name']
    intra = data['pseudo_annotations']['bbox']
    knn = data['pseudo_annotations']['knn_image_id']
    kbp = data['pseudo_annotations']['knn_bbox_pair']
    k = data['info']['knn_image_num']

    def read(i: int, j: int) -> None:
        np.array(intra[i], dtype=np.int32)
        nb = knn[i][j]
        np.array(kbp[i][j], dtype=np.int32)
        fns[nb]

    cost = worker_costs(read, args, len(fns), k)
    t0, c0 = time.perf_counter(), time.process_time()
    store = MiningStore.from_official_dict(data, osp.abspath(args.json))
    t_convert, c_convert = time.perf_counter() - t0, time.process_time() - c0
    return dict(
        json_load_s=t_parse,
        json_load_cpu_s=c_parse,
        parent_load_mem=mem_delta(m0, m1),
        worker=cost,
        convert_to_store_s=t_convert,
        convert_to_store_cpu_s=c_convert,
        open_as_store_s=t_parse + t_convert,
        open_as_store_cpu_s=c_parse + c_convert,
        converted_images=store.num_images)


PHASES = dict(generate=phase_generate, native=phase_native, json=phase_json)


def run_phase(name: str, args) -> dict:
    cmd = [sys.executable, osp.abspath(__file__), '--phase', name, '--store', args.store,
           '--json', args.json, '--num-images', str(args.num_images), '--boxes', str(args.boxes),
           '--neighbours', str(args.neighbours), '--pairs', str(args.pairs),
           '--samples', str(args.samples), '--workers'] + [str(w) for w in args.workers] + \
        (['--verbose'] if args.verbose else [])
    print(f'[{name}] ...', flush=True)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise SystemExit(f'phase {name} failed (exit {res.returncode}):\n{res.stdout[-3000:]}')
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith('RESULT ')]
    out = json.loads(lines[-1][len('RESULT '):])
    print(f'[{name}] done in {time.perf_counter() - t0:.1f} s', flush=True)
    return out


def mb(x: float) -> str:
    return f'{x / 2**20:,.1f}'


def fmt(x, digits: int) -> str:
    return 'n/a' if x is None else f'{x:.{digits}f}'


def report(r: dict, args) -> str:
    g, nat, js = r['generate'], r['native'], r['json']
    rows = [
        ('', 'official JSON', 'native store'),
        ('bytes on disk (MiB)', mb(g['json_bytes']), mb(g['store_bytes'])),
        ('write time (s)', fmt(g['write_json_s'], 1), fmt(g['write_store_s'], 2)),
        ('load wall: json.load | MiningStore.open (s)', f"{js['json_load_s']:.2f}", f"{nat['open_s_median']:.4f}"),
        ('load CPU:  json.load | MiningStore.open (s)', f"{js['json_load_cpu_s']:.2f}",
         f"{nat['open_cpu_s_median']:.4f}"),
        ('load wall: MiningStore.open of each (s)', f"{js['open_as_store_s']:.2f}", f"{nat['open_s_median']:.4f}"),
        ('parent memory after load (MiB, USS)', mb(js['parent_load_mem']['USS']), mb(nat['parent_load_mem']['USS'])),
    ]
    for w in args.workers:
        jd, nd = js['worker'][str(w)]['mean_delta'], nat['worker'][str(w)]['mean_delta']
        rows += [
            (f'{w} worker(s), {args.samples} samples each, per worker:', '', ''),
            ('  +USS (MiB)', mb(jd['USS']), mb(nd['USS'])),
            ('  +PSS (MiB)', mb(jd['Pss']), mb(nd['Pss'])),
            ('    private copies: +Private_Dirty (MiB)', mb(jd['Private_Dirty']), mb(nd['Private_Dirty'])),
            ('    mapped page cache: +PSS file (MiB)', mb(jd['Pss_File']), mb(nd['Pss_File'])),
            ('  read rate (samples/s)', f"{args.samples / js['worker'][str(w)]['seconds']:,.0f}",
             f"{args.samples / nat['worker'][str(w)]['seconds']:,.0f}"),
        ]
    wid = [max(len(str(row[c])) for row in rows) for c in range(3)]
    lines = [f'{row[0]:<{wid[0]}}  {row[1]:>{wid[1]}}  {row[2]:>{wid[2]}}' for row in rows]
    lines.insert(1, '-' * (sum(wid) + 4))
    nat_open = nat['open_s_median']
    nd1 = nat['worker'][str(args.workers[0])]['mean_delta']
    priv = nd1['Private_Dirty'] / 2**20
    lines.append('')
    lines.append(f'{args.num_images} images x {args.boxes} boxes, {args.neighbours} neighbours x '
                 f'{args.pairs} pairs ({g["total_pairs"]:,} pairs)')
    lines.append(f'targets: native open <= {TARGET_OPEN_S} s: '
                 f'{"PASS" if nat_open <= TARGET_OPEN_S else "FAIL"} ({nat_open:.4f} s); '
                 f'native worker private memory <= {TARGET_WORKER_MB:.0f} MB: '
                 f'{"PASS" if priv <= TARGET_WORKER_MB else "FAIL"} ({priv:.1f} MiB)')
    lines.append('USS counts the store pages a worker has mapped as its own while no other '
                 'process maps them; they are clean page cache (shared by all workers, '
                 'reclaimable, at most the store size), see PSS with 2 workers. The JSON growth '
                 'is private copies of the parent\'s objects, once per worker, growing with '
                 'the samples read.')
    return '\n'.join(lines)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--num-images', type=int, default=118287)
    p.add_argument('--boxes', type=int, default=100, help='kept boxes per image')
    p.add_argument('--neighbours', type=int, default=10)
    p.add_argument('--pairs', type=int, default=10, help='pairs per (image, neighbour)')
    p.add_argument('--samples', type=int, default=10000, help='samples each worker reads')
    p.add_argument(
        '--workers',
        type=int,
        nargs='+',
        default=[1, 2],
        help='data-loader worker counts to measure (default: 1 and 2)')
    p.add_argument(
        '--reuse', action='store_true', help='reuse the data files in --work-dir when present (skip generation)')
    p.add_argument('--work-dir', default=None, help='where the data files go (default: a temp dir, removed afterwards)')
    p.add_argument('--keep', action='store_true', help='keep the generated files')
    p.add_argument('--out', metavar='FILE', help=out_help('JSON; without --out the results are only printed'))
    p.add_argument('--verbose', action='store_true', help='progress bars while writing JSON')
    p.add_argument('--phase', choices=sorted(PHASES), help=argparse.SUPPRESS)
    p.add_argument('--store', help=argparse.SUPPRESS)
    p.add_argument('--json', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.phase:
        res = PHASES[args.phase](args)
        print('RESULT ' + json.dumps(res), flush=True)
        return 0
    out = check_out_file(args.out) if args.out is not None else None
    work = args.work_dir or tempfile.mkdtemp(prefix='orl_store_scale_')
    os.makedirs(work, exist_ok=True)
    args.store = osp.join(work, 'correspondence.orlstore')
    args.json = osp.join(work, 'correspondence.json')
    try:
        results = dict(
            config=dict(
                num_images=args.num_images,
                boxes=args.boxes,
                neighbours=args.neighbours,
                pairs=args.pairs,
                samples=args.samples,
                python=sys.version.split()[0],
                cpus=os.cpu_count()))
        for name in ('generate', 'native', 'json'):
            if name == 'generate' and args.reuse and osp.isdir(args.store) and \
                    osp.isfile(args.json):
                with open(osp.join(args.store, 'header.json')) as f:
                    counts = json.load(f)['counts']
                results[name] = dict(
                    reused=True,
                    store_bytes=dir_bytes(args.store),
                    json_bytes=dir_bytes(args.json),
                    write_store_s=None,
                    write_json_s=None,
                    total_pairs=counts['pairs'])
                print('[generate] reusing the files in', work, flush=True)
                continue
            results[name] = run_phase(name, args)
    finally:
        if not args.keep:
            for pth in (args.store, args.json):
                if osp.isdir(pth):
                    shutil.rmtree(pth, ignore_errors=True)
                elif osp.exists(pth):
                    os.remove(pth)
            if not args.work_dir:
                shutil.rmtree(work, ignore_errors=True)
    table = report(results, args)
    results['table'] = table
    print(table)
    if out:
        from orl_plugin.store import atomic_write_json
        atomic_write_json(out, results)
        print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    run_cli(main)
