#!/usr/bin/env python
"""Pre-flight check of a folder of images (or a COCO-style image list) before pre-training on it.

Decodes every image in parallel with the decoder training uses (``LoadImageOrSkip``) and reports:
unreadable files and why; grey, alpha, CMYK, 16-bit and EXIF-rotated files and how they will be
read; images smaller than the minimum box; the size distribution. ``--out`` writes the readable
images as a COCO-style image list that ``SceneImageDataset`` (so every stage) reads:

    python tools/analysis_tools/check_images.py data/my_photos --workers 8 --out data/my_photos.json
    # then: dataset=dict(type='SceneImageDataset', ann_file='data/my_photos.json',
    #                    data_prefix=dict(img_path='data/my_photos'))

A folder is listed as ``SceneImageDataset`` lists it (recursive, sorted; jpg, jpeg, png, ppm, bmp,
pgm, tif, tiff, webp). Exit code 0 when the check ran (whatever it found), 2 on bad input (one line).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

from orl_plugin.datasets.scene_dataset import scene_data_infos
from orl_plugin.datasets.transforms.loading import BadImageError, read_image
from orl_plugin.store import atomic_write_json
from orl_plugin.utils.error_policy import check_out_file, out_help, run_cli

#: Categories of readable files that are read differently from a plain 8-bit RGB image.
HOW_READ = {
    'grey': 'read as three equal channels (R = G = B)',
    'alpha': "alpha dropped, the stored colour kept (PIL's convert('RGB'), not composited)",
    'cmyk': 'converted to RGB by the decoder (PIL with the pillow backend)',
    'sixteen_bit': "scaled to 8 bits (the high byte, as OpenCV does; PIL's convert alone would "
    'clip them to white)',
    'exif_rotated': 'EXIF orientation ignored: read in the raw pixel orientation, as the official '
    'ORL code and its box files (a photo viewer shows them rotated)',
}
_GREY_MODES = ('1', 'L', 'LA', 'I', 'F')
_LONG_SIDE_BINS = (0, 96, 256, 640, 1024, 1333, 2048, 4096)


def inspect_image(task: tuple) -> dict:
    """Header facts and the decoding verdict of one image; ``task`` is ``(path, file_name,
    backend)``. Runs in a worker process."""
    path, file_name, backend = task
    rec: Dict[str, object] = dict(file_name=file_name, ok=False)
    try:
        img = read_image(path, backend=backend)
    except BadImageError as e:
        rec.update(reason=e.reason, kind=e.kind)
        return rec
    rec.update(ok=True, height=int(img.shape[0]), width=int(img.shape[1]))
    try:
        with Image.open(path) as pil:
            mode = pil.mode
            rawmodes = [str(getattr(t, 'args', t[3] if len(t) > 3 else '')) for t in pil.tile]
            rec.update(
                format=pil.format,
                mode=mode,
                grey=mode in _GREY_MODES or mode.startswith('I;16') or mode == 'P' and _grey_palette(pil),
                alpha=mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in pil.info,
                cmyk=mode == 'CMYK',
                sixteen_bit=mode.startswith('I;16') or mode in ('I', 'F') or any('16' in r for r in rawmodes),
                exif_orientation=int(pil.getexif().get(0x0112, 1) or 1))
    except Exception as e:  # decodable by OpenCV but not by PIL: report what is known
        rec.update(format='?', mode='?', header_error=f'{type(e).__name__}: {e}')
    rec['exif_rotated'] = rec.get('exif_orientation', 1) not in (0, 1)
    return rec


def _grey_palette(pil: Image.Image) -> bool:
    pal = pil.getpalette() or []
    rgb = np.asarray(pal[:len(pal) // 3 * 3]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def list_images(source: str, img_dir: Optional[str]) -> tuple:
    """``(data infos, kind, image root)`` of a folder or a COCO-style JSON."""
    if osp.isdir(source):
        infos = scene_data_infos(dict(ann_file='', data_prefix=dict(img_path=source)))
        return infos, 'folder', source
    root = img_dir if img_dir is not None else osp.dirname(source)
    infos = scene_data_infos(dict(ann_file=source, data_prefix=dict(img_path=root)))
    return infos, 'json', root


def summarize(records: List[dict], min_size: int) -> dict:
    """Counts and file lists per category, plus the size distribution of the readable images."""
    good = [r for r in records if r['ok']]
    out: dict = dict(
        num_images=len(records),
        num_readable=len(good),
        unreadable=[dict(file_name=r['file_name'], kind=r['kind'], reason=r['reason']) for r in records if not r['ok']])
    for cat in HOW_READ:
        out[cat] = [r['file_name'] for r in good if r.get(cat)]
    out['small'] = [r['file_name'] for r in good if min(r['width'], r['height']) < min_size]
    out['min_size'] = min_size
    if good:
        w = np.array([r['width'] for r in good])
        h = np.array([r['height'] for r in good])
        q = (0, 5, 50, 95, 100)
        long_side = np.maximum(w, h)
        edges = list(_LONG_SIDE_BINS) + [int(max(long_side.max(), _LONG_SIDE_BINS[-1])) + 1]
        hist, _ = np.histogram(long_side, bins=edges)
        out['sizes'] = dict(
            percentiles=list(q),
            width=np.percentile(w, q).round().astype(int).tolist(),
            height=np.percentile(h, q).round().astype(int).tolist(),
            megapixels=np.percentile(w * h / 1e6, q).round(3).tolist(),
            long_side_histogram=[
                dict(range=f'{lo}-{hi - 1}', count=int(c)) for lo, hi, c in zip(edges[:-1], edges[1:], hist)
            ])
    return out


def format_report(summary: dict, source: str) -> str:
    lines = [
        f'{source}: {summary["num_images"]} images, {summary["num_readable"]} readable, '
        f'{len(summary["unreadable"])} unreadable'
    ]
    if summary['unreadable']:
        lines.append('unreadable (skipped by training and mining):')
        lines += [f'  {u["file_name"]}: {u["reason"]}' for u in summary['unreadable']]
    for cat, how in HOW_READ.items():
        files = summary[cat]
        if files:
            lines.append(f'{cat.replace("_", "-")} ({len(files)}): {how}: {_some(files)}')
    if summary['small']:
        lines.append(f'smaller than the {summary["min_size"]} px minimum box ({len(summary["small"])}): '
                     'no proposal survives the box filter, stage 2c keeps raw box 0: '
                     f'{_some(summary["small"])}')
    sizes = summary.get('sizes')
    if sizes:
        pct = '/'.join(f'p{p}' for p in sizes['percentiles'])
        lines.append(f'size ({pct}): width {sizes["width"]}, height {sizes["height"]}, '
                     f'megapixels {sizes["megapixels"]}')
        lines.append('long side: ' + ', '.join(f'{b["range"]} px: {b["count"]}'
                                               for b in sizes['long_side_histogram'] if b['count']))
    return '\n'.join(lines)


def _some(names: List[str], limit: int = 10) -> str:
    more = f' ... and {len(names) - limit} more' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def clean_list(infos: List[dict], records: List[dict], kind: str, source: str) -> dict:
    """The readable images as a COCO-style image list (annotations of a JSON source kept)."""
    ok = {r['file_name']: r for r in records if r['ok']}
    images = [
        dict(
            id=info['img_id'],
            file_name=info['file_name'],
            width=ok[info['file_name']]['width'],
            height=ok[info['file_name']]['height']) for info in infos if info['file_name'] in ok
    ]
    out = dict(
        info=dict(
            description='readable images, written by tools/analysis_tools/check_images.py',
            source=osp.abspath(source),
            unreadable=[dict(file_name=r['file_name'], reason=r['reason']) for r in records if not r['ok']]),
        images=images,
        categories=[])
    if kind == 'json':
        with open(source) as f:
            content = json.load(f)
        kept = {im['id'] for im in images}
        out['categories'] = content.get('categories') or []
        if 'annotations' in content:
            out['annotations'] = [a for a in content['annotations'] if a.get('image_id') in kept]
    return out


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('source', help='a folder of images, or a COCO-style JSON image list')
    p.add_argument('--img-dir', help='image root of a JSON source (default: the JSON\'s folder)')
    p.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='decoding processes')
    p.add_argument('--out', metavar='FILE', help=out_help('the readable images as a COCO-style JSON image list'))
    p.add_argument('--report', metavar='FILE', help='the full report as JSON (checked as --out is)')
    p.add_argument('--min-size', type=int, default=96, help='minimum box side of the box filter')
    p.add_argument(
        '--backend', default='pillow', choices=('pillow', 'cv2'), help="the training loader's imdecode_backend")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    out = check_out_file(args.out) if args.out is not None else None
    report = check_out_file(args.report, '--report') if args.report is not None else None
    if not osp.exists(args.source):
        raise FileNotFoundError(f'{args.source}: no such folder or file')
    infos, kind, _ = list_images(args.source, args.img_dir)
    tasks = [(info['img_path'], info['file_name'], args.backend) for info in infos]
    if args.workers > 1 and len(tasks) > 1:
        records = track_parallel_progress(inspect_image, tasks, nproc=args.workers, chunksize=4)
    else:
        records = track_progress(inspect_image, tasks)
    summary = summarize(records, args.min_size)
    print(format_report(summary, args.source))
    if report:
        atomic_write_json(report, dict(summary, records=records), indent=1)
    if out:
        content = clean_list(infos, records, kind, args.source)
        atomic_write_json(out, content)
        root = args.source if kind == 'folder' else (args.img_dir or osp.dirname(args.source))
        print(f'wrote {len(content["images"])} readable images to {out}; use it with '
              f"ann_file='{out}', data_prefix=dict(img_path='{root}')")
    return 0


if __name__ == '__main__':
    run_cli(main)
