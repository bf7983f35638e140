"""Save a timm ViT's weights to a local file, for machines without the model hub.

    python tools/save_trunk_weights.py MODEL OUT [--pretrained]

With ``--pretrained`` (on a machine with internet) timm downloads the weights, e.g.
``vit_base_patch16_224.augreg_in21k``; copy OUT to the offline machine and pass it as the
backbone's ``pretrained``. Without it the weights are timm's *random* initialisation (seeded):
that is what the toy configs use here, to exercise the real loading path.
"""

import argparse
import os

import timm
import torch

from hst_mm.atomic_write import atomic_path


def save_trunk_weights(model: str, out: str, pretrained: bool = False, seed: int = 0) -> str:
    """Write ``model``'s state dict to ``out`` (never overwrites an existing file)."""
    if os.path.exists(out):
        raise FileExistsError(f'{out} exists; remove it first to write new weights')
    torch.manual_seed(seed)
    vit = timm.create_model(model, pretrained=pretrained)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_path(out) as tmp:  # a kill never leaves a half-written file
        torch.save(vit.state_dict(), tmp)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('model', help="timm model name, e.g. 'vit_base_patch16_224.augreg_in21k'")
    parser.add_argument('out', help='output .pth file')
    parser.add_argument('--pretrained', action='store_true', help='download pretrained weights')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random initialisation')
    args = parser.parse_args(argv)
    print(save_trunk_weights(args.model, args.out, args.pretrained, args.seed))


if __name__ == '__main__':
    main()
