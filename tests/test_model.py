"""The GPT module, the data stream, the optimiser pieces and the HF export."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.data import TrainSequences, ValSequences, open_corpus
from model.gpt import GPT, GPTConfig
from model.optim import lr_at, make_adamw
from model_fixtures import make_corpus

TINY = dict(n_layer=2, n_head=2, n_embd=64, block_size=64, batch_size=8)


# Tiny models: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "data")


def test_initial_loss_is_uniform_and_shapes():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=32))
    x = torch.randint(0, 256, (3, 32))
    logits, loss = m(x, torch.randint(0, 256, (3, 32)))
    assert logits.shape == (3, 32, 256)
    assert abs(loss.item() - math.log(256)) < 0.1  # small init: near-uniform predictions
    assert m.lm_head.weight is m.transformer.wte.weight


def test_fused_cross_entropy_matches_torch():
    import torch.nn.functional as F

    from model.gpt import cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 50, 97, generator=g)
    targets = torch.randint(0, 97, (2, 50), generator=g)
    targets[0, :7] = -100  # ignored positions (masked-LM style)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    la = cross_entropy(a, targets)
    lb = F.cross_entropy(b.view(-1, 97), targets.view(-1), ignore_index=-100)
    (la * 3).backward()
    (lb * 3).backward()
    assert torch.allclose(la, lb, atol=1e-6)
    assert torch.allclose(a.grad, b.grad, atol=1e-7)
    assert a.grad[0, :7].abs().max() == 0


def test_causal_mask_hides_the_future_and_encoder_does_not():
    torch.manual_seed(0)
    for causal in (True, False):
        m = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, causal=causal)).eval()
        x = torch.randint(0, 64, (1, 16))
        y = x.clone()
        y[0, 10:] = (y[0, 10:] + 1) % 64
        with torch.no_grad():
            a, b = m(x)[0], m(y)[0]
        same_prefix = torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
        assert same_prefix == causal


def test_weight_decay_only_on_matrices():
    m = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32))
    opt = make_adamw(m, 1e-3, 0.1, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in m.parameters())  # the tied matrix counted once


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 1e-3, 1e-4, 10, 100) for s in range(120)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:100]))
    assert lrs[55] == pytest.approx(5.5e-4, rel=1e-6)
    assert lrs[100] == lrs[119] == 1e-4


def test_train_stream_is_seeded_resumable_and_rank_strided(corpus_dir):
    c = open_corpus(corpus_dir)
    mk = lambda seed, rank=0, world=1: TrainSequences(c.train, 64, 4, seed, c.vocab_size, rank, world,
                                                      window_tokens=20_000)  # several windows
    a, b, other = mk(1), mk(1), mk(2)
    xa, ya = a.next_batch()
    xb, _ = b.next_batch()
    assert torch.equal(xa, xb) and not torch.equal(xa, other.next_batch()[0])
    assert torch.equal(xa[:, 1:], ya[:, :-1])  # targets are inputs shifted by one
    assert xa.dtype == torch.int64 and xa.shape == (4, 64)

    # Resume: a fresh stream loaded with a's position yields exactly a's next batches.
    for _ in range(7):
        a.next_batch()
    state = a.state_dict()
    fresh = mk(1)
    fresh.load_state_dict(state)
    assert len(fresh.windows(0)) > 1
    for _ in range(250):  # crosses window and epoch boundaries
        assert torch.equal(a.next_batch()[0], fresh.next_batch()[0])

    # Two ranks split each epoch: disjoint sequences whose union is the single-rank epoch.
    def one_epoch(rank, world):
        s = TrainSequences(c.train, 64, 1, 1, c.vocab_size, rank, world)
        rows = []
        while s.epoch == 0:
            rows.append(tuple(s.next_batch()[0][0].tolist()))
        return rows[:-1] if s.seq_cursor else rows  # the last batch may start epoch 1

    single, r0, r1 = one_epoch(0, 1), one_epoch(0, 2), one_epoch(1, 2)
    assert sorted(r0 + r1) == sorted(single)
    assert abs(len(r0) - len(r1)) <= len(c.train)


def test_epoch_covers_every_sequence_once(corpus_dir):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    c = open_corpus(corpus_dir)
    toks = {i: pc.list_flatten(pq.read_table(sh.path).column("input_ids")).to_numpy() for i, sh in enumerate(c.train)}
    for window_tokens in (1 << 27, 1):  # one window holding every shard; one window per shard
        s = TrainSequences(c.train, 64, 1, 5, c.vocab_size, window_tokens=window_tokens)
        windows = s.windows(0)
        assert sorted(i for w in windows for i in w) == list(range(len(c.train)))
        assert len(windows) == (1 if window_tokens > 1 else len(c.train))
        expected = []
        for w in windows:
            stream = np.concatenate([toks[i] for i in w])
            expected += [tuple(stream[k * 64: k * 64 + 64].tolist()) for k in range((stream.size - 1) // 64)]
        rows = [tuple(s.next_batch()[0][0].tolist()) for _ in range(len(expected))]
        assert s.epoch == 1 and s.window_cursor == 0 and s.seq_cursor == 0
        assert sorted(rows) == sorted(expected)


@pytest.fixture(scope="module")
def two_source_corpus(tmp_path_factory):
    """The play corpus with its shards recorded as sources "a" and "b" in turn."""
    return make_corpus(tmp_path_factory.mktemp("mixed") / "data", sources=("a", "b"))


def _one_epoch_consumed(train, **kw) -> dict:
    s = TrainSequences(train, 64, 1, 3, 512, **kw)
    while s.epoch == 0:
        s.next_batch()
    return s.consumed


def test_mix_repeats_and_samples_sources_by_weight(two_source_corpus):
    c = open_corpus(two_source_corpus)
    have = {src: sum(sh.n_tokens for sh in c.train if sh.source == src) for src in ("a", "b")}
    plain = _one_epoch_consumed(c.train)
    mixed = _one_epoch_consumed(c.train, mix={"a": 2.0, "b": 0.5})
    # an epoch without weights reads each source once (sequences drop a window's last partial one)
    assert all(0.95 * have[k] <= plain[k] <= have[k] for k in have), (plain, have)
    # a: every document twice; b: about half of its documents (sampled per document)
    assert 0.95 * 2 * have["a"] <= mixed["a"] <= 2 * have["a"], (mixed, have)
    assert 0.35 * have["b"] <= mixed["b"] <= 0.65 * have["b"], (mixed, have)
    assert _one_epoch_consumed(c.train, mix={"a": 2.0, "b": 0.5}) == mixed  # seeded
    assert _one_epoch_consumed(c.train, mix={"b": 0})["b"] == 0


def test_mixed_stream_resumes_exactly_and_refuses_another_mix(two_source_corpus):
    c = open_corpus(two_source_corpus)
    mk = lambda mix: TrainSequences(c.train, 64, 4, 1, c.vocab_size, window_tokens=20_000, mix=mix)
    a = mk({"a": 3.0, "b": 0.3})
    for _ in range(9):
        a.next_batch()
    state = a.state_dict()
    fresh = mk({"a": 3.0, "b": 0.3})
    fresh.load_state_dict(state)
    for _ in range(200):  # across windows and epochs, each epoch drawing its own sample of b
        assert torch.equal(a.next_batch()[0], fresh.next_batch()[0])
    assert fresh.consumed == a.consumed  # the mixture consumed carries over a resume
    with pytest.raises(ValueError, match="mix"):
        mk({"a": 1.5}).load_state_dict(state)


def test_mix_errors_name_the_problem(two_source_corpus, corpus_dir):
    from model.config import make_config
    from model.data import DataError

    c = open_corpus(two_source_corpus)
    with pytest.raises(DataError, match=r"source\(s\) \['web'\].*\['a', 'b'\]"):
        TrainSequences(c.train, 64, 4, 1, c.vocab_size, mix={"web": 2.0})
    with pytest.raises(DataError, match="does not name each shard's source"):
        TrainSequences(open_corpus(corpus_dir).train, 64, 4, 1, 512, mix={"a": 2.0})
    with pytest.raises(ValueError, match="weight"):
        make_config(mix="a=lots")
    assert make_config(mix="b=0.5, a=2").mix == "a=2,b=0.5"


def test_a_run_records_the_mixture_it_consumed(two_source_corpus, tmp_path):
    import json

    from model.train import train

    train(two_source_corpus, tmp_path / "run", max_steps=3, progress=False, mix="a=2,b=0", **TINY)
    mixture = json.loads((tmp_path / "run" / "run.json").read_text())["mixture"]
    assert mixture["weights"] == {"a": 2.0, "b": 0.0}
    assert mixture["tokens"] == {"a": 3 * TINY["batch_size"] * TINY["block_size"], "b": 0}

    from model.evaluate import evaluate
    from pipeline.card import add_model_entry
    from pipeline.card.markdown import _mixtures

    evaluate(tmp_path / "run", two_source_corpus, max_tokens=2048)
    entry = add_model_entry(tmp_path / "run", data_cards_dir=tmp_path / "cards")
    lines = "\n".join(_mixtures([entry.dump()]))
    assert "| run | 100.0 % (x2) | 0.0 % (x0) |" in lines, lines


def test_val_stream_targets_every_token_once(corpus_dir):
    c = open_corpus(corpus_dir, need_val=True)
    v = ValSequences(c.val, 64, c.vocab_size)
    ys = [y[y != -100] for _, y in v.batches(5)]
    assert torch.equal(torch.cat(ys), torch.from_numpy(v.target_ids().astype(np.int64)))
    capped = ValSequences(c.val, 64, c.vocab_size, max_tokens=1000)
    assert capped.n_targets == 1000


def test_export_hf_logits_match(corpus_dir, tmp_path):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from model.evaluate import load_run_model
    from model.export import export_hf
    from model.train import train

    train(corpus_dir, tmp_path / "run", max_steps=3, progress=False, **TINY)
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    ours, _, _ = load_run_model(tmp_path / "run")
    x = torch.randint(0, ours.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours(x)[0] - hf(x).logits).abs().max().item()
    assert diff < 1e-4
    tok = AutoTokenizer.from_pretrained(out)
    text = "To be, or not to be"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.eos_token == "<|endoftext|>"


def test_export_loads_generates_and_has_a_model_card(corpus_dir, tmp_path):
    """The export as a user takes it: AutoModelForCausalLM and AutoTokenizer load it and
    generate; its tokenizer class is one transformers 4.x loads too; its README.md carries
    Hub metadata with the measured figures."""
    import json
    import shutil

    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.evaluate import evaluate
    from model.export import export_hf
    from model.train import train

    data = tmp_path / "data"  # the corpus with a data card, whose license the model card repeats
    shutil.copytree(corpus_dir, data)
    train(data, tmp_path / "run", max_steps=3, progress=False, **TINY)
    ev = evaluate(tmp_path / "run", max_tokens=2000, device="cpu", samples=False)
    assert ModelCard.load(export_hf(tmp_path / "run", tmp_path / "no-card") / "README.md").data.license == "unknown"
    (data / "README.md").write_text("---\npretty_name: test-play\nlicense:\n- cc-by-4.0\n- odc-by\nlanguage:\n- en\n"
                                    "---\n\n# test-play\n", encoding="utf-8")
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"  # not 5.x's TokenizersBackend
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert (tok.eos_token, tok.pad_token, tok.model_max_length) == ("<|endoftext|>", "<|pad|>", TINY["block_size"])
    inputs = tok("To be, or not", return_tensors="pt")
    torch.manual_seed(0)
    ids = model.generate(**inputs, max_new_tokens=12, do_sample=True, pad_token_id=tok.pad_token_id)
    assert ids.shape[1] > inputs["input_ids"].shape[1]
    assert tok.decode(ids[0]).startswith("To be, or not")

    card = ModelCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["datasets"] == ["test-play"] and meta["license"] == ["cc-by-4.0", "odc-by"] and meta["language"] == ["en"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["loss"] == round(ev["val_loss"], 4)
    assert results["bits_per_byte"] == round(ev["val_bits_per_byte"], 4)
    assert "## Limits" in card.text and f"| Validation loss (nats per token) | {round(ev['val_loss'], 4)} |" in card.text


LOAD_AND_GENERATE = """
import sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
text = "To be, or not to be , that is . the question"
assert tok.decode(tok(text)["input_ids"]) == text
ids = model.generate(**tok("To be", return_tensors="pt"), max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
assert ids.shape[1] > 2 and (tok.eos_token, tok.pad_token) == ("<|endoftext|>", "<|pad|>")
print(transformers.__version__)
"""


# The oldest release pyproject.toml admits (transformers>=4.45), with the tokenizers and
# huggingface-hub releases it requires; the newest is the project's own venv (test above).
# 4.44 and older pin tokenizers<0.20, which cannot read the tokenizer.json that tokenizers
# 0.20+ write (BPE merges as pairs): this test found that when the floor was 4.40.
OLDEST_TRANSFORMERS = ("transformers==4.45.2", "tokenizers==0.20.3", "huggingface-hub==0.25.2")


def _oldest_transformers_path() -> str:
    """A folder holding the oldest supported transformers (pip --target, cached under
    $OPENCORPUS_CACHE/compat), put first on PYTHONPATH in front of the project's venv."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from flows.storage import cache_dir

    target = cache_dir() / "compat" / "-".join(s.replace("==", "") for s in OLDEST_TRANSFORMERS)
    if not (target / ".complete").is_file():
        tmp = Path(f"{target}.tmp-{os.getpid()}")
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp),
                               *OLDEST_TRANSFORMERS], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:  # no package index reachable: nothing to test against
            pytest.skip(f"pip could not install {' '.join(OLDEST_TRANSFORMERS)}: {done.stderr.strip()[-300:]}")
        (tmp / ".complete").touch()
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            subprocess.run(["rm", "-rf", str(tmp)])
    return str(target)


