"""A misspelt --cfg-options key or config path is named with its closest match in one line,
exit status 2, before anything runs (tools/train.py and tools/test.py share the check); a
new key is still added."""

import os

import pytest

from hst_mm.engine.config_keys import check_key

import tools.test as test_py
import tools.train as train_py
from conftest import ROOT, TOY_DET_CONFIG, TOY_SEG_CONFIG

SEG = str(ROOT / TOY_SEG_CONFIG)


def refused(main, argv, capsys):
    """The one stderr line a tool ends with, after checking its exit status is 2."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    'option, typo, closest',
    [
        ('default_hooks.chekpoint.interval=1', 'chekpoint', 'default_hooks.checkpoint'),
        ('train_cfg.max_iter=2', 'max_iter', 'train_cfg.max_iters'),
        ('model.decode_head.num_clases=5', 'num_clases', 'model.decode_head.num_classes'),
    ],
)
def test_misspelt_key_is_named_with_the_closest_before_the_run(
    option, typo, closest, tmp_path, capsys
):
    work_dir = tmp_path / 'run'
    line = refused(
        train_py.main, [SEG, '--work-dir', str(work_dir), '--cfg-options', option], capsys
    )
    assert typo in line and closest in line
    assert not work_dir.exists()  # refused before the run took its work dir


def test_test_tool_refuses_the_same_way(tmp_path, capsys):
    argv = [SEG, str(tmp_path / 'no.pth'), '--cfg-options', 'test_dataloader.batch_sise=2']
    line = refused(test_py.main, argv, capsys)
    assert 'batch_sise' in line and 'test_dataloader.batch_size' in line


def test_new_keys_and_list_indices_are_still_taken():
    argv = [
        SEG,
        '--cfg-options',
        'model.backbone.out_indices=[0,1,2,3]',  # existing
        'default_hooks.checkpoint.out_dir=/tmp/x',  # new, nothing close beside it
        'train_dataloader.dataset.pipeline.0.backend_args=None',  # into a list element
        'model.train_cfg.anything=1',  # into a None: mmengine makes it a dict
        'randomness.seed=0',  # a dict the config lacks (the Runner reads it)
    ]
    cfg = train_py.build_config(train_py.parse_args(argv))
    assert cfg.default_hooks.checkpoint.out_dir == '/tmp/x'
    assert cfg.model.train_cfg == {'anything': 1} and cfg.randomness.seed == 0


def test_wrong_parents_and_indices_are_refused():
    cfg = {'a': {'b': 1, 'items': [{'x': 1}]}}
    assert check_key(cfg, 'a.c') is None  # a new leaf
    assert 'a.b' in check_key(cfg, 'a.bb.c')  # a missing parent: the closest named
    assert check_key(cfg, 'seed.c') is None  # a new dict, nothing close (randomness.seed=0)
    assert check_key(cfg, 'a.items.3.x') is not None  # past the list's end
    assert check_key(cfg, 'a.b.c') is not None  # into a number


def test_misspelt_config_path_names_the_closest_configs(tmp_path, capsys):
    typo = str(ROOT / TOY_DET_CONFIG).replace('mask-rcnn_hst', 'mask-rcnn_hts')
    line = refused(train_py.main, [typo], capsys)
    assert line.startswith('error:') and TOY_DET_CONFIG in line
    # a config of the user's own, beside the given path
    (tmp_path / 'my_detector.py').write_text('x = 1\n')
    os.chdir(tmp_path)
    try:
        line = refused(test_py.main, ['my_detektor.py', 'x.pth'], capsys)
    finally:
        os.chdir(ROOT)
    assert 'my_detector.py' in line


def test_both_tools_take_the_shared_arguments():
    shared = ['--work-dir', 'w', '--cfg-options', 'a=1', '--launcher', 'pytorch']
    train = train_py.parse_args(['c.py', *shared, '--amp'])
    test = test_py.parse_args(['c.py', 'k.pth', *shared, '--tta'])
    for args in (train, test):
        assert (args.config, args.work_dir, args.cfg_options, args.launcher) == (
            'c.py',
            'w',
            ['a=1'],
            'pytorch',
        )
