"""Generate the synthetic-scenes data set (COCO format) used by the CPU demo configs and tests.

Example::

    python tools/data/make_synthetic_scenes.py --out data/synthetic_scenes --num-images 2000 --seed 0

writes ``OUT/images/*.jpg`` and ``OUT/annotations/instances{,_train,_val}.json``.
"""
import argparse
import json
import sys

from orl_plugin.cli import run_cli
from orl_plugin.datasets.synthetic_scenes import make_synthetic_scenes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-images', type=int, required=True, help='number of images')
    parser.add_argument('--seed', type=int, default=0, help='random seed (output is identical for a seed)')
    parser.add_argument('--img-size', type=int, nargs=2, default=(256, 256), metavar=('W', 'H'),
                        help='image width and height (default 256 256)')
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='fraction of images, taken from the end, in instances_val.json (default 0.2)')
    parser.add_argument('--workers', type=int, default=None,
                        help='worker processes (default: all cores for >= 64 images)')
    parser.add_argument('--colour-cue', action='store_true',
                        help='give every category its own colour family (colour alone then separates '
                             'the categories; off by default)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    last = [-1]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // total
        if pct // 10 != last[0] // 10 or done == total:
            last[0] = pct
            print(f'\r{done}/{total} images', end='' if done < total else '\n', file=sys.stderr, flush=True)

    summary = make_synthetic_scenes(args.out, args.num_images, seed=args.seed,
                                    img_size=tuple(args.img_size), val_fraction=args.val_fraction,
                                    workers=args.workers, progress=progress, colour_cue=args.colour_cue)
    print(json.dumps(summary, indent=2))
    print(f'{summary["num_images"] / summary["elapsed_s"] * 60:.0f} images/min', file=sys.stderr)
    return 0


if __name__ == '__main__':
    run_cli(main)
