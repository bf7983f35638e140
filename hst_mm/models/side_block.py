"""Side Block: cross-attention to the trunk's meta/global tokens, fine-grained add, MLP."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch.utils.checkpoint import checkpoint


class CrossAttention(nn.Module):
    """Multi-head attention with queries from ``x`` and keys/values from ``kv``.

    Separate q, k, v projections (the side tokens and the bridged trunk tokens live in the
    same width C but come from different places) and an output projection, as in the
    authors' code and state dict.

    ``fold=True`` (default) computes the same function folded around the M = 2 key/value
    tokens: per head h, ``q_h . k_hm = x . (W_q,h^T k_hm) + b_q,h . k_hm`` and
    ``W_o (sum_m p_hm v_hm) = sum_m p_hm (W_o,h v_hm)``, so queries and output projection
    become two (B, N, C) x (B, C, H*M) products with per-image folded weights, and neither
    the (B, N, C) queries nor the pre-projection output is ever formed (or saved for
    backward). ``fold=False`` is the reference computation (q, k, v, fused attention,
    proj), kept for tests. The parameters are the same either way: the fold is done per
    forward pass, from the current weights.
    """

    def __init__(self, dim: int, num_heads: int, fold: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'side width {dim} is not divisible by its num_heads {num_heads}')
        self.num_heads = num_heads
        self.fold = fold
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """(B, N, C), (B, M, C) -> (B, N, C)."""
        if not self.fold:
            return self.forward_reference(x, kv)
        query_w, query_b, out_w = self.folded_weights(kv)
        return self.attend(torch.baddbmm(query_b, x, query_w), out_w)

    def forward_reference(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """The unfolded computation: (B, N, C), (B, M, C) -> (B, N, C)."""
        B, N, C = x.shape
        heads = lambda t: t.reshape(B, t.shape[1], self.num_heads, -1).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(kv)), heads(self.v(kv)))
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

    def folded_weights(self, kv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image weights of the folded attention, from kv (B, M, C).

        Returns:
            query_w: (B, C, H*M), scaled ``W_q,h^T k_hm``: ``x @ query_w`` are the scores.
            query_b: (B, 1, H*M), scaled ``b_q,h . k_hm``.
            out_w: (B, H*M, C), ``W_o,h v_hm``: the output is ``p @ out_w + b_o``.
        """
        B, M, C = kv.shape
        H = self.num_heads
        d = C // H
        k = self.k(kv).reshape(B, M, H, d) * d**-0.5  # SDPA's default scale
        v = self.v(kv).reshape(B, M, H, d)
        query_w = torch.einsum('bmhd,hdc->bchm', k, self.q.weight.reshape(H, d, C))
        query_b = torch.einsum('bmhd,hd->bhm', k, self.q.bias.reshape(H, d))
        out_w = torch.einsum('bmhd,chd->bhmc', v, self.proj.weight.reshape(C, H, d))
        return (
            query_w.reshape(B, C, H * M),
            query_b.reshape(B, 1, H * M),
            out_w.reshape(B, H * M, C),
        )

    def attend(self, scores: torch.Tensor, out_w: torch.Tensor) -> torch.Tensor:
        """Softmax over each head's M keys, then the folded values and output projection:
        scores (B, N, H*M), out_w (B, H*M, C) -> (B, N, C)."""
        p = scores.unflatten(-1, (self.num_heads, -1)).softmax(-1).flatten(-2)
        return torch.baddbmm(self.proj.bias, p, out_w)


