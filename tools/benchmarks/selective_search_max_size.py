"""Selective search on large photos: proposal recall and time per image for several ``max_size``.

For each image (synthetic scenes rendered large, with ground-truth objects; or ``--data-root``, a
COCO-format set with boxes) it decodes the file once (PIL, as the step does), then runs the stage-2b
transform ``SelectiveSearch(max_size=M)`` (fast mode, one OpenCV thread) for every ``M`` of
``--max-sizes`` (0 = full resolution, the paper's setting), the arms interleaved image by image so
that the machine's drift hits them alike. Per arm it reports:

- CPU seconds per image of the search (resize included; this process's CPU time, which the
  other jobs of a shared machine disturb far less than wall time) and the speed-up over full
  resolution;
- raw boxes per image;
- recall@0.5 (and @0.7 for the kept boxes) of the ground-truth objects whose sides are both
  >= ``--min-size`` (the objects the 96 px box filter can keep at all), by the raw boxes and by
  the boxes the 2c filter keeps (``filter_boxes``: >= 96 px, aspect <= 3, IoU <= 0.5, first
  100), both in original pixels;
- with ``--draft``: the same after decoding the JPEG with PIL's ``draft`` mode (DCT scaling to the
  smallest 1/2, 1/4, 1/8 size whose long side is still >= M), and the decode times.

Prints a table and writes JSON.

    python tools/benchmarks/selective_search_max_size.py --num-images 2 --img-size 3000 2000 \\
        --max-sizes 0 1600 1024 800 640 512 --draft \\
        --out work_dirs/benchmarks/selective_search_max_size.json
"""
import argparse
import platform
import tempfile
import time
from typing import List, Optional

import cv2
import numpy as np
from PIL import Image

import orl_plugin  # noqa: F401  (registers the components)
from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes
from orl_plugin.datasets.transforms.box_filter import filter_boxes
from orl_plugin.datasets.transforms.loading import decode_image
from orl_plugin.datasets.transforms.selective_search import SelectiveSearch
from orl_plugin.evaluation.box_metrics import gt_recall
from orl_plugin.store import atomic_write_json
from orl_plugin.utils.error_policy import check_out_file, out_help, run_cli


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data-root', help='COCO-format data root with boxes (default: synthetic scenes)')
    p.add_argument('--ann-file', default='annotations/instances.json')
    p.add_argument('--img-prefix', default='images/')
    p.add_argument('--num-images', type=int, default=2)
    p.add_argument('--img-size', type=int, nargs=2, default=(3000, 2000), metavar=('W', 'H'))
    p.add_argument(
        '--max-sizes', type=int, nargs='+', default=[0, 1600, 1024, 800, 640, 512], help='0 = full resolution')
    p.add_argument('--min-size', type=int, default=96, help='box filter minimum side')
    p.add_argument('--draft', action='store_true', help='also decode JPEGs with PIL draft mode')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument(
        '--out', default='work_dirs/benchmarks/selective_search_max_size.json', metavar='FILE', help=out_help('JSON'))
    return p.parse_args(argv)


