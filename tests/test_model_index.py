"""mim's model index: the committed model-index.yml and metafiles are what
tools/make_model_index.py writes from the configs, and mim's own parser reads them."""

import glob

from hst_mm.engine.hooks.run_config import renamed_to

from tool_runner import ROOT
from tools.make_model_index import SKIP, render, stale


def test_committed_index_matches_the_configs():
    files = render()
    bad = stale(files)
    assert not bad, (
        f'model index out of date ({", ".join(bad)}): run python tools/make_model_index.py '
        'and commit model-index.yml and configs/*/metafile.yml'
    )
    configs = {
        p.relative_to(ROOT).as_posix()
        for p in ROOT.glob('configs/*/*.py')
        if p.parent.name not in SKIP and renamed_to(str(p)) is None
    }
    listed = set()
    for path, text in files.items():
        listed |= {line.split(': ', 1)[1] for line in text.splitlines() if 'Config: ' in line}
    assert listed == configs
    # A config added without running the generator: its family's metafile is named.
    added = dict(files, **{'configs/hst/metafile.yml': files['configs/hst/metafile.yml'] + '-'})
    assert stale(added) == ['configs/hst/metafile.yml']


def test_index_counts_are_the_pinned_counts():
    """The metafiles' parameter counts are the ones tests/test_configs.py pins."""
    import yaml
    from test_configs import OWN

    seen = 0
    for path in glob.glob(str(ROOT / 'configs/*/metafile.yml')):
        with open(path) as f:
            for model in yaml.safe_load(f)['Models']:
                meta = model['Metadata']
                counts = (meta['Trainable Parameters'], meta['Parameters'])
                if model['Config'] in OWN:
                    assert counts == OWN[model['Config']], model['Name']
                    seen += 1
                assert 0 < counts[0] <= counts[1], model['Name']
    assert seen == len(OWN)


def test_mim_reads_the_index():
    """The table `mim search` would print, built by mim's own code from our files."""
    from mim.commands.search import convert2df, filter_by_training_datasets
    from modelindex import load

    df = convert2df(load(str(ROOT / 'model-index.yml')))
    names = {
        p.rsplit('/', 1)[-1][:-3]
        for p in glob.glob(str(ROOT / 'configs/hst/*.py'))
        if renamed_to(p) is None
    }
    assert names <= set(df.index)
    hst = df.loc[sorted(names)]
    assert set(hst['model']) == {'hst'}  # the collection; mim lower-cases values
    assert set(hst['paper']) == {'https://arxiv.org/abs/2310.05393'}
    coco = filter_by_training_datasets(df, ['coco'])
    assert 'mask-rcnn_hst-vit-b_fpn_amp-1x_coco' in coco.index
    assert 'upernet_hst-vit-b_8xb2-amp-160k_ade20k-512x512' not in coco.index
    assert 'weight' not in df.columns  # no trained checkpoints yet
