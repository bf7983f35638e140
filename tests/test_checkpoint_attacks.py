"""Crafted checkpoint files run no code, through torch.load, mmengine and every tool that
takes a weight file.

The getattr-chain file: ``getattr(getattr, '__self__')`` is the ``builtins`` module,
``getattr(builtins, 'eval')`` is ``eval``, and torch's allow-listed
``torch._tensor._rebuild_from_type_v2`` calls it. With the real ``getattr`` allow-listed
(hst_mm before 0.2) loading this file wrote the marker file and then loaded normally.
"""

import os
import pickle
import sys

import pytest
import torch

from tool_runner import ROOT, ensure_toy_data, run_main

SEG_CONFIG = 'configs/toy/upernet_hst-vit-ti_toy.py'


class _GetAttr:
    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


class _EvalPayload:
    """Unpickles as ``eval(code)`` through ``_rebuild_from_type_v2``."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        builtins_module = _GetAttr(getattr, '__self__')
        return (
            torch._tensor._rebuild_from_type_v2,
            (_GetAttr(builtins_module, 'eval'), torch.Tensor, (self.code,), {}),
        )


class _SystemPayload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def write_getattr_chain_file(path, marker):
    """A checkpoint whose loading writes ``marker`` (then yields a tensor) if eval is reached."""
    code = (
        f"__import__('pathlib').Path({str(marker)!r}).write_text('pwned') "
        f"and __import__('torch').zeros(1)"
    )
    torch.save({'state_dict': {'w': _EvalPayload(code)}, 'meta': {}}, path)
    return path


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'payload_ran'
    return write_getattr_chain_file(tmp_path / 'evil.pth', marker), marker


def test_getattr_chain_refused_by_torch_load(evil):
    import hst_mm  # noqa: F401  installs the allow-list

    path, marker = evil
    with pytest.raises(pickle.UnpicklingError, match=r'refused getattr'):
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_getattr_chain_refused_by_mmengine(evil):
    from mmengine.runner.checkpoint import _load_checkpoint

    import hst_mm  # noqa: F401

    path, marker = evil
    with pytest.raises(pickle.UnpicklingError, match=r'refused getattr'):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_getattr_is_narrow():
    from mmengine.logging.history_buffer import HistoryBuffer

    from hst_mm.engine.checkpoint_safety import history_buffer_statistic, pickled_bytes

    assert history_buffer_statistic(HistoryBuffer, 'mean') == HistoryBuffer.mean
    for obj, name in (
        (getattr, '__self__'),
        (HistoryBuffer, '__init__'),
        (HistoryBuffer, '_x'),
        (HistoryBuffer, 'max_length'),
        (os, 'system'),
        (HistoryBuffer, 1),
    ):
        with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
            history_buffer_statistic(obj, name)
    assert pickled_bytes() == b'' and pickled_bytes(b'ab') == b'ab'
    assert pickled_bytes('\x00\xff', 'latin1') == b'\x00\xff'
    with pytest.raises(pickle.UnpicklingError, match='refused bytes'):
        pickled_bytes(10**12)  # a size would allocate that much


def test_other_payloads_stay_refused(tmp_path):
    import hst_mm  # noqa: F401

    marker = tmp_path / 'ran'
    cases = {
        'os.system': {'state_dict': {}, 'meta': _SystemPayload(marker)},
        'real bytes of a size': {'meta': _Call(bytes, (10**12,))},
    }
    for what, obj in cases.items():
        path = tmp_path / 'bad.pth'
        torch.save(obj, path)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
        assert not marker.exists(), what


class _Call:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_empty_and_filled_history_buffers_load(tmp_path):
    """mmengine's message hub: a scalar created but never updated pickles ``bytes()``."""
    from mmengine.logging import HistoryBuffer

    import hst_mm  # noqa: F401

    filled = HistoryBuffer()
    filled.update(1.5)
    filled.update(2.5)
    torch.save({'message_hub': {'empty': HistoryBuffer(), 'filled': filled}}, tmp_path / 'h.pth')
    hub = torch.load(tmp_path / 'h.pth', weights_only=True)['message_hub']
    assert len(hub['empty'].data[0]) == 0
    assert hub['filled'].mean() == 2.0 and hub['filled'].max() == 2.5


