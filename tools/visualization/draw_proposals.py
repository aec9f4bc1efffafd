"""Draw images' proposals: raw selective-search boxes and/or ORL's kept boxes, as PNGs.

    python tools/visualization/draw_proposals.py data/coco/orl/selective_search.orlstore \
        --filtered data/coco/orl/correspondence.orlstore --img-root data/coco/train2017 \
        --index 0 1 2 --out work_dirs/vis/proposals

STORE_OR_JSON is a selective-search store/JSON (drawn as raw boxes) or a correspondence one
(drawn as kept boxes). The official selective-search JSON has no image list: give it with
``--images`` (COCO-format JSON(s) or the image folder). ``--gt`` adds the ground-truth boxes of
the ``--images`` annotation file(s).
"""
import argparse
import os.path as osp
from typing import List, Optional

from orl_plugin.datasets.transforms.loading import read_image
from orl_plugin.store import MiningStore, load_image_list
from orl_plugin.utils.error_policy import InputError, run_cli
from orl_plugin.visualization.drawing import draw_proposals, find_image, load_gt_boxes, save_image


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('store', help='selective-search or correspondence store / official JSON')
    p.add_argument(
        '--filtered', default=None, help='correspondence store/JSON whose kept boxes to draw over the raw ones')
    p.add_argument(
        '--images', nargs='+', default=None, help='COCO-format JSON(s) or image folder giving the image list')
    p.add_argument(
        '--img-root', nargs='+', default=None, help='folder(s) holding the images (default: the --images folder)')
    p.add_argument('--index', type=int, nargs='+', required=True, help='image positions')
    p.add_argument('--out', required=True, help='output folder for the PNGs')
    p.add_argument('--max-raw', type=int, default=None, help='draw only the first N raw boxes')
    p.add_argument('--gt', action='store_true', help='also draw ground truth from --images')
    return p.parse_args(argv)


def open_with_images(path: str, images):
    if path.endswith('.json'):
        return MiningStore.open(path, images=images)
    return MiningStore.open(path)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    main_store = open_with_images(args.store, args.images)
    raw = filtered = None
    if main_store.kind == 'selective_search':
        raw = main_store
    elif main_store.kind == 'correspondence':
        filtered = main_store
    else:
        raise InputError(f'{args.store}: a {main_store.kind} store has no boxes to draw')
    if args.filtered:
        filtered = open_with_images(args.filtered, args.images)
        if filtered.kind != 'correspondence':
            raise InputError(f'--filtered {args.filtered}: expected a correspondence store, got '
                             f'{filtered.kind}')
        if filtered.num_images != main_store.num_images:
            raise InputError(f'{args.store} has {main_store.num_images} images but --filtered '
                             f'{args.filtered} has {filtered.num_images}')
    # the image list: from a store that has one, else from --images
    listed = next((s for s in (raw, filtered) if s is not None and s.has_image_list), None)
    if listed is not None:
        names = [listed.file_name(i) for i in range(listed.num_images)]
        ids = listed.image_ids
    elif args.images:
        names, ids = load_image_list(args.images)
    else:
        raise InputError(f'{args.store} has no image list; pass --images ANN_JSON_OR_FOLDER')
    roots = args.img_root or [p for p in (args.images or []) if osp.isdir(p)] or ['']
    gt = load_gt_boxes([p for p in args.images if p.endswith('.json')]) \
        if args.gt and args.images else {}
    for i in args.index:
        if not 0 <= i < main_store.num_images:
            raise InputError(f'--index {i} out of range [0, {main_store.num_images})')
        img = read_image(find_image(names[i], roots))
        vis = draw_proposals(
            img,
            raw_boxes=raw.boxes(i) if raw is not None else None,
            filtered_boxes=filtered.boxes(i) if filtered is not None else None,
            gt_boxes=gt.get(int(ids[i])) if args.gt else None,
            max_raw=args.max_raw)
        stem = osp.splitext(osp.basename(names[i]))[0]
        out = save_image(vis, osp.join(args.out, f'proposals_{i:06d}_{stem}.png'))
        print(out)


if __name__ == '__main__':
    run_cli(main)
