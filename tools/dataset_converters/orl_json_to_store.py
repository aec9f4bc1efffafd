"""Convert an official ORL JSON file (selective search, KNN or correspondence) to a native store.

    python tools/dataset_converters/orl_json_to_store.py IN.json OUT.orlstore \
        [--images data/coco/annotations/instances_train2017.json ...] [--kind KIND]

The kind is detected from the file. The official selective-search file has no image list: it is
aligned by position with the data set's images, so pass ``--images`` (COCO-format JSON(s),
concatenated in the given order, or an image folder) to record file names and ids in the store;
for KNN / correspondence files ``--images`` is checked against the file's own list.
"""
import argparse
import os.path as osp
import time
from typing import List, Optional

from orl_plugin.store import KINDS, MiningStore
from orl_plugin.utils.error_policy import run_cli


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('input', help='official ORL .json file')
    p.add_argument('output', help='store directory to write (e.g. data/coco/orl/knn.orlstore)')
    p.add_argument(
        '--images',
        nargs='+',
        default=None,
        help='COCO-format annotation JSON(s) or an image folder giving the image list')
    p.add_argument('--kind', choices=KINDS, default=None, help='expected kind (default: detect)')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    t0 = time.time()
    store = MiningStore.open(args.input, kind=args.kind, images=args.images, verbose=True)
    t1 = time.time()
    out = store.save(
        args.output,
        provenance=dict(
            converted_from=osp.abspath(args.input),
            images=[osp.abspath(p) for p in args.images] if args.images else None))
    print(f'{store.kind}: {store.num_images} images, {store.total_boxes} boxes, '
          f'{store.num_neighbours} neighbours, {store.total_pairs} pairs '
          f'(parsed in {t1 - t0:.1f} s, written in {time.time() - t1:.1f} s) -> {out}')
    if store.kind == 'selective_search' and not store.has_image_list:
        print('note: no --images given; the store has no file names (ids are -1) and is aligned '
              'by position with the data set')


if __name__ == '__main__':
    run_cli(main)
