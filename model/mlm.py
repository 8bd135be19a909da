"""Masked-LM objective: BERT's masking over the same token shards the decoder trains on.

Of the tokens that are not special (end-of-text, padding, the mask token itself, any
other added special token), 15% are selected; a selected token is replaced by the mask
token 80% of the time, by a random ordinary token 10% of the time and left as it is 10%
of the time, and the loss is the cross-entropy of the original token at the selected
positions only (targets are -100 elsewhere). Special tokens are never selected: predicting
the document boundary or the padding teaches nothing, and a pad position would make the
model learn the packer's layout.

Masking is a pure function of (seed, batch number), not of torch's global RNG, so a
resumed run masks the same tokens as an uninterrupted one and the validation figures
use the same masks every time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.data import Corpus, DataError, ValSequences

MASK_TOKEN = "<|mask|>"
PAD_TOKEN = "<|pad|>"
IGNORE = -100


@dataclass(frozen=True)
class MaskingPolicy:
    select: float = 0.15  # fraction of ordinary tokens that get a loss
    to_mask: float = 0.8  # of the selected: replaced by the mask token
    to_random: float = 0.1  # of the selected: replaced by a random ordinary token (the rest stay)

    def __post_init__(self):
        if not 0 < self.select < 1:
            raise ValueError(f"mask selection rate must be in (0, 1), got {self.select}")
        if self.to_mask < 0 or self.to_random < 0 or self.to_mask + self.to_random > 1:
            raise ValueError(f"mask/random fractions {self.to_mask}/{self.to_random} must be >= 0 and sum to <= 1")


@dataclass(frozen=True)
class MaskVocabulary:
    """What masking needs to know about the tokenizer."""

    mask_id: int
    special_ids: np.ndarray  # never selected, never drawn as random replacements
    ordinary_ids: np.ndarray  # random replacements come from here


def mask_vocabulary(corpus: Corpus) -> MaskVocabulary:
    """Find the mask token and the special tokens; a clear DataError if masked LM cannot work."""
    tok = corpus.tokenizer()
    tok_path = corpus.tokenizer_path
    from_tokenizer = tok.token_to_id(MASK_TOKEN)
    mask_id = corpus.mask_id if corpus.mask_id is not None else from_tokenizer
    if mask_id is None:
        raise DataError(
            f"--objective mlm needs a mask token, but {tok_path} has no {MASK_TOKEN} and "
            f"{corpus.root / 'tokens' / 'index.json'} has no mask_id; rebuild the corpus with a tokenize stage "
            f"that adds {MASK_TOKEN} (and {PAD_TOKEN}) to the special tokens"
        )
    if from_tokenizer is not None and from_tokenizer != mask_id:
        raise DataError(f"tokenizer mismatch: {tok_path} maps {MASK_TOKEN} to {from_tokenizer}, "
                        f"tokens/index.json says mask_id={mask_id}")
    if not 0 <= mask_id < corpus.vocab_size:
        raise DataError(f"mask_id={mask_id} is outside the vocabulary of {corpus.vocab_size} tokens")
    special = {corpus.eot_id, mask_id}
    if corpus.pad_id is not None:
        special.add(corpus.pad_id)
    special |= {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    special_ids = np.array(sorted(special), dtype=np.int64)
    ordinary_ids = np.setdiff1d(np.arange(corpus.vocab_size, dtype=np.int64), special_ids)
    return MaskVocabulary(mask_id=int(mask_id), special_ids=special_ids, ordinary_ids=ordinary_ids)


def mask_tokens(ids: np.ndarray, vocab: MaskVocabulary, rng: np.random.Generator,
                policy: MaskingPolicy = MaskingPolicy()) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for a (B, T) int array: corrupted inputs, original ids where selected, -100 elsewhere."""
    ids = np.asarray(ids, dtype=np.int64)
    eligible = ~np.isin(ids, vocab.special_ids)
    selected = (rng.random(ids.shape) < policy.select) & eligible
    if not selected.any() and eligible.any():
        # A loss over zero positions is NaN; one position keeps every batch trainable.
        flat = np.flatnonzero(eligible)
        selected.flat[flat[rng.integers(flat.size)]] = True
    action = rng.random(ids.shape)
    to_mask = selected & (action < policy.to_mask)
    to_random = selected & (action >= policy.to_mask) & (action < policy.to_mask + policy.to_random)
    inputs = ids.copy()
    inputs[to_mask] = vocab.mask_id
    inputs[to_random] = vocab.ordinary_ids[rng.integers(vocab.ordinary_ids.size, size=int(to_random.sum()))]
    targets = np.where(selected, ids, IGNORE)
    return inputs, targets


