"""The one atomic write of the project (hst_mm.atomic_write): all or nothing, no leftovers."""

import os

import pytest
import torch

from hst_mm.atomic_write import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text


class Killed(BaseException):
    """What a kill signal turned into an exception looks like to the writer."""


def test_success_replaces_the_file_completely(tmp_path):
    target = tmp_path / 'out.txt'
    target.write_text('old content, longer than the new one')
    atomic_write_text(target, 'new')
    assert target.read_text() == 'new'
    atomic_write_bytes(target, b'\x00\x01')
    assert target.read_bytes() == b'\x00\x01'
    assert os.listdir(tmp_path) == ['out.txt']


def test_path_writer_such_as_torch_save(tmp_path):
    target = tmp_path / 'state.pth'
    with atomic_path(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)  # same folder: the rename is atomic
        assert os.path.exists(tmp) and not target.exists()  # name reserved, target untouched
        torch.save({'w': torch.arange(3)}, tmp)
    assert torch.equal(torch.load(target, weights_only=True)['w'], torch.arange(3))
    assert os.listdir(tmp_path) == ['state.pth']


@pytest.mark.parametrize('error', [OSError(28, 'No space left on device'), Killed()])
def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / 'out.json'
    target.write_text('{"old": 1}')
    with pytest.raises(type(error)):
        with atomic_open(target, 'w') as f:
            f.write('{"new": ')  # half written, then the disk is full / the process killed
            f.flush()
            raise error
    assert target.read_text() == '{"old": 1}'
    assert os.listdir(tmp_path) == ['out.json']


def test_failure_before_any_file_exists_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / 'new.pth') as tmp:
            os.remove(tmp)  # a writer that removed its own file on the way out
            raise RuntimeError('writer failed')
    assert os.listdir(tmp_path) == []


def test_temporary_names_are_unique(tmp_path):
    with atomic_path(tmp_path / 'a') as first, atomic_path(tmp_path / 'a') as second:
        assert first != second
    assert os.listdir(tmp_path) == ['a']
