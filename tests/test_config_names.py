"""Configs under their former names (kept for one release): each is its new config and
nothing else, runs it, and warns naming it; the paper table counts its runs for the new name."""

import ast
import logging
from pathlib import Path

from mmengine.config import Config

from hst_mm.analysis.paper_table import config_name
from hst_mm.engine.hooks import RunConfigHook
from hst_mm.engine.hooks.run_config import RENAMED_KEY, renamed_to

from tool_runner import ROOT

FORMER = sorted(p for p in (ROOT / 'configs').rglob('*.py') if renamed_to(str(p)))
OLD_1X = ROOT / 'configs/hst/mask-rcnn_hst-vit-b_fpn_1x_coco.py'
NEW_1X = 'configs/hst/mask-rcnn_hst-vit-b_fpn_amp-1x_coco.py'


def test_every_former_name_is_only_its_new_config():
    assert len(FORMER) >= 35 and OLD_1X in FORMER
    for path in FORMER:
        new = ROOT / renamed_to(str(path))
        assert new.is_file() and renamed_to(str(new)) is None, path
        assert new.parent == path.parent and new != path
        tree = ast.parse(path.read_text())
        names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
        assert names == {'_base_', RENAMED_KEY}, path
        base = next(n.value for n in tree.body if n.targets[0].id == '_base_')
        assert ast.literal_eval(base) == [f'./{new.name}'], path


class _Runner:
    """What RunConfigHook reads of mmengine's Runner."""

    def __init__(self, cfg):
        self.cfg, self.dumps = cfg, 0
        self.logger = logging.getLogger('test_config_names')

    def dump_config(self):
        self.dumps += 1


def test_former_name_runs_the_new_config_and_warns(caplog):
    old, new = Config.fromfile(str(OLD_1X)), Config.fromfile(str(ROOT / NEW_1X))
    assert old.pop(RENAMED_KEY) == NEW_1X
    assert old.to_dict() == new.to_dict()
    old[RENAMED_KEY] = NEW_1X
    with caplog.at_level(logging.WARNING):
        RunConfigHook().before_run(_Runner(old))
        RunConfigHook().before_run(_Runner(new))
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert NEW_1X in warning.getMessage() and str(OLD_1X) in warning.getMessage()


def test_paper_table_counts_a_former_names_run_for_the_new_name(tmp_path):
    work_dir = tmp_path / OLD_1X.stem  # the default work dir of the former name
    work_dir.mkdir()
    Config({RENAMED_KEY: NEW_1X, 'model': {}}).dump(str(work_dir / f'{OLD_1X.stem}.py'))
    assert config_name(str(work_dir), []) == Path(NEW_1X).stem
    assert config_name(str(tmp_path / 'absent'), []) == 'absent'