# ---- the five entry points that take a weight file, as a user runs them ----------------------


def _entry_points(path, work_dir):
    data = ensure_toy_data()
    image = sorted((data / 'ade' / 'images' / 'validation').glob('*.png'))[0]
    short = ['train_cfg.max_iters=1', 'train_cfg.val_interval=100']
    return {
        'pretrained': [
            'tools/train.py',
            SEG_CONFIG,
            '--work-dir',
            work_dir / 'a',
            '--cfg-options',
            f'model.backbone.pretrained={path}',
            *short,
        ],
        'load_from': [
            'tools/train.py',
            SEG_CONFIG,
            '--work-dir',
            work_dir / 'b',
            '--cfg-options',
            f'load_from={path}',
            *short,
        ],
        'resume': [
            'tools/train.py',
            SEG_CONFIG,
            '--work-dir',
            work_dir / 'c',
            '--resume',
            path,
            '--cfg-options',
            *short,
        ],
        'test': ['tools/test.py', SEG_CONFIG, path, '--work-dir', work_dir / 'd'],
        'demo': ['tools/demo.py', image, SEG_CONFIG, path, '--out', work_dir / 'e.png'],
    }


@pytest.mark.slow  # builds the toy model through each tool
@pytest.mark.parametrize('entry', ['pretrained', 'load_from', 'resume', 'test', 'demo'])
def test_getattr_chain_refused_by_every_tool(entry, tmp_path, capsys):
    """Each tool's main in-process: it ends with one ``error:`` message (another exception,
    a traceback in a process, fails the test)."""
    marker = tmp_path / 'payload_ran'
    path = write_getattr_chain_file(tmp_path / 'evil.pth', marker)
    message = run_main(_entry_points(path, tmp_path)[entry])
    out = capsys.readouterr()
    assert not marker.exists(), f'{entry}: the payload ran'
    assert isinstance(message, str) and message.startswith('error: '), (message, out)
    assert 'refused getattr' in message and str(path) in message, message
    assert 'Traceback' not in out.out + out.err  # a diagnosis, not a crash


# ---- config text in a checkpoint or a work dir is read as data or not at all ----------------


def payload(marker) -> str:
    """Python that, if run, creates ``marker``."""
    return f"_pw = __import__('os').system('touch {marker}')\n"


def config_payload_checkpoint(source, path, marker):
    """A copy of checkpoint ``source`` whose config text would create ``marker`` if run:
    prepended to ``meta['cfg']`` (read by mmengine's Inferencers and the export) and as
    ``meta['config']`` (run by mmengine's ``Runner.resume``)."""
    import hst_mm  # noqa: F401  allow-lists mmengine's checkpoint types

    checkpoint = torch.load(source, map_location='cpu', weights_only=True)
    checkpoint['meta']['cfg'] = payload(marker) + checkpoint['meta']['cfg']
    checkpoint['meta']['config'] = payload(marker)
    torch.save(checkpoint, path)
    return path


@pytest.fixture
def config_payload(toy_det_run, tmp_path):
    marker = tmp_path / 'payload_ran'
    path = config_payload_checkpoint(toy_det_run / 'iter_4.pth', tmp_path / 'evil.pth', marker)
    return path, marker


@pytest.mark.slow
def test_export_runs_no_config_text_of_the_checkpoint(config_payload, tmp_path):
    from hst_mm.engine.trainable_export import main

    path, marker = config_payload
    out = tmp_path / 'out.pth'
    with pytest.raises(SystemExit) as e:
        main([str(path), str(out)])
    assert not marker.exists(), "the export ran the checkpoint's config text"
    assert str(path) in str(e.value) and not list(tmp_path.glob('out*.pth'))