class MaskedBatches:
    """Wraps a (x, y) next-token batch source into masked-LM batches (inputs, targets).

    Uses the first T tokens of each sequence; the batch count is part of the saved state,
    so masks after a resume are the ones the uninterrupted run would have drawn.
    """

    def __init__(self, sequences, vocab: MaskVocabulary, seed: int, policy: MaskingPolicy = MaskingPolicy()):
        self.sequences, self.vocab, self.seed, self.policy = sequences, vocab, seed, policy
        self.batches_drawn = 0

    @property
    def epoch(self) -> int:
        return self.sequences.epoch

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.sequences.next_batch()
        rng = np.random.default_rng([self.seed, 0x6D6C6D, self.batches_drawn])  # "mlm"
        self.batches_drawn += 1
        inputs, targets = mask_tokens(x.numpy(), self.vocab, rng, self.policy)
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def state_dict(self) -> dict:
        return {**self.sequences.state_dict(), "mlm_batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict):
        state = dict(state)
        self.batches_drawn = int(state.pop("mlm_batches_drawn"))
        self.sequences.load_state_dict(state)


@torch.no_grad()
def evaluate_mlm(model, corpus: Corpus, seq_len: int, batch_size: int = 16, max_tokens: int | None = None,
                 seed: int = 0, device: str | torch.device = "cpu", autocast=None) -> dict:
    """Masked-token loss and accuracy on tokens/val/, with masks fixed by `seed`.

    Accuracy is over the selected positions (all three kinds: masked, randomised, kept),
    the number BERT-style papers report as masked-LM accuracy.
    """
    import contextlib
    import math

    if not corpus.val:
        raise DataError(f"no validation shards in {corpus.root / 'tokens' / 'val'}")
    vocab = mask_vocabulary(corpus)
    val = ValSequences(corpus.val, seq_len, model.config.vocab_size, max_tokens)
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for b, (x, _) in enumerate(val.batches(batch_size)):
        rng = np.random.default_rng([seed, 0x76616C, b])  # "val"
        # ValSequences zero-fills the tail of its last row; mark it as padding-like (special).
        inputs, targets = mask_tokens(x.numpy(), vocab, rng)
        tail = _tail_fill(val, b, batch_size, x.shape)
        targets[tail] = IGNORE
        inputs, targets = torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
        if not bool((targets != IGNORE).any()):
            continue
        with autocast() if autocast else contextlib.nullcontext():
            logits, _ = model(inputs, targets)
        gold = targets[targets != IGNORE]
        loss_sum += float(torch.nn.functional.cross_entropy(logits.float(), gold, reduction="sum"))
        correct += int((logits.argmax(-1) == gold).sum())
        n += int(gold.numel())
    if n == 0:
        raise DataError("the validation split has no maskable tokens")
    loss = loss_sum / n
    return {"val_mlm_loss": loss, "val_mlm_perplexity": math.exp(min(loss, 50.0)),
            "val_mlm_accuracy": correct / n, "val_masked_tokens": n, "mask_seed": seed}


def _tail_fill(val: ValSequences, b: int, batch_size: int, shape) -> np.ndarray:
    """Positions of a batch beyond the end of the validation stream (filled with 0, not data)."""
    rows, T = shape
    start = (b * batch_size + np.arange(rows))[:, None] * T + np.arange(T)[None, :]
    return start >= val.tokens.size - 1  # row r holds tokens[s : s + T] of a T+1 window


# ---------------------------------------------------------------------------- trainer hooks
def mlm_model_and_batches(cfg, corpus: Corpus, gcfg, sequences):
    """What `model.train.train` swaps in for --objective mlm: (encoder config, encoder, masked batches).

    Checks the mask token first, so a tokenizer without one fails before any step.
    """
    import torch as _torch

    from model.encoder import Encoder, EncoderConfig

    vocab = mask_vocabulary(corpus)
    ecfg = EncoderConfig(**{**gcfg.to_dict(), "causal": False}, positions=cfg.positions)
    _torch.manual_seed(cfg.seed)  # same seed, same initial weights (as model.train.build_model)
    return ecfg, Encoder(ecfg), MaskedBatches(sequences, vocab, cfg.seed)


def evaluate_mlm_run(run_dir, model, ckpt: dict, info, corpus: Corpus, max_tokens, batch_size: int,
                     device) -> dict:
    """`model.evaluate.evaluate` for an encoder run: masked-token loss and accuracy, eval.json, report.md.

    val_loss / val_perplexity are the masked-token figures (comparable between MLM runs on
    one tokenizer, not with a decoder's next-token loss); bits per byte is not defined for
    a masked LM and is None.
    """
    import time
    from pathlib import Path

    from model.evaluate import eval_corpus
    from model.metrics import plot_loss
    from pipeline.io import write_text
    from pipeline.records import EvalRecord

    run_dir = Path(run_dir)
    prov = corpus.provenance()
    t0 = time.perf_counter()
    autocast = ((lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16))
                if torch.device(device).type == "cuda" else None)
    m = evaluate_mlm(model, corpus, model.config.block_size, batch_size, max_tokens, seed=0, device=device,
                     autocast=autocast)
    record = EvalRecord(
        objective="mlm", val_loss=m["val_mlm_loss"], val_perplexity=m["val_mlm_perplexity"], val_bits_per_byte=None,
        **m, tokens_seen=int(ckpt.get("tokens_seen", 0)), step=int(ckpt["step"]),
        val_tokens_available=sum(s.n_tokens for s in corpus.val), checkpoint=ckpt["path"], n_params=model.num_params(),
        model=model.config.to_dict(), corpus=eval_corpus(prov),
    )
    record.eval_seconds = time.perf_counter() - t0
    record.write(run_dir / EvalRecord.file_name)
    plot = plot_loss(run_dir / "metrics.jsonl", run_dir / "loss.png", [(record.step, record.val_loss)])
    result = record.dump()
    write_text(render_mlm_report(run_dir, result, info, plot is not None), run_dir / "report.md")
    return result


