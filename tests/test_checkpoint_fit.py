"""A checkpoint of another model is refused by name (hst_mm.engine.hooks.checkpoint_fit):
through the function and every tool that loads weights."""

import pytest
import torch
import torch.nn as nn

from hst_mm.engine.hooks.checkpoint_fit import CheckpointMismatchError, check_checkpoint_fits

from tool_runner import ensure_toy_data, run_main

SEG_CONFIG = 'configs/toy/upernet_hst-vit-ti_toy.py'


class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.body = nn.Linear(3, width)
        self.head = nn.Linear(width, 2)


def test_fitting_checkpoints_pass():
    net = Net()
    check_checkpoint_fits(net, {'state_dict': Net().state_dict()}, 'a.pth')
    check_checkpoint_fits(net, Net().state_dict(), 'a.pth')  # a bare state dict
    wrapped = {'module.' + k: v for k, v in Net().state_dict().items()}  # saved from DDP
    check_checkpoint_fits(net, {'state_dict': wrapped}, 'a.pth')


def test_a_checkpoint_that_is_not_a_dict_is_named():
    for obj in (torch.zeros(3), {'state_dict': [1, 2]}):
        with pytest.raises(CheckpointMismatchError, match='a.pth'):
            check_checkpoint_fits(Net(), obj, 'a.pth')


def test_test_time_augmentation_wrapper_is_looked_through():
    """tools/test.py --tta loads a plain checkpoint into mmengine's TTA wrapper."""
    from mmengine.model import BaseTTAModel

    class TTA(BaseTTAModel):
        def merge_preds(self, data_samples_list):
            return data_samples_list

    class TestableNet(Net):
        def test_step(self, data):
            return data

    tta = TTA(module=TestableNet())
    assert all(k.startswith('module.') for k in tta.state_dict())
    check_checkpoint_fits(tta, {'state_dict': Net().state_dict()}, 'a.pth')
    with pytest.raises(CheckpointMismatchError, match='head.weight'):
        check_checkpoint_fits(tta, {'state_dict': Net(width=8).state_dict()}, 'a.pth')


def test_mismatches_are_named():
    other = {'conv.weight': torch.zeros(1), **Net(width=8).state_dict()}
    del other['head.bias']
    with pytest.raises(CheckpointMismatchError) as e:
        check_checkpoint_fits(Net(), {'state_dict': other}, 'other.pth')
    msg = str(e.value)
    assert msg.startswith('other.pth: does not fit the Net')
    assert 'missing keys: head.bias' in msg and 'unexpected keys: conv.weight' in msg
    assert 'body.weight (8, 3) vs model (4, 3)' in msg


def test_allowed_keys_by_name():
    other = Net().state_dict()
    other['head.weight'] = torch.zeros(5, 4)  # another number of classes
    other['head.bias'] = torch.zeros(5)
    with pytest.raises(CheckpointMismatchError, match='head.weight'):
        check_checkpoint_fits(Net(), other, 'x.pth')
    check_checkpoint_fits(Net(), other, 'x.pth', allowed=['head.*'])
    with pytest.raises(CheckpointMismatchError, match='body.weight'):  # only those
        check_checkpoint_fits(
            Net(), {**other, 'body.weight': torch.zeros(1)}, 'x.pth', allowed=['head.*']
        )


@pytest.fixture
def foreign_checkpoint(tmp_path):
    """What a user might pass by mistake: a classifier's weights."""
    path = tmp_path / 'resnet_like.pth'
    torch.save(
        {'state_dict': {'conv1.weight': torch.zeros(8, 3, 7, 7), 'fc.weight': torch.zeros(10, 8)}},
        path,
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize('entry', ['test', 'load_from', 'demo'])
def test_tools_refuse_another_models_checkpoint(entry, foreign_checkpoint, tmp_path, capsys):
    """Each tool's main in-process: one ``error:`` message, no traceback."""
    data = ensure_toy_data()
    image = sorted((data / 'ade' / 'images' / 'validation').glob('*.png'))[0]
    cmd = {
        'test': ['tools/test.py', SEG_CONFIG, foreign_checkpoint, '--work-dir', tmp_path / 't'],
        'load_from': [
            'tools/train.py',
            SEG_CONFIG,
            '--work-dir',
            tmp_path / 'l',
            '--cfg-options',
            f'load_from={foreign_checkpoint}',
            'train_cfg.max_iters=1',
        ],
        'demo': [
            'tools/demo.py',
            image,
            SEG_CONFIG,
            foreign_checkpoint,
            '--out',
            tmp_path / 'd.png',
        ],
    }[entry]
    message = run_main(cmd)
    out = capsys.readouterr()
    assert isinstance(message, str), (message, out)
    assert message.startswith(f'error: {foreign_checkpoint}: does not fit'), message
    assert 'unexpected keys: conv1.weight' in message and 'missing keys: ' in message
    assert 'Traceback' not in out.out + out.err
    assert not (tmp_path / 'l' / 'iter_1.pth').exists()  # nothing was trained
