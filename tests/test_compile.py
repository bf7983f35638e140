"""``HST(compile=...)``: the Side Blocks' training forward under ``torch.compile``. The same
values as eager, one graph per side width however many input sizes, and the state dict,
deepcopy and pickling of the eager model.

Most tests compile with a backend that counts dynamo's graphs and runs them as traced (cheap,
exact); one runs inductor (slow)."""

import copy
import pickle

import pytest
import torch

from hst_mm.models import HST

SIZES = [(64, 64), (96, 64), (80, 112)]


class CountingBackend:
    """A ``torch.compile`` backend that records each graph dynamo hands it and runs it as
    traced."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test starts with dynamo's caches empty (they are per process)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _step(model, x):
    model.zero_grad(set_to_none=True)
    outs = model(x)
    sum((o * o).sum() for o in outs).backward()
    return [o.detach() for o in outs], {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    'options',
    [
        dict(recompute=('side', 'trunk_mlp')),
        dict(with_cp=True, fold_attention=False, grad_start=2, trunk_dtype='bfloat16'),
    ],
    ids=['recompute', 'with_cp_reference_attention_grad_start_bfloat16'],
)
def test_three_input_sizes_compile_one_graph_per_side_width(tiny_cfg, options):
    backend = CountingBackend()
    torch.manual_seed(0)
    eager = HST(**tiny_cfg, **options).train()
    ours = HST(**tiny_cfg, **options, compile=dict(backend=backend)).train()
    ours.load_state_dict(eager.state_dict())
    graphs = []
    for size in SIZES:
        x = torch.randn(1, 3, *size)
        (outs_a, grads_a), (outs_b, grads_b) = _step(eager, x), _step(ours, x)
        for a, b in zip(outs_a, outs_b):
            assert torch.equal(a, b)
        for name, g in grads_a.items():
            assert (g is None and grads_b[name] is None) or torch.equal(g, grads_b[name]), name
        graphs.append(backend.graphs)
    widths = len(set(tiny_cfg['embed_dims']))
    assert graphs == [widths] * len(SIZES)  # the first size compiles, the others reuse


def test_inference_stays_eager(tiny_cfg):
    backend = CountingBackend()
    model = HST(**tiny_cfg, compile=dict(backend=backend)).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert backend.graphs == 0


def test_state_dict_deepcopy_and_pickle_are_the_eager_models(tiny_cfg):
    torch.manual_seed(0)
    eager = HST(**tiny_cfg)
    torch.manual_seed(0)
    ours = HST(**tiny_cfg, compile=dict(backend='eager'))
    x = torch.randn(1, 3, 32, 32)
    _step(ours.train(), x)  # compiled once before it is copied
    state = ours.state_dict()
    assert list(state) == list(eager.state_dict())
    assert not any('_orig_mod' in k for k in state)
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert all(b.compile_options == dict(backend='eager') for b in clone.side.blocks)
        for a, b in zip(_step(eager.train(), x)[0], _step(clone.train(), x)[0]):
            torch.testing.assert_close(b, a, rtol=0, atol=0)


@pytest.mark.parametrize('bad', ['yes', dict(backend='eager', fullgraph_please=True)])
def test_bad_compile_arguments_are_named(tiny_cfg, bad):
    with pytest.raises(ValueError, match='compile='):
        HST(**tiny_cfg, compile=bad)


@pytest.mark.slow
def test_inductor_matches_eager_to_float32_tolerance(tiny_cfg):
    """compile=True (inductor, generated C++ on the CPU): outputs and gradients within float32
    tolerance of eager. One side width, so one graph (forward and backward) to compile:
    77 s with an empty inductor cache on a loaded 2-core CPU (29 s of CPU time)."""
    cfg = dict(tiny_cfg, embed_dims=(16,) * 4, num_heads=(2,) * 4)
    torch.manual_seed(0)
    eager = HST(**cfg).train()
    ours = HST(**cfg, compile=True).train()
    ours.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 64, 48)
    (outs_a, grads_a), (outs_b, grads_b) = _step(eager, x), _step(ours, x)
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # gradients that are zero in exact arithmetic (the key bias of a softmax) are round-off
    # in both: compared at the gradients' overall scale
    scale = max(float(g.abs().max()) for g in grads_a.values() if g is not None)
    for name, g in grads_a.items():
        if g is not None:
            torch.testing.assert_close(grads_b[name], g, rtol=1e-4, atol=1e-6 * scale, msg=name)
