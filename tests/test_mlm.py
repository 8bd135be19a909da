"""Masked LM: masking statistics and rules, the encoder's attention and positions, training,
exact resume, evaluation, and the clear error for a tokenizer without a mask token."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.data import DataError, open_corpus
from model.encoder import Encoder, EncoderConfig, apply_rope, rope_tables
from model.gpt import GPT, GPTConfig
from model.mlm import IGNORE, MaskedBatches, MaskingPolicy, MaskVocabulary, mask_tokens, mask_vocabulary


TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=4, warmup_steps=2, checkpoint_every=1000,
            progress=False, threads=1, eval_tokens=2048)


def _vocab(V=1000, specials=(0, 1, 2), mask_id=2) -> MaskVocabulary:
    special = np.array(sorted(specials), dtype=np.int64)
    return MaskVocabulary(mask_id=mask_id, special_ids=special, ordinary_ids=np.setdiff1d(np.arange(V), special))


# ---------------------------------------------------------------------------- masking
def test_masking_rates_and_rules():
    vocab = _vocab()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, size=(256, 1024))
    ids[:, ::7] = 0  # end-of-text tokens sprinkled in
    ids[:, -20:] = 1  # a padded tail
    inputs, targets = mask_tokens(ids, vocab, np.random.default_rng(1))

    special = np.isin(ids, vocab.special_ids)
    selected = targets != IGNORE
    assert not (selected & special).any(), "a special token was selected"
    assert (inputs[special] == ids[special]).all(), "a special token was changed"
    assert (targets[selected] == ids[selected]).all()
    assert (inputs[~selected] == ids[~selected]).all(), "an unselected token was changed"
    rate = selected.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.005, rate

    masked = selected & (inputs == vocab.mask_id)
    changed = selected & (inputs != ids) & (inputs != vocab.mask_id)
    kept = selected & (inputs == ids)
    n = selected.sum()
    assert abs(masked.sum() / n - 0.8) < 0.01
    # a random replacement can draw the original token (1 in 997): "changed" is slightly under 10%
    assert abs(changed.sum() / n - 0.1) < 0.01
    assert abs(kept.sum() / n - 0.1) < 0.01
    assert not np.isin(inputs[changed], vocab.special_ids).any(), "a random replacement was a special token"


def test_masking_is_seeded_and_never_empty():
    vocab = _vocab()
    ids = np.random.default_rng(0).integers(3, 1000, size=(4, 64))
    a = mask_tokens(ids, vocab, np.random.default_rng(7))
    b = mask_tokens(ids, vocab, np.random.default_rng(7))
    assert all((x == y).all() for x, y in zip(a, b))
    # A row of one ordinary token among specials still gets a target (a loss over nothing is NaN).
    few = np.array([[0, 1, 1, 5, 1]])
    for seed in range(20):
        _, t = mask_tokens(few, vocab, np.random.default_rng(seed), MaskingPolicy(select=0.01))
        assert (t != IGNORE).sum() == 1 and t[0, 3] == 5


def test_masked_batches_resume_draws_the_same_masks():
    class Seq:  # a minimal next-token batch source with a position
        def __init__(self):
            self.i, self.epoch = 0, 0

        def next_batch(self):
            g = np.random.default_rng(self.i)
            self.i += 1
            x = torch.from_numpy(g.integers(3, 1000, size=(2, 16)))
            return x, x

        def state_dict(self):
            return {"i": self.i}

        def load_state_dict(self, s):
            self.i = s["i"]

    a = MaskedBatches(Seq(), _vocab(), seed=3)
    first = [a.next_batch() for _ in range(3)]
    b = MaskedBatches(Seq(), _vocab(), seed=3)
    b.next_batch()
    state = b.state_dict()
    c = MaskedBatches(Seq(), _vocab(), seed=3)
    c.load_state_dict(state)
    for want in first[1:]:
        got = c.next_batch()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


# ---------------------------------------------------------------------------- encoder
@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_encoder_attends_both_ways_and_ignores_padding(positions):
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, positions=positions)).eval()
    x = torch.randint(3, 64, (1, 8))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 61 + 3
    h1, h2 = enc.hidden_states(x), enc.hidden_states(y)
    assert not torch.allclose(h1[0, 0], h2[0, 0]), "the first position did not see a later token"

    dec = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    assert torch.allclose(dec.hidden_states(x)[0, 0], dec.hidden_states(y)[0, 0]), "the decoder is not causal"

    # Right padding hidden by the key-padding mask leaves the real positions unchanged.
    padded = torch.cat([x, torch.full((1, 5), 1)], dim=1)
    mask = torch.arange(13)[None, None, None, :] < 8
    hp = enc.hidden_states(padded, mask)
    assert torch.allclose(hp[0, :8], h1[0], atol=1e-5)


def test_rope_has_no_position_table_and_is_relative():
    cfg = EncoderConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32, positions="rope")
    enc = Encoder(cfg)
    assert "wpe" not in enc.transformer and not any("wpe" in k for k in enc.state_dict())
    learned = Encoder(EncoderConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))
    assert learned.num_params(non_embedding=False) - enc.num_params(non_embedding=False) == 16 * 32
    # Rotary scores depend on the offset only: q at t, k at s equals q at t+3, k at s+3.
    cos, sin = rope_tables(16, 8, 10000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(t, s):
        qs = apply_rope(q.expand(16, 8)[None, None], cos, sin)[0, 0, t]
        ks = apply_rope(k.expand(16, 8)[None, None], cos, sin)[0, 0, s]
        return float(qs @ ks)

    assert score(2, 7) == pytest.approx(score(5, 10), abs=1e-5)
    with pytest.raises(ValueError, match="positions"):
        EncoderConfig(positions="alibi")


def test_encoder_loss_only_on_targets():
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32))
    x = torch.randint(3, 64, (2, 10))
    targets = torch.full_like(x, IGNORE)
    targets[0, 3], targets[1, 7] = 11, 12
    logits, loss = enc(x, targets)
    full, _ = enc(x)
    assert logits.shape == (2, 64)
    want = torch.nn.functional.cross_entropy(torch.stack([full[0, 3], full[1, 7]]), torch.tensor([11, 12]))
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


# ---------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def lingua_corpus(tmp_path_factory, corpora):
    from mlm_corpus import build_lingua_corpus

    return build_lingua_corpus(tmp_path_factory.mktemp("mlm") / "data", languages=["de", "nl", "sv"],
                               skip_lines=700, vocab_size=512, root=corpora / "multilingual" / "sentences")


def test_corpus_has_the_three_special_tokens(lingua_corpus):
    corpus = open_corpus(lingua_corpus)
    vocab = mask_vocabulary(corpus)
    tok = corpus.tokenizer()
    assert vocab.mask_id == tok.token_to_id("<|mask|>")
    assert {corpus.eot_id, corpus.pad_id, vocab.mask_id} <= set(vocab.special_ids.tolist())


def test_mlm_train_resume_is_exact_and_eval_reports_accuracy(lingua_corpus, tmp_path):
    from model.evaluate import evaluate
    from model.metrics import read_metrics
    from model.train import train

    full, part = tmp_path / "full", tmp_path / "part"
    train(lingua_corpus, full, max_steps=6, objective="mlm", positions="rope", **TINY)
    train(lingua_corpus, part, max_steps=3, objective="mlm", positions="rope", **{**TINY, "checkpoint_every": 3})
    train(lingua_corpus, part, max_steps=6, objective="mlm", positions="rope", **{**TINY, "checkpoint_every": 3})
    a = [r["loss"] for r in read_metrics(full / "metrics.jsonl")]
    b = [r["loss"] for r in read_metrics(part / "metrics.jsonl")]
    assert len(a) == 6 and a == b, (a, b)

    run = json.loads((full / "run.json").read_text())
    assert run["config"]["objective"] == "mlm" and run["model"]["causal"] is False
    r = evaluate(full)
    assert r["objective"] == "mlm" and 0 <= r["val_mlm_accuracy"] <= 1 and r["val_masked_tokens"] > 0
    assert r["val_bits_per_byte"] is None
    assert "masked-token accuracy" in (full / "report.md").read_text()
    assert evaluate(full)["val_mlm_loss"] == r["val_mlm_loss"], "validation masks are not fixed"

    # A run cannot switch objective on resume.
    from model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="objective"):
        train(lingua_corpus, full, max_steps=8, objective="clm", **TINY)


def test_mlm_learns(lingua_corpus, tmp_path):
    """A few dozen steps take the masked-token loss clearly below its start (ln 512 = 6.24 nats)."""
    from model.metrics import read_metrics
    from model.train import train

    train(lingua_corpus, tmp_path / "run", max_steps=40, objective="mlm", lr=3e-3, **{**TINY, "batch_size": 8})
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 0.3, losses


def test_tokenizer_without_mask_fails_before_training(tmp_path):
    from model_fixtures import make_corpus

    from model.train import train

    data = make_corpus(tmp_path / "data", n_chars=30_000)  # <|endoftext|> and <|pad|>, no <|mask|>
    with pytest.raises(DataError, match=r"mask token.*tokenizer\.json"):
        train(data, tmp_path / "run", max_steps=2, objective="mlm", **TINY)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_train_objective_mlm(lingua_corpus, tmp_path, capsys):
    from flows.cli import main

    main(["train", "--data", str(lingua_corpus), "--out", str(tmp_path / "run"), "--objective", "mlm",
          "--max-steps", "2", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "32",
          "--batch-size", "2", "--no-progress", "--threads", "1"])
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["objective"] == "mlm"
