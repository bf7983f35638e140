"""Count a config's model parameters, total and trainable, split by part.

    python tools/analysis/count_params.py CONFIG [--meta] [--cfg-options k=v ...] [--json OUT]

The model is built from the config with the trunk's pretrained weights disabled (counting
needs no weights); ``--meta`` builds it on PyTorch's meta device (same counts, faster). The
counting and the parts live in :mod:`hst_mm.analysis.count_params`.
"""

import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import Config, DictAction  # noqa: E402

from hst_mm.analysis.count_params import build_model, count  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument(
        '--meta', action='store_true', help='build on the meta device (same counts, faster)'
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--json', help='also write the counts to this JSON file')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    rows = count(build_model(cfg, meta=args.meta))
    print(f'{osp.basename(args.config)}')
    print(f'{"part":<16}{"total":>14}{"trainable":>14}')
    for part, r in rows.items():
        print(f'{part:<16}{r["total"]:>14,}{r["trainable"]:>14,}')
    a = rows['all']
    print(
        f'total {a["total"] / 1e6:.2f}M, trainable {a["trainable"] / 1e6:.2f}M '
        f'({100 * a["trainable"] / a["total"]:.1f}%)'
    )
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'config': args.config, 'parts': rows}, f, indent=2)
    return rows


if __name__ == '__main__':
    main()
