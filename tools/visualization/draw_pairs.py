"""Draw an image and one of its KNN neighbours side by side with their mined RoI pairs (PNG).

    python tools/visualization/draw_pairs.py data/coco/orl/correspondence.orlstore \
        --img-root data/coco/train2017 --index 0 5 --neighbour 0 1 --out work_dirs/vis/pairs

Pair ``p`` gets the same colour in both images and a line joins the two boxes.
``--show-boxes`` draws all kept boxes of both images in grey underneath.
"""
import argparse
import os.path as osp
from typing import List, Optional

from orl_plugin.datasets.transforms.loading import read_image
from orl_plugin.store import MiningStore
from orl_plugin.utils.error_policy import InputError, run_cli
from orl_plugin.visualization.drawing import draw_pairs, find_image, save_image


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('store', help='correspondence store (*.orlstore) or official JSON')
    p.add_argument(
        '--images',
        nargs='+',
        default=None,
        help='COCO-format JSON(s) or folder: checked against the file\'s image list')
    p.add_argument(
        '--img-root', nargs='+', default=None, help='folder(s) holding the images (default: the --images folder)')
    p.add_argument('--index', type=int, nargs='+', required=True, help='query image positions')
    p.add_argument(
        '--neighbour',
        type=int,
        nargs='+',
        default=[0],
        help='neighbour slots (0..k-1) to draw for each index; default 0')
    p.add_argument('--out', required=True, help='output folder for the PNGs')
    p.add_argument('--max-pairs', type=int, default=None)
    p.add_argument('--show-boxes', action='store_true', help='draw all kept boxes in grey')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    store = MiningStore.open(
        args.store, kind='correspondence', images=args.images if args.store.endswith('.json') else None)
    roots = args.img_root or [p for p in (args.images or []) if osp.isdir(p)] or ['']
    for i in args.index:
        if not 0 <= i < store.num_images:
            raise InputError(f'--index {i} out of range [0, {store.num_images})')
        q_img = read_image(find_image(store.file_name(i), roots))
        for j in args.neighbour:
            if not 0 <= j < store.num_neighbours:
                raise InputError(f'--neighbour {j} out of range [0, {store.num_neighbours})')
            nb = int(store.knn(i)[j])
            n_img = read_image(find_image(store.file_name(nb), roots))
            vis = draw_pairs(
                q_img,
                n_img,
                store.pairs(i, j),
                query_boxes=store.boxes(i) if args.show_boxes else None,
                neighbour_boxes=store.boxes(nb) if args.show_boxes else None,
                max_pairs=args.max_pairs,
                title=f'image {i} <-> neighbour {j} (image {nb})')
            out = save_image(vis, osp.join(args.out, f'pairs_{i:06d}_nb{j}_{nb:06d}.png'))
            print(out)


if __name__ == '__main__':
    run_cli(main)
