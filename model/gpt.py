"""A GPT decoder in plain torch, readable top to bottom.

The block is the classic GPT-2 one (pre-LayerNorm, learned positions, GELU MLP, tied
input/output embeddings), without biases by default. Why this block and not RoPE +
RMSNorm + SwiGLU: it maps one-to-one onto `transformers.GPT2LMHeadModel` (so an export
is a transpose, not a re-implementation), the gpt2-124m preset is the model whose
loss and MFU everyone knows, and the CPU benchmark compares like with like against
nanoGPT. At the small scales this project trains, the modern block buys a few percent
of loss; knowing the numbers are right buys more.

Parameter names follow GPT-2's (`transformer.wte`, `transformer.h.N.attn.c_attn`, ...),
so checkpoints of other GPT-2-style code load by name.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 8192  # rows of the embedding; may exceed the tokenizer's (padded to a multiple of 64)
    block_size: int = 256  # context length T
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm (GPT-2 had them; not needed)
    causal: bool = True  # False gives a bidirectional encoder (masked-LM) with the same blocks

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (N, V) logits whose backward reuses the forward's buffer.

    Same value and gradient as F.cross_entropy; on CPU, where every fresh N x V buffer costs
    page faults and a memory pass, it is faster: the backward turns the saved log-softmax
    into softmax in place and subtracts the one-hot, instead of allocating a zero-filled
    gradient for nll_loss and a second one for log_softmax's backward.
    """

    @staticmethod
    def forward(ctx, logits, targets, ignore_index: int):
        logp = torch.log_softmax(logits, dim=-1)
        valid = targets != ignore_index
        safe = torch.where(valid, targets, 0)
        nll = -logp.gather(1, safe[:, None]).squeeze(1)
        n = valid.sum().clamp_min(1)
        ctx.save_for_backward(logp, safe, valid, n)
        return (nll * valid).sum() / n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        logp, safe, valid, n = ctx.saved_tensors
        grad = logp.exp_()  # softmax, written over log-softmax
        grad.scatter_add_(1, safe[:, None], torch.full_like(grad[:, :1], -1.0))
        grad.mul_((grad_out / n) * valid[:, None].to(grad.dtype))
        return grad, None, None


def cross_entropy(logits, targets, ignore_index: int = -100):
    """F.cross_entropy semantics (mean over non-ignored targets), the fused kernel when training eagerly."""
    logits, targets = logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1)
    if torch.is_grad_enabled() and logits.requires_grad and not torch.compiler.is_compiling():
        return SoftmaxCrossEntropy.apply(logits, targets, ignore_index)
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's own cannot drop only the bias)."""

    def __init__(self, n: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class SelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = cfg.n_head
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, attn_mask=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        # Flash / memory-efficient kernels on GPU, the fused CPU kernel otherwise.
        y = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and attn_mask is None,
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.bias)
        self.attn = SelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, attn_mask=None):
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=LayerNorm(cfg.n_embd, cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so the residual stream
        # does not grow with depth at init.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the position table is left out by default (it does no matmul)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def hidden_states(self, idx, attn_mask=None):
        """Final-LayerNorm output (B, T, n_embd): what a task head (classifier, MLM) reads.
        Without a position table (`wpe`, removed by a rotary encoder) positions come from
        the attention itself."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds the context length {self.config.block_size}")
        x = self.transformer.wte(idx)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(torch.arange(T, device=idx.device))
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, attn_mask)
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, ignore_index: int = -100):
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy over non-ignored targets."""
        logits = self.lm_head(self.hidden_states(idx))
        loss = None
        if targets is not None:
            loss = cross_entropy(logits, targets, ignore_index)
        return logits, loss

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward + backward): 6N plus attention (PaLM appendix B)."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * c.block_size

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 stop_token: int | None = None, generator: torch.Generator | None = None):
        """Sample continuations of idx (B, T); stops early when every row emitted stop_token."""
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size:]
            logits, _ = self(context)
            logits = logits[:, -1, :].float() / max(temperature, 1e-6)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
            if stop_token is not None:
                done |= nxt.squeeze(1) == stop_token
                if bool(done.all()):
                    break
        return idx
