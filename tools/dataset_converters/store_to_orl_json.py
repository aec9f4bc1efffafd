"""Write a native mining store as the official ORL JSON file of its kind (streamed).

    python tools/dataset_converters/store_to_orl_json.py IN.orlstore OUT.json [--official-only]

By default the file also carries an ``"orl_plugin"`` key (provenance, skipped images) and, for
selective search, the image list, which the official code ignores and which make the round trip
back to a store lossless. ``--official-only`` writes the official keys only.
"""
import argparse
import time
from typing import List, Optional

from orl_plugin.store import MiningStore, write_official_json
from orl_plugin.utils.error_policy import run_cli


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('input', help='store directory (*.orlstore)')
    p.add_argument('output', help='.json file to write')
    p.add_argument(
        '--official-only', action='store_true', help='omit the extra "orl_plugin" / selective-search "images" keys')
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    t0 = time.time()
    store = MiningStore.open(args.input)
    print(f'writing {store!r} as official JSON ...', flush=True)
    out = write_official_json(store, args.output, include_meta=not args.official_only, verbose=True)
    print(f'done in {time.time() - t0:.1f} s -> {out}')


if __name__ == '__main__':
    run_cli(main)
