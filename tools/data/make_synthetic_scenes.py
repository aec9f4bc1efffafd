"""Generate the synthetic-scenes data set (COCO format) used by the CPU demo configs and tests.

Example::

    python tools/data/make_synthetic_scenes.py --out data/synthetic_scenes --num-images 2000 --seed 0

writes ``OUT/images/*.jpg`` and ``OUT/annotations/instances{,_train,_val}.json``. By default the
scenes are version 2 (scene types whose images share object categories, few distractors);
``--scene-version 1`` writes the original cluttered scenes, byte-identical to earlier releases.
The version-2 options (``--scene-types`` ...) change the scene design; unset, each takes its
default (``orl_plugin.datasets.synthetic_scenes.V2_DEFAULTS``).
"""
import argparse
import json
import sys

from orl_plugin.utils.error_policy import run_cli
from orl_plugin.datasets.synthetic_scenes import V2_DEFAULTS, make_synthetic_scenes

V2_OPTIONS = ('scene_types', 'categories_per_type', 'out_of_type', 'clutter', 'background_texture', 'hue_spread',
              'max_occlusion')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-images', type=int, required=True, help='number of images')
    parser.add_argument('--seed', type=int, default=0, help='random seed (output is identical for a seed)')
    parser.add_argument(
        '--img-size',
        type=int,
        nargs=2,
        default=(256, 256),
        metavar=('W', 'H'),
        help='image width and height (default 256 256)')
    parser.add_argument(
        '--val-fraction',
        type=float,
        default=0.2,
        help='fraction of images, taken from the end, in instances_val.json (default 0.2)')
    parser.add_argument(
        '--workers', type=int, default=None, help='worker processes (default: all cores for >= 64 images)')
    parser.add_argument(
        '--colour-cue',
        action='store_true',
        help='give every category its own colour family (colour alone then separates '
        'the categories; off by default)')
    parser.add_argument(
        '--scene-version',
        type=int,
        choices=(1, 2),
        default=2,
        help='2: scene types sharing categories, few distractors (default); '
        '1: the original cluttered scenes')
    parser.add_argument(
        '--num-objects',
        type=int,
        nargs=2,
        default=None,
        metavar=('MIN', 'MAX'),
        help='objects each image tries to place (default: 2 6 in version 2, 3 6 in version 1)')
    parser.add_argument(
        '--scale-range',
        type=float,
        nargs=2,
        default=None,
        metavar=('MIN', 'MAX'),
        help='object size as a fraction of the image side (default: 0.15 0.5 in version 2, '
        '0.15 0.6 in version 1)')
    v2 = parser.add_argument_group('version-2 scene design')
    v2.add_argument(
        '--scene-types', type=int, default=None, help=f'number of scene types (default {V2_DEFAULTS["scene_types"]})')
    v2.add_argument(
        '--categories-per-type',
        type=int,
        default=None,
        help=f'object categories per scene type (default {V2_DEFAULTS["categories_per_type"]}); '
        'neighbouring types overlap when types x categories exceeds the 8 categories')
    v2.add_argument(
        '--out-of-type',
        type=float,
        default=None,
        help='probability that an object ignores its scene type\'s categories '
        f'(default {V2_DEFAULTS["out_of_type"]})')
    v2.add_argument(
        '--clutter',
        type=int,
        nargs=2,
        default=None,
        metavar=('MIN', 'MAX'),
        help=f'distractor marks per image (default {" ".join(map(str, V2_DEFAULTS["clutter"]))})')
    v2.add_argument(
        '--background-texture',
        type=float,
        default=None,
        help=f'contrast of the background patterns (default {V2_DEFAULTS["background_texture"]}; '
        '0 = plain gradients)')
    v2.add_argument(
        '--hue-spread',
        type=float,
        default=None,
        help=f'background hue variation within a type (default {V2_DEFAULTS["hue_spread"]})')
    v2.add_argument(
        '--max-occlusion',
        type=float,
        default=None,
        help='largest fraction of an object another may hide '
        f'(default {V2_DEFAULTS["max_occlusion"]})')
    args = parser.parse_args(argv)
    if args.scene_version == 1:
        given = [f'--{k.replace("_", "-")}' for k in V2_OPTIONS if getattr(args, k) is not None]
        if given:
            parser.error(f'{", ".join(given)}: version-2 options; --scene-version 1 takes none of them')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    last = [-1]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // total
        if pct // 10 != last[0] // 10 or done == total:
            last[0] = pct
            print(f'\r{done}/{total} images', end='' if done < total else '\n', file=sys.stderr, flush=True)

    design = {k: getattr(args, k) for k in V2_OPTIONS if getattr(args, k) is not None}
    summary = make_synthetic_scenes(
        args.out,
        args.num_images,
        seed=args.seed,
        img_size=tuple(args.img_size),
        val_fraction=args.val_fraction,
        num_objects=args.num_objects,
        scale_range=args.scale_range,
        workers=args.workers,
        progress=progress,
        colour_cue=args.colour_cue,
        version=args.scene_version,
        **design)
    print(json.dumps(summary, indent=2))
    print(f'{summary["num_images"] / summary["elapsed_s"] * 60:.0f} images/min', file=sys.stderr)
    return 0


if __name__ == '__main__':
    run_cli(main)
