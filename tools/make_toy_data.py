#!/usr/bin/env python
"""Generate the toy datasets under data/toy: the command line of workshop.toy_data.

    python tools/make_toy_data.py [--out DIR] [--seed 0] [--num-train 64]
                                  [--num-val 16] [--force] [--no-trunk-weights]

Layout, determinism and what happens to an existing folder: see workshop/toy_data.py.
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # the checkout: workshop

from workshop.toy_data import main as generate  # noqa: E402

COUNTS = ('--num-train', '--num-val')


def positive_int(text: str) -> int:
    """An image count: an integer of at least 1 (an empty split trains or validates nothing,
    and the next run would refuse the data it wrote)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'{value} images: give at least 1')
    return value


def check_counts(argv=None) -> None:
    """Exit 2 with one ``error:`` line naming the option when an image count is not a
    positive integer; the generator's own parser reads the rest."""
    parser = argparse.ArgumentParser(
        prog='make_toy_data.py', usage=argparse.SUPPRESS, add_help=False
    )
    for option in COUNTS:
        parser.add_argument(option, type=positive_int)
    parser.parse_known_args(argv)


def main(argv=None) -> int:
    check_counts(argv)
    return generate(argv)


if __name__ == '__main__':
    raise SystemExit(main())
