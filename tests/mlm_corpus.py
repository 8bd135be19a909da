"""Pretraining corpora for the masked-LM and fine-tuning tests, built by the pipeline's own stages.

Documents come from a folder of LANG.txt sentence files, grouped into documents of one
language each: ../shared/corpora's lingua sentences by default (the benchmark and the
shared-marked gain test), or the generated ones of tests/fixtures_corpus.py (`root=`); the tokenizer and token shards are made by `pipeline.tokenize`
(train_tokenizer + tokenize_corpus), so the corpus has the three special tokens
(<|endoftext|>, <|pad|>, <|mask|>) exactly as `opencorpus run` writes them. No Prefect.

Sentences a fine-tuning task evaluates on are kept out: each language contributes only
the lines after the first `skip_lines`, and the task reads the first `max_per_class`
<= skip_lines lines, so pretraining never sees a task sentence (the test checks it).
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import SHARED_CORPORA  # noqa: E402  (the one place that finds ../shared)
LINGUA = SHARED_CORPORA / "multilingual" / "lingua_sentences"

# Latin-script languages with close neighbours (Scandinavian, Iberian, Dutch/Afrikaans,
# Malay/Indonesian...): language ID among them is not solved by the alphabet alone.
LANGUAGES = ["af", "ca", "da", "de", "en", "es", "fr", "id", "it", "ms", "nb", "nl", "nn", "pt", "sv", "tl"]


def lingua_documents(languages: list[str], skip_lines: int, sentences_per_doc: int = 8,
                     root: Path | None = None) -> tuple[list[str], list[str]]:
    """(ids, texts): each language's sentences after the first skip_lines, in documents of a few sentences."""
    ids, texts = [], []
    for lang in languages:
        lines = [s.strip() for s in (Path(root or LINGUA) / f"{lang}.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
        held_out = set(lines[:skip_lines])  # a sentence repeated later in the file stays held out too
        lines = [s for s in lines[skip_lines:] if s not in held_out]
        for k in range(0, len(lines), sentences_per_doc):
            ids.append(f"lingua-{lang}-{skip_lines + k:05d}")
            texts.append(" ".join(lines[k: k + sentences_per_doc]))
    return ids, texts


def build_corpus(out: Path, ids: list[str], texts: list[str], vocab_size: int = 2048, val_fraction: float = 0.05,
                 seed: int = 1234) -> Path:
    """DATA/{tokenizer.json, tokens/{train,val}/part-*.parquet, tokens/index.json} from raw documents."""
    from pipeline.tokenize import TokenizeConfig, tokenize_corpus, train_tokenizer

    out = Path(out)
    docs = out / "dedup"
    docs.mkdir(parents=True, exist_ok=True)
    shard = docs / "part-00000.parquet"
    pq.write_table(pa.table({"id": ids, "text": texts, "source": ["lingua"] * len(ids)}), shard)
    cfg = TokenizeConfig(vocab_size=vocab_size, val_fraction=val_fraction, seed=seed, train_sample_bytes=None)
    train_tokenizer([shard], out / "tokenizer.json", cfg)
    tokenize_corpus([shard], out / "tokenizer.json", out / "tokens", cfg)
    return out


def build_lingua_corpus(out: Path, languages: list[str] = LANGUAGES, skip_lines: int = 100,
                        vocab_size: int = 2048, extra: tuple[list[str], list[str]] | None = None,
                        root: Path | None = None) -> Path:
    """The lingua documents (plus `extra` (ids, texts) documents appended in order) as a corpus."""
    ids, texts = lingua_documents(languages, skip_lines, root=root)
    if extra is not None:
        ids, texts = ids + list(extra[0]), texts + list(extra[1])
    return build_corpus(out, ids, texts, vocab_size)


# The pretraining and language-ID settings of tests/test_finetune_gain.py, shared with
# bench/finetune_gain.py so the benchmark's first row is exactly what the test asserts.
GAIN_PRETRAIN = dict(objective="mlm", n_layer=2, n_head=4, n_embd=128, block_size=128, batch_size=16, lr=3e-3,
                     min_lr=3e-4, warmup_steps=30, checkpoint_every=10_000, progress=False, threads=1)
GAIN_PRETRAIN_STEPS = 1200
SKIP_LINES = 100  # pretraining uses lines 100.. of each language; the task the first 80
LID_SUBSET = dict(max_per_class=80, split=dict(validation=0.1, test=0.6, seed=0))
LID_SETTINGS = dict(epochs=10, lr=5e-4, batch_size=32, max_len=64)


def lid_task(task_file: Path):
    """The shipped language-ID task cut to LANGUAGES, 80 sentences each, 60% of them for test."""
    from model.tasks import load_task

    t = load_task(task_file, **LID_SETTINGS)
    return t.model_copy(update={
        "source": t.source.model_copy(update={"classes": LANGUAGES, "max_per_class": LID_SUBSET["max_per_class"]}),
        "split": t.split.model_copy(update=LID_SUBSET["split"]),
    })