@pytest.mark.slow
@pytest.mark.parametrize('entry', ['resume', 'load_from', 'test', 'demo', 'inferencer'])
def test_tools_run_no_config_text_of_the_checkpoint(entry, config_payload, tmp_path, monkeypatch):
    """Each tool that takes a weight file, in-process; the checkpoint otherwise fits."""
    from conftest import TOY_DET_CONFIG

    path, marker = config_payload
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv('LOCAL_RANK', '0')
    image = str(ensure_toy_data() / 'coco' / 'val' / '000002.png')
    # no validation, and resumed at its last iteration (4): what loading runs is checked
    no_val = ['train_cfg.max_iters=4', 'train_cfg.val_begin=1000']
    if entry in ('resume', 'load_from'):
        import tools.train as tool

        how = ['--resume', str(path)] if entry == 'resume' else []
        opts = [] if entry == 'resume' else [f'load_from={path}', 'train_cfg.max_iters=1']
        tool.main(
            [TOY_DET_CONFIG, '--work-dir', str(tmp_path / entry), *how]
            + ['--cfg-options', *no_val, *opts]
        )
    elif entry == 'test':
        import tools.test as tool

        one_image = ['--cfg-options', 'test_dataloader.dataset.indices=1']  # loading is checked
        tool.main([TOY_DET_CONFIG, str(path), '--work-dir', str(tmp_path / 'test'), *one_image])
    elif entry == 'demo':
        import tools.demo as tool

        tool.main([image, TOY_DET_CONFIG, str(path), '--out', str(tmp_path / 'demo.png')])
    else:
        from mmdet.apis import DetInferencer

        DetInferencer(model=TOY_DET_CONFIG, weights=str(path), device='cpu')(image)
    assert not marker.exists(), f"{entry}: the checkpoint's config text ran"


def test_paper_table_runs_no_config_of_a_work_dir(tmp_path):
    """The multi-scale test of a work dir is told from its config dump, read as data."""
    from hst_mm.analysis.paper_table import read_run

    marker = tmp_path / 'payload_ran'
    run_dir = tmp_path / 'wd' / '20261204_120000'
    (run_dir / 'vis_data').mkdir(parents=True)
    (run_dir / 'vis_data' / 'config.py').write_text(
        payload(marker) + "model = dict(type='SegTTAModel', module=dict(type='X'))\n"
    )
    (run_dir / '20261204_120000.json').write_text('{"mIoU": 40.0}\n')
    run = read_run(str(tmp_path / 'wd'))
    assert not marker.exists(), "the work dir's config ran"
    assert 'test_tta' in run.evaluations
    (run_dir / 'vis_data' / 'config.py').write_text(
        "model = dict(type='SegTTAModel', module=" + payload(marker).split(' = ')[1].strip() + ')\n'
    )
    run = read_run(str(tmp_path / 'wd'))
    assert not marker.exists(), "the work dir's config ran"
    assert 'test_tta' not in run.evaluations  # not plain data: not read
    assert any('config.py' in m for m in run.messages)


# ---- unclear errors: one line naming the file, the field and the remedy ---------------------


def test_a_refused_global_is_named_without_torchs_advice(tmp_path):
    from hst_mm.engine.checkpoint_safety import refused_checkpoint_message

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _SystemPayload(tmp_path / 'ran')}, path)
    with pytest.raises(pickle.UnpicklingError) as e:
        torch.load(path, weights_only=True)
    message = refused_checkpoint_message(str(path), e.value)
    assert str(path) in message and 'system' in message and '\n' not in message
    assert 'weights_only` set to `False' not in message  # the advice not to follow


@pytest.fixture
def resume_into(tmp_path, monkeypatch):
    """tools/train.py --resume, in-process; returns its one error line (no Runner built)."""
    from hst_mm.engine import cli

    import tools.train as train_py

    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setattr(cli, 'build_runner', lambda cfg: pytest.fail('Runner built'))

    def resume(work_dir, *args):
        with pytest.raises(SystemExit) as e:
            train_py.main([SEG_CONFIG, '--work-dir', str(work_dir), '--resume', *map(str, args)])
        message = str(e.value)
        assert message.startswith('error: ') and '\n' not in message, message
        return message

    return resume


