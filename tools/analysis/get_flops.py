"""FLOPs and parameters of an MMSegmentation config's model, for one random image.

    python tools/analysis/get_flops.py CONFIG [--shape H [W]]

mmseg 1.2.2's own ``get_flops`` (``mim run mmseg get_flops``) passes both ``input_shape``
and ``inputs`` to mmengine 0.10.7's ``get_model_complexity_info``, which refuses that
combination; this tool passes ``inputs`` only. As mmseg's tool, it counts the whole
segmentor without its auxiliary head (the head is used in training only), on a random
image of the given size after the model's data preprocessor. mmdet configs: use
``mim run mmdet get_flops CONFIG`` (it works with the pinned stack).
"""

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from hst_mm.engine.quiet import quiet_upstream_warnings  # noqa: E402


def segmentor_flops(config: str, shape=(512, 512)) -> dict:
    """``dict(flops=..., params=...)`` (plain numbers) of ``config``'s segmentor, batch 1."""
    import torch
    from mmengine.analysis import get_model_complexity_info
    from mmengine.config import Config
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg = Config.fromfile(config)
    if cfg.get('default_scope') != 'mmseg':
        raise ValueError(
            f'{config}: default_scope is {cfg.get("default_scope")!r}, not mmseg; for mmdet '
            f'configs use `mim run mmdet get_flops {config}`'
        )
    init_default_scope('mmseg')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None  # as mmseg's tool: training-only head
    model.eval()
    h, w = shape
    meta = dict(ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w))
    batch = model.data_preprocessor(
        dict(inputs=[torch.rand(3, h, w) * 255], data_samples=[SegDataSample(metainfo=meta)])
    )
    with torch.no_grad():
        info = get_model_complexity_info(
            model, inputs=batch['inputs'], show_table=False, show_arch=False
        )
    return dict(flops=info['flops'], params=info['params'])


def main(argv=None):
    quiet_upstream_warnings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', default=[512], help='H [W] (default 512)')
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes H or H W, got {args.shape}')
    shape = (args.shape[0], args.shape[-1])
    if not osp.isfile(args.config):
        sys.exit(f'error: config file not found: {args.config}')
    result = segmentor_flops(args.config, shape)
    print(f'config: {args.config}')
    print(f'input shape: (3, {shape[0]}, {shape[1]}), batch 1, without the auxiliary head')
    print(f'FLOPs: {result["flops"] / 1e9:.3f} G (mmengine counts a multiply-add as 1)')
    print(f'params: {result["params"] / 1e6:.3f} M')


if __name__ == '__main__':
    main()