def decode_draft(content: bytes, max_size: int) -> np.ndarray:
    """BGR image decoded by PIL at the smallest DCT scale whose long side is still >= max_size."""
    import io
    with Image.open(io.BytesIO(content)) as pil:
        w, h = pil.size
        s = max_size / max(w, h)
        pil.draft('RGB', (max(1, int(w * s)), max(1, int(h * s))))
        return np.ascontiguousarray(np.asarray(pil.convert('RGB'))[..., ::-1])


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out)
    tmp = None
    if args.data_root:
        infos = scene_data_infos(
            dict(data_root=args.data_root, ann_file=args.ann_file, data_prefix=dict(img_path=args.img_prefix)),
            args.num_images)
        source = args.data_root
    else:
        tmp = tempfile.TemporaryDirectory(prefix='ss_max_size_')
        t0 = time.process_time()
        make_synthetic_scenes(
            tmp.name,
            args.num_images,
            seed=args.seed,
            img_size=tuple(args.img_size),
            num_objects=(10, 16),
            scale_range=(0.05, 0.5),
            workers=1)
        print(
            f'rendered (CPU s) {args.num_images} scenes of {args.img_size[0]}x{args.img_size[1]} in '
            f'{time.process_time() - t0:.1f} s',
            flush=True)
        infos = scene_data_infos(
            dict(data_root=tmp.name, ann_file='annotations/instances.json', data_prefix=dict(img_path='images/')))
        source = f'synthetic scenes {args.img_size[0]}x{args.img_size[1]}'
    cv2.setNumThreads(1)
    arms = [(m, False) for m in args.max_sizes] + \
        [(m, True) for m in args.max_sizes if m and args.draft]
    stats = {
        arm: dict(search_s=[], boxes=[], recalled_raw=0, recalled_kept=0, recalled_kept07=0, decode_s=[])
        for arm in arms
    }
    num_gt = 0
    for k, info in enumerate(infos):
        with open(info['img_path'], 'rb') as f:
            content = f.read()
        t0 = time.process_time()
        img = decode_image(content, info['img_path'])
        full_decode = time.process_time() - t0
        h, w = img.shape[:2]
        gt = np.asarray(info.get('gt_bboxes', np.zeros((0, 4))), np.float32).reshape(-1, 4)
        gt = gt[((gt[:, 2] - gt[:, 0]) >= args.min_size) & ((gt[:, 3] - gt[:, 1]) >= args.min_size)]
        num_gt += len(gt)
        for m, draft in arms:
            st = stats[(m, draft)]
            if draft:
                t0 = time.process_time()
                src = decode_draft(content, m)
                st['decode_s'].append(time.process_time() - t0)
            else:
                src = img
                st['decode_s'].append(full_decode)
            t0 = time.process_time()
            out = SelectiveSearch(max_size=m or None)(dict(img=src, ori_shape=(h, w)))
            st['search_s'].append(time.process_time() - t0)
            boxes = out['proposals']
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= w).all() \
                and (boxes[:, 1] + boxes[:, 3] <= h).all(), 'a box left the image'
            kept = filter_boxes(boxes, min_size=args.min_size)
            st['boxes'].append(len(boxes))
            st['recalled_raw'] += gt_recall(boxes, gt)[0]
            st['recalled_kept'] += gt_recall(kept, gt)[0]
            st['recalled_kept07'] += gt_recall(kept, gt, 0.7)[0]
            print(
                f'image {k + 1}/{len(infos)} ({w}x{h}) max_size {m or "full"}'
                f'{" draft" if draft else ""}: {st["search_s"][-1]:.2f} s, {len(boxes)} boxes',
                flush=True)
    full = float(np.mean(stats[(0, False)]['search_s'])) if (0, False) in stats else float('nan')
    rows = []
    for (m, draft), st in stats.items():
        search = float(np.mean(st['search_s']))
        rows.append(
            dict(
                max_size=m or None,
                draft_decode=draft,
                search_s=search,
                speedup=full / search,
                decode_s=float(np.mean(st['decode_s'])),
                boxes_per_image=float(np.mean(st['boxes'])),
                recall_raw=st['recalled_raw'] / max(num_gt, 1),
                recall_kept=st['recalled_kept'] / max(num_gt, 1),
                recall_kept_iou07=st['recalled_kept07'] / max(num_gt, 1)))
    print(f'\n{source}: {len(infos)} images, {num_gt} ground-truth objects with sides >= '
          f'{args.min_size} px; one OpenCV thread, CPU seconds')
    print('| max_size | decode | decode s | search s / image | speed-up | raw boxes | '
          'recall@0.5 raw | recall@0.5 kept | recall@0.7 kept |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f'| {r["max_size"] or "full"} | {"PIL draft" if r["draft_decode"] else "full"} | '
              f'{r["decode_s"]:.3f} | {r["search_s"]:.2f} | '
              f'{r["speedup"]:.1f}x | {r["boxes_per_image"]:.0f} | {r["recall_raw"]:.3f} | '
              f'{r["recall_kept"]:.3f} | {r["recall_kept_iou07"]:.3f} |')
    atomic_write_json(
        out,
        dict(
            source=source,
            num_images=len(infos),
            num_gt=num_gt,
            min_size=args.min_size,
            img_size=list(args.img_size) if not args.data_root else None,
            machine=platform.platform(),
            rows=rows),
        indent=1)
    print(f'wrote {out}')
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == '__main__':
    run_cli(main)