def test_resume_onto_an_empty_or_truncated_checkpoint_names_it(tmp_path, resume_into):
    import hst_mm  # noqa: F401

    whole = tmp_path / 'whole.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}, 'meta': {'iter': 2}}, whole)
    truncated, empty = tmp_path / 'truncated.pth', tmp_path / 'empty.pth'
    truncated.write_bytes(whole.read_bytes()[:-300])
    empty.write_bytes(b'')
    for path in (truncated, empty):
        assert str(path) in resume_into(tmp_path / 'wd', path)


def test_resume_with_a_broken_last_checkpoint_names_the_pointer(tmp_path, resume_into):
    work_dir = tmp_path / 'wd'
    work_dir.mkdir()
    torch.save({'state_dict': {}, 'meta': {'iter': 2}}, work_dir / 'iter_2.pth')
    pointer = work_dir / 'last_checkpoint'
    for content in (b'\x80\x81\xfe\xff' * 8, b'', str(work_dir / 'iter_9.pth').encode()):
        pointer.write_bytes(content)
        assert str(pointer) in resume_into(work_dir)


def test_an_unreadable_checkpoint_is_named_by_the_tools(tmp_path):
    """load_from, tools/test.py, tools/demo.py: torch's own error names no file."""
    from hst_mm.engine.errors import user_error_message

    path = tmp_path / 'truncated.pth'
    torch.save({'w': torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:-300])
    (tmp_path / 'empty.pth').write_bytes(b'')
    for broken in (path, tmp_path / 'empty.pth'):
        with pytest.raises(Exception) as e:
            torch.load(broken, weights_only=True)
        message = user_error_message(e.value, str(broken))
        assert message is not None and str(broken) in message and '\n' not in message


def test_a_mistyped_relative_pretrained_path_is_a_missing_file(monkeypatch):
    from hst_mm.models import pretrained

    monkeypatch.setattr(
        pretrained, 'load_trunk_tag', lambda *a, **k: pytest.fail('sent to the model hub')
    )
    with pytest.raises(FileNotFoundError, match='checkpoints/vit_base_16'):
        pretrained.load_trunk_weights(None, 'vit_base_patch16_224', 'checkpoints/vit_base_16')


def test_a_trunk_that_is_not_a_vit_is_named():
    from hst_mm.models.trunk import create_trunk

    with pytest.raises(TypeError, match='resnet50'):
        create_trunk('resnet50')


def test_custom_imports_given_on_the_command_line_are_imported(tmp_path, monkeypatch):
    from hst_mm.engine import cli

    import tools.train as train_py

    (tmp_path / 'my_extension_module.py').write_text('LOADED = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'my_extension_module', raising=False)
    args = train_py.parse_args(
        [SEG_CONFIG, '--cfg-options', 'custom_imports.imports=[my_extension_module]']
    )
    cli.load_config(args)
    assert 'my_extension_module' in sys.modules
    args = train_py.parse_args(
        [SEG_CONFIG, '--cfg-options', 'custom_imports.imports=[no_such_module_here]']
    )
    with pytest.raises(SystemExit, match='no_such_module_here'):
        cli.load_config(args)


def test_a_small_file_cannot_ask_for_a_huge_array(tmp_path):
    """numpy.ndarray and numpy's _reconstruct are allow-listed for mmengine's log buffers;
    called with a size they would allocate 16 GiB for a file of 1.4 KB."""
    import numpy as np

    import hst_mm  # noqa: F401

    reconstruct = (np._core if hasattr(np, '_core') else np.core).multiarray._reconstruct
    huge = (2**34,)
    for call in (
        _Call(np.ndarray, (huge, np.dtype('uint8'))),
        _Call(reconstruct, (np.ndarray, huge, b'b')),
        _Call(bytearray, (2**34,)),  # in torch's own allow-list
    ):
        path = tmp_path / 'huge.pth'
        torch.save({'meta': call}, path)
        assert path.stat().st_size < 4096
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, weights_only=True)
    # a bytearray of the file's own data still loads
    torch.save({'meta': bytearray(b'data')}, path)
    assert torch.load(path, weights_only=True) == {'meta': bytearray(b'data')}


if __name__ == '__main__':
    sys.exit(pytest.main([__file__, '-q']))
