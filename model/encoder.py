"""A BERT-style encoder: the decoder's blocks with bidirectional attention.

Nothing here is written twice: `Encoder` is `model.gpt.GPT` built with `causal=False`, so
every token attends to every other (through the same `scaled_dot_product_attention`
call), plus two things an encoder needs and a decoder does not:

- positions: learned (GPT-2's table, the default) or rotary (`positions="rope"`), which
  rotates queries and keys by their position instead of adding a position vector; it
  carries no parameters and is what most recent encoders use;
- a key-padding mask, so a batch of texts of different lengths can be padded on the right
  without the padding leaking into the real tokens (decoders need none: with right
  padding, causal attention never looks at the pad tail).

The masked-LM head is the decoder's tied `lm_head` (hidden state -> vocabulary). Given
targets, `forward` computes logits only at the positions that have a target (-100
elsewhere), which for masked LM is 15% of them: the output matmul is the largest one in
a small model, so this is most of the saving BERT's own implementation makes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.gpt import GPT, GPTConfig, SelfAttention

POSITIONS = ("learned", "rope")


@dataclass
class EncoderConfig(GPTConfig):
    causal: bool = False
    positions: str = "learned"  # learned | rope
    rope_base: float = 10000.0

    def __post_init__(self):
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.causal:
            raise ValueError("an EncoderConfig is bidirectional (causal=False); use GPTConfig for a decoder")


def rope_tables(block_size: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (block_size, head_dim // 2): position t rotates pair i by t * base^(-2i/d)."""
    if head_dim % 2:
        raise ValueError(f"rotary positions need an even head dimension, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, heads, T, head_dim) by position; halves layout (as in GPT-NeoX / Llama)."""
    T = x.size(-2)
    cos, sin = cos[:T].to(x.dtype), sin[:T].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class RotarySelfAttention(SelfAttention):
    """The decoder's attention with queries and keys rotated by position before the dot product."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        cos, sin = rope_tables(cfg.block_size, cfg.n_embd // cfg.n_head, cfg.rope_base)
        # Not saved in checkpoints: they are a function of the config.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, x, attn_mask=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rope(q, self.rope_cos, self.rope_sin), apply_rope(k, self.rope_cos, self.rope_sin)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and attn_mask is None,
        )
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class Encoder(GPT):
    """Bidirectional transformer over token ids, with the decoder's blocks and tied output head."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        if cfg.positions == "rope":
            # Same initial weights as the learned-position encoder, without the position table.
            del self.transformer["wpe"]
            for block in self.transformer.h:
                rotary = RotarySelfAttention(cfg)
                rotary.load_state_dict(block.attn.state_dict())
                block.attn = rotary

    def forward(self, idx, targets=None, ignore_index: int = -100, attn_mask=None):
        """Without targets: logits (B, T, vocab). With targets (B, T; ignore_index where there is
        nothing to predict): logits (N, vocab) of the N target positions only, and their mean loss."""
        h = self.hidden_states(idx, attn_mask)
        if targets is None:
            return self.lm_head(h), None
        selected = targets != ignore_index
        logits = self.lm_head(h[selected])
        loss = F.cross_entropy(logits.float(), targets[selected])
        return logits, loss

    def generate(self, *args, **kwargs):
        raise NotImplementedError("an encoder does not generate text; train a decoder (--objective clm) for samples")


def is_encoder_config(d: dict) -> bool:
    """Whether a checkpoint's model_config describes a bidirectional encoder."""
    return d.get("causal") is False


def backbone_from_config(d: dict) -> GPT:
    """Build the decoder or encoder a checkpoint's model_config describes (random weights)."""
    if is_encoder_config(d):
        return Encoder(EncoderConfig.from_dict(d))
    return GPT(GPTConfig.from_dict(d))