def render_mlm_report(run_dir, r: dict, info, has_plot: bool) -> str:
    from model.evaluate import corpus_section, training_section
    from pipeline.records import CorpusRef

    m, corpus = r["model"], r["corpus"]
    lines = [
        f"# Run report: {run_dir.name} (masked LM)",
        "",
        f"Encoder ({m['n_layer']} layers, {m['n_head']} heads, width {m['n_embd']}, context {m['block_size']}, "
        f"{m.get('positions', 'learned')} positions, vocabulary {m['vocab_size']}; {r['n_params']:,} parameters), "
        f"step {r['step']}, {r['tokens_seen']:,} tokens seen. Masking: 15% of ordinary tokens selected, "
        f"80% -> mask token, 10% -> random token, 10% unchanged; validation masks fixed by seed {r['mask_seed']}.",
        "",
        "| Metric | Value |",
        "|---|---|",
        f"| masked-token loss (nats) | {r['val_mlm_loss']:.4f} |",
        f"| masked-token perplexity | {r['val_mlm_perplexity']:.2f} |",
        f"| masked-token accuracy | {r['val_mlm_accuracy'] * 100:.2f}% |",
        f"| masked positions scored | {r['val_masked_tokens']:,} (of {r['val_tokens_available']:,} validation tokens) |",
        "",
        *corpus_section(CorpusRef(**corpus)),
    ]
    if has_plot:
        lines += ["## Loss", "", "![loss](loss.png)", ""]
    lines += training_section(info)
    return "\n".join(lines)