class SideBlock(nn.Module):
    """One Side Block, fed by one trunk block::

        x = x + DropPath(CrossAttn(LN1(x), kv))   # meta-global injection
        x = x + fg                                # fine-grained injection
        x = x + DropPath(MLP(LN2(x)))

    Shapes: ``x`` and ``fg`` (B, N, C) side tokens and their fine-grained injection, ``kv``
    (B, 2, C) the bridged meta and global tokens.

    ``recompute=True`` trades compute for memory inside the block, exactly: LN1 and the
    folded attention scores (elementwise work and a (N, C) x (C, H*M) product), and LN2,
    ``fc1`` and GELU of the MLP are recomputed in backward instead of stored. What stays
    stored is the block's input and the MLP's input, 2 of the ~15 (B, N, C)-sized tensors the
    plain block keeps (the MLP hidden layer alone is 8 of them). Recomputation stops after
    GELU (torch's non-reentrant checkpoint stops once every tensor backward needs exists),
    so ``fc2`` is never rerun.

    ``compile_options``: ``torch.compile`` keyword arguments (a dict) for the block's forward
    when it records gradients (:func:`compiled_block_step`); None: eager. Inference keeps
    the eager, chunked path.
    """

    # Bytes of MLP hidden layer per chunk of the chunked CPU inference (:meth:`forward_chunked`),
    # few enough to stay in the cache; 0: whole maps.
    inference_chunk_bytes: int = 2**21
    compile_options: Optional[dict] = None

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        fold: bool = True,
        recompute: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, num_heads, fold=fold)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.recompute = recompute

    def forward(self, x: torch.Tensor, kv: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C) side tokens; kv: (B, 2, C); fg: (B, N, C) -> (B, N, C)."""
        if (
            self.inference_chunk_bytes
            and x.device.type == 'cpu'
            and not self.training
            and not torch.is_grad_enabled()
        ):
            hidden_bytes = x.shape[0] * self.mlp.fc1.out_features * x.element_size()
            chunk = max(1, self.inference_chunk_bytes // hidden_bytes)  # tokens
            if x.shape[1] > chunk:
                return self.forward_chunked(x, kv, fg, chunk)
        if self.compile_options is not None and torch.is_grad_enabled():
            # The token count changes with the input size (multi-scale training): traced as
            # a symbol from the first call, so a new size does not recompile.
            torch._dynamo.maybe_mark_dynamic(x, 1)
            torch._dynamo.maybe_mark_dynamic(fg, 1)
            return compiled_block_step(self.compile_options)(self, x, kv, fg)
        return self.forward_whole(x, kv, fg)

    def forward_whole(self, x: torch.Tensor, kv: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on whole maps (training, and what is compiled): (B, N, C) x3 ->
        (B, N, C)."""
        recompute = self.recompute and torch.is_grad_enabled()
        if recompute and self.attn.fold:
            query_w, query_b, out_w = self.attn.folded_weights(kv)
            scores = checkpoint(self._scores, x, query_w, query_b, use_reentrant=False)
            x = x + self.drop_path(self.attn.attend(scores, out_w))
        else:
            x = x + self.drop_path(self.attn(self.norm1(x), kv))
        x = x + fg
        if recompute:
            return x + self.drop_path(checkpoint(self._mlp, x, use_reentrant=False))
        return x + self.drop_path(self._mlp(x))

    def forward_chunked(
        self, x: torch.Tensor, kv: torch.Tensor, fg: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        """:meth:`forward` in eval mode, ``chunk`` tokens at a time: (B, N, C) -> (B, N, C).

        Every step of the block acts on each token alone once the cross-attention's keys and
        values (per image, from ``kv``) are fixed, so slices of ``x`` and ``fg`` along the
        tokens give the same tokens as the whole maps. On the CPU this keeps each chunk's
        (B, chunk, 4C) MLP hidden layer and the norms' outputs in the cache instead of
        streaming (B, N, 4C) tensors through memory at strides 4 and 8. Inference only:
        the forward of training (drop path, autograd) is the plain one.
        """
        out = torch.empty_like(x)
        folded = self.attn.folded_weights(kv) if self.attn.fold else None
        for i in range(0, x.shape[1], chunk):
            xs = x[:, i : i + chunk]
            if folded is not None:
                query_w, query_b, out_w = folded
                h = xs + self.attn.attend(torch.baddbmm(query_b, self.norm1(xs), query_w), out_w)
            else:
                h = xs + self.attn(self.norm1(xs), kv)
            h = h + fg[:, i : i + chunk]
            out[:, i : i + chunk] = h + self._mlp(h)
        return out

    def _scores(
        self, x: torch.Tensor, query_w: torch.Tensor, query_b: torch.Tensor
    ) -> torch.Tensor:
        """Folded attention scores of LN1(x): (B, N, C) -> (B, N, H*M)."""
        return torch.baddbmm(query_b, self.norm1(x), query_w)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """MLP(LN2(x)): (B, N, C) -> (B, N, C)."""
        return self.mlp(self.norm2(x))


def _block_step(block: SideBlock, x: torch.Tensor, kv: torch.Tensor, fg: torch.Tensor):
    return block.forward_whole(x, kv, fg)


# compiled_block_step's functions, by their options' repr.
_COMPILED: Dict[str, Callable] = {}


def compiled_block_step(options: dict) -> Callable:
    """``SideBlock.forward_whole`` compiled with ``torch.compile(**options)``, one per set of
    options and process.

    The compiled function is kept here, not on the blocks, so that a model with compiled
    blocks has the state dict, deepcopy and pickling of an eager one. Dynamo keeps one
    graph per Side Block width (the parameters' shapes are static) and grad mode, shared by
    the blocks of a stage; the token count is a symbol (``SideBlock.forward``).
    """
    key = repr(sorted(options.items()))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_block_step, **options)
    return _COMPILED[key]