@pytest.mark.other_transformers
def test_export_loads_with_the_oldest_supported_transformers(corpus_dir, tmp_path):
    """The export loads and generates with transformers 4.45 (the oldest release pyproject.toml
    admits), besides the project's own 5.x: installed by pip into a cached folder on first use,
    or the Python of another venv in $OPENCORPUS_OTHER_TRANSFORMERS_PYTHON."""
    import os
    import subprocess
    import sys

    from model.export import export_hf
    from model.train import train

    python, env = os.environ.get("OPENCORPUS_OTHER_TRANSFORMERS_PYTHON"), dict(os.environ)
    if not python:
        python = sys.executable
        env["PYTHONPATH"] = _oldest_transformers_path()
    train(corpus_dir, tmp_path / "run", max_steps=2, progress=False, **TINY)
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    done = subprocess.run([python, "-c", LOAD_AND_GENERATE, str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    if "PYTHONPATH" in env:
        assert done.stdout.split()[-1] == "4.45.2"


def test_heldout_and_choice_scores_equal_a_plain_forward_pass(corpus_dir):
    """Batched, padded windows score exactly what one unpadded forward pass per text gives."""
    import torch.nn.functional as F
    from tokenizers import Tokenizer

    from model.heldout import choice_scores, passage_scores

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    tok = Tokenizer.from_file(str(corpus_dir / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")

    def direct(ids):  # summed log-likelihood of ids[1:], one window (ids fit in the context)
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids[:-1]]))
        return float(F.log_softmax(logits[0].float(), -1).gather(1, torch.tensor(ids[1:])[:, None]).sum())

    texts = ["To be or not", "Enter the king, with lords and attendants, and a longer line here"]
    rows = passage_scores(model, tok, texts, block=32)
    for text, row in zip(texts, rows):
        ids = [eot] + tok.encode(text).ids
        assert len(ids) <= 33 and row["tokens"] == len(ids) - 1
        assert row["nll"] == pytest.approx(-direct(ids), rel=1e-5)
    item = {"context": "Enter the", "choices": ["king", "queen, weeping", "fool"], "label": 1}
    got = choice_scores(model, tok, [item], block=32)[0]
    ctx = [eot] + tok.encode("Enter the").ids
    for choice, ll in zip(item["choices"], got["loglik"]):
        cont = tok.encode(" " + choice).ids
        assert ll == pytest.approx(direct(ctx + cont) - direct(ctx), rel=1e-4, abs=1e-4)
    assert got["acc"] == float(max(range(3), key=lambda j: got["loglik"][j]) == 1)
    from model.heldout import TaskFileError

    long_choice = {"context": "Enter", "choices": ["the king " * 20, "fool"], "label": 0}
    with pytest.raises(TaskFileError, match=r"item 1: the choice .* tokens, longer than the model's context of 32"):
        choice_scores(model, tok, [long_choice], block=32)
    # acc_norm as lm-eval-harness: log-likelihood per character of the choice, the delimiter not counted
    assert got["acc_norm"] == float(max(range(3), key=lambda j: got["loglik"][j] / len(item["choices"][j])) == 1)


@pytest.mark.other_transformers
def test_lm_eval_harness_scores_a_task_as_choice_scores_does(corpus_dir, tmp_path):
    """lm-eval-harness on the export and choice_scores on the checkpoint pick the same choice on
    every item (acc and acc_norm), log-likelihoods equal to float32 rounding: bench/lm_eval_parity.py
    on a tiny run and 20 short items. Needs the lm-eval folder the script's docstring describes
    ($OPENCORPUS_LM_EVAL_PATH, or /tmp/lmeval-env with the compat transformers 4.45 folder);
    skipped without it."""
    import importlib.util
    import json
    import os
    import random
    import sys
    from pathlib import Path

    from model.train import train

    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_text import sentence

    path = os.environ.get("OPENCORPUS_LM_EVAL_PATH")
    if not path:
        if not (Path("/tmp/lmeval-env") / "lm_eval").is_dir():
            pytest.skip("no lm-eval folder ($OPENCORPUS_LM_EVAL_PATH or /tmp/lmeval-env; see bench/lm_eval_parity.py)")
        path = os.pathsep.join(["/tmp/lmeval-env", _oldest_transformers_path()])
    spec = importlib.util.spec_from_file_location("lm_eval_parity", Path(__file__).parents[1] / "bench" / "lm_eval_parity.py")
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    train(corpus_dir, tmp_path / "run", max_steps=3, progress=False, **TINY)
    rng = random.Random(0)
    rows = []
    for _ in range(20):
        n = rng.randint(2, 4)
        choices = [" ".join(sentence(rng, rng.choice(["en", "de", "fr"])).split()[: rng.randint(1, 6)]) for _ in range(n)]
        rows.append({"context": sentence(rng, "en"), "choices": choices, "label": rng.randrange(n)})
    task = tmp_path / "short.jsonl"
    task.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rc = parity.main(["--work", str(tmp_path / "w"), "--run", str(tmp_path / "run"), "--task", str(task),
                      "--lm-eval-path", path])
    assert rc == 0
    got = json.loads((tmp_path / "w" / "parity.json").read_text())["tasks"]["short.jsonl"]
    assert got["items"] == 20 and got["differ"] == [] and got["max_abs_loglik_diff"] < 1e-3
