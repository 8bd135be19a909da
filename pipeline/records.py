"""Typed records: the single definition of everything that crosses a boundary.

Stages return these records, the flow stores them (done records, `manifest.json`), the
data card reads them, and `model/` reads the token index and writes the run, eval and
fine-tune records. Nothing else defines what those files hold.

    ingest   -> IngestStats (per source: IngestSourceStats)       documents/, rejected/ingest-*
    clean    -> CleanStats                                        clean/, rejected/clean-*
    dedup    -> DedupStats                                        dedup/, clusters/, rejected/dedup-*
    tokenize -> TokenizeStats, TokenIndex (tokens/index.json)     tokens/, tokenizer.json
    flow     -> Manifest (manifest.json: the recipe, versions, every stage's stats)
    model    -> RunRecord (run.json), EvalRecord (eval.json), FinetuneRecord (FT_DIR/eval.json)
    recipe   -> pipeline.recipe.Recipe, its path fields declared with `recipe_path` and made
                absolute by `resolve_paths`, once, when the recipe is parsed
    card     <- all of the above; ModelEntry (models.json) lists the runs trained on a corpus

Every record refuses unknown fields, so a misspelt key is an error where it is written,
not a silently missing figure where it is read. Files written by an older opencorpus load
through `migrate_manifest` (explicit, per version) or fail with a message naming the
version they carry. This module imports nothing from the rest of the project but the
atomic file writer (`pipeline.io`), so `model/` may depend on it without depending on how
the shards were made.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_VERSION = 2  # 1: opencorpus 0.1 manifests (no `format_version` field)
TOKEN_INDEX_FORMAT = "opencorpus-tokens/1"

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """A record file that cannot be used; the message names the file and what is wrong."""


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    file_name: ClassVar[str | None] = None  # where the record lives in its folder, when it has one place

    def dump(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)

    def write(self, path: str | Path) -> Path:
        from pipeline.io import write_json  # atomic

        return write_json(self.dump(), path)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordError(f"{path}: missing ({cls.__name__})") from None
        except (OSError, ValueError) as e:
            raise RecordError(f"{path}: not readable JSON: {e}") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls: type[R], data: Any, origin: str = "<record>") -> R:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise RecordError(f"{origin}: not a valid {cls.__name__}: {format_errors(e)}") from None


def format_errors(e: ValidationError) -> str:
    """A pydantic error as one line of `field.path: message` parts."""
    parts = []
    for err in e.errors():
        loc = ""
        for item in err["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        msg = err["msg"].removeprefix("Value error, ")
        # messages from our own validators already start with the field's path
        parts.append(f"{loc}: {msg}" if loc and not msg.startswith(loc) else msg)
    return "; ".join(parts)



# ---------------------------------------------------------------- recipe paths, resolved once

def recipe_path(default=..., *, kind: str = "local", **kwargs):
    """A recipe field holding a local path (or a list of them, globs allowed), relative to the
    recipe's folder. `kind="local_or_id"`: a path only if it exists there (else a Hub id).
    URLs (anything with `://`) are left as they are."""
    return Field(default, json_schema_extra={"recipe_path": kind}, **kwargs)


def _absolute(value: str, base_dir: Path, kind: str) -> str:
    if "://" in value:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    full = base_dir / p
    if kind == "local_or_id" and not full.exists():
        return value
    return str(full)


def resolve_paths(model: BaseModel, base_dir: Path) -> BaseModel:
    """A copy of `model` (and its nested configs) with every `recipe_path` field absolute."""
    update = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        kind = extra.get("recipe_path")
        if kind and value is not None:
            update[name] = ([_absolute(v, base_dir, kind) for v in value] if isinstance(value, list)
                            else _absolute(value, base_dir, kind))
        elif isinstance(value, BaseModel):
            update[name] = resolve_paths(value, base_dir)
        elif isinstance(value, list) and any(isinstance(v, BaseModel) for v in value):
            update[name] = [resolve_paths(v, base_dir) if isinstance(v, BaseModel) else v for v in value]
    return model.model_copy(update=update) if update else model


# ---------------------------------------------------------------- stage statistics


class StageStats(Record):
    """What every stage records: documents and text bytes in, out and rejected, wall time,
    and how many documents each filter removed. `docs_in == docs_out + docs_rejected`."""

    docs_in: int = 0
    docs_out: int = 0
    docs_rejected: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    rejected_by_filter: dict[str, int] = Field(default_factory=dict)

    CONSERVED: ClassVar[tuple[str, ...]] = ("docs_in", "docs_out", "docs_rejected", "bytes_in", "bytes_out")

    def conservation_error(self) -> str | None:
        if self.docs_in != self.docs_out + self.docs_rejected:
            return f"docs_in {self.docs_in} != docs_out {self.docs_out} + docs_rejected {self.docs_rejected}"
        return None

    def funnel_line(self) -> str:
        return f"{self.docs_in} in, {self.docs_out} out, {self.docs_rejected} rejected ({self.seconds:.1f} s)"

    @classmethod
    def summed(cls: type[R], parts: list["StageStats"], seconds: float | None = None, **extra) -> R:
        """The conserved counters and per-filter counts of `parts` added up (units of one stage)."""
        totals = {k: sum(getattr(p, k) for p in parts) for k in StageStats.CONSERVED}
        by_filter: dict[str, int] = {}
        for p in parts:
            for k, v in p.rejected_by_filter.items():
                by_filter[k] = by_filter.get(k, 0) + v
        secs = seconds if seconds is not None else sum(p.seconds for p in parts)
        return cls(**totals, seconds=round(secs, 3), rejected_by_filter=by_filter, **extra)


class ProvenanceEntry(Record):
    """One input of a source: a file, a download, a dataset or a Python distribution."""

    model_config = ConfigDict(extra="allow")  # each source type records what it knows (url, etag, revision, ...)


class IngestSourceStats(StageStats):
    type: str
    license: str | None = None
    shards: list[str] = Field(default_factory=list)  # relative to the corpus folder
    provenance: list[ProvenanceEntry] = Field(default_factory=list)
    surrogates_replaced: int = 0  # documents whose lone UTF-16 surrogates became U+FFFD


class IngestStats(StageStats):
    sources: dict[str, IngestSourceStats] = Field(default_factory=dict)


class RejectExample(Record):
    id: str
    reason: str
    text: str | None = None


class FilterStats(Record):
    docs: int = 0
    bytes: int = 0
    examples: list[RejectExample] = Field(default_factory=list)


QUALITY_BINS = 20  # score histogram: [0, 0.05), [0.05, 0.1), ... [0.95, 1]


class QualitySourceStats(Record):
    scored: int = 0  # documents scored (prose that reached the scorer)
    rejected: int = 0  # of them, below the threshold
    counts: list[int] = Field(default_factory=lambda: [0] * QUALITY_BINS)  # scores per bin of 1/QUALITY_BINS


class QualityStats(Record):
    """The learned scorer of the clean stage: its settings and the score distribution per source."""

    name: str
    model: str  # the model file's name
    model_sha256: str | None = None
    threshold: float
    held_out: dict[str, Any] | None = None  # the model's own held-out figures (from its file)
    sources: dict[str, QualitySourceStats] = Field(default_factory=dict)


class ContaminationStats(Record):
    """One evaluation set of `clean.decontaminate`: its size, and the documents sharing an n-gram with it."""

    ngram: int
    action: str  # remove | flag
    files: list[str] = Field(default_factory=list)
    items: int = 0  # evaluation texts read
    short_items: int = 0  # texts shorter than the n-gram (they cannot match)
    ngrams: int = 0  # distinct n-grams indexed
    docs: int = 0  # documents matched (removed, or flagged)
    sources: dict[str, int] = Field(default_factory=dict)  # documents matched per source


class CleanStats(StageStats):
    filters: dict[str, FilterStats] = Field(default_factory=dict)  # every filter that ran, in order
    pii: dict[str, int] = Field(default_factory=dict)  # kind -> spans replaced
    languages: dict[str, int] = Field(default_factory=dict)  # language -> documents kept
    quality: QualityStats | None = None
    contamination: dict[str, ContaminationStats] = Field(default_factory=dict)  # evaluation set -> figures
    examples_per_filter: ClassVar[int] = 3

    @classmethod
    def merged(cls, shards: list["CleanStats"], seconds: float | None = None) -> "CleanStats":
        """Per-shard stats (in shard order) combined into the stage's stats."""
        out = cls.summed(shards, seconds)
        for s in shards:
            for name, f in s.filters.items():
                g = out.filters.setdefault(name, FilterStats())
                g.docs += f.docs
                g.bytes += f.bytes
                g.examples.extend(f.examples[: max(0, cls.examples_per_filter - len(g.examples))])
            for k, v in s.pii.items():
                out.pii[k] = out.pii.get(k, 0) + v
            for k, v in s.languages.items():
                out.languages[k] = out.languages.get(k, 0) + v
            if s.quality is not None:
                if out.quality is None:
                    out.quality = s.quality.model_copy(update={"sources": {}})
                for src, q in s.quality.sources.items():
                    o = out.quality.sources.setdefault(src, QualitySourceStats())
                    o.scored += q.scored
                    o.rejected += q.rejected
                    o.counts = [a + b for a, b in zip(o.counts, q.counts)]
            for name, c in s.contamination.items():
                if name not in out.contamination:
                    out.contamination[name] = c.model_copy(update={"docs": 0, "sources": {}})
                o = out.contamination[name]
                o.docs += c.docs
                for src, k in c.sources.items():
                    o.sources[src] = o.sources.get(src, 0) + k
        out.languages = dict(sorted(out.languages.items(), key=lambda kv: (-kv[1], kv[0])))
        return out


class DuplicateCluster(Record):
    cluster_id: str
    size: int
    members: list[str]
    excerpt: str | None = None


class DedupPlan(Record):
    docs: int
    text_bytes: int
    ram_bytes_estimate: int
    disk_bytes_estimate: int
    seconds_estimate: float


class DedupStats(StageStats):
    duplicate_ids: int = 0
    exact_removed: int = 0
    url_removed: int = 0
    near_removed: int = 0
    lines_emptied: int = 0
    units_removed: int = 0
    unit_bytes_removed: int = 0
    clusters: int = 0  # clusters of 2+ documents
    docs_in_clusters: int | None = None  # documents in those clusters (kept ones included)
    cluster_sizes: dict[str, int] = Field(default_factory=dict)  # documents in a cluster -> clusters of that size
    largest_clusters: list[DuplicateCluster] = Field(default_factory=list)
    short_docs: int = 0
    empty_docs: int = 0
    cjk_docs: int = 0
    ngram: int | None = None
    num_perm: int | None = None
    bands: int | None = None
    rows: int | None = None
    threshold: float | None = None
    verify: str | None = None
    hash: str | None = None
    candidate_pairs: int = 0
    verified_pairs: int = 0
    indexed_docs: int = 0
    partitions: int = 0  # hash partitions of the groups and verify phases
    plan: DedupPlan | None = None
    timings: dict[str, float] = Field(default_factory=dict)  # phase -> seconds
    peak_rss_mb_after: dict[str, float] = Field(default_factory=dict)  # phase -> MB


class LanguageTokens(Record):
    documents: int
    bytes: int
    tokens: int
    bytes_per_token: float | None


class Histogram(Record):
    """Counts over power-of-two bins [edges[i], edges[i+1]) (plus [0, 1) when there are zeros),
    with the distribution's summary figures."""

    edges: list[int]
    counts: list[int]
    min: int
    p10: float
    median: float
    mean: float
    p90: float
    max: int

    @classmethod
    def of(cls, values) -> "Histogram | None":
        import math

        import numpy as np

        values = np.asarray(values)
        if values.size == 0:
            return None
        lo = int(math.floor(math.log2(max(int(values.min()), 1))))
        hi = int(math.ceil(math.log2(int(values.max()) + 1)))  # 2^hi > max: every value falls in a bin
        edges = [2**k for k in range(lo, max(hi, lo + 1) + 1)]
        if values.min() == 0:
            edges = [0] + edges
        counts, _ = np.histogram(values, bins=np.array(edges))
        return cls(edges=edges, counts=[int(c) for c in counts], min=int(values.min()),
                   p10=float(np.percentile(values, 10)), median=float(np.median(values)), mean=float(values.mean()),
                   p90=float(np.percentile(values, 90)), max=int(values.max()))


class TokenizeStats(StageStats):
    tokens_train: int = 0
    tokens_val: int = 0
    docs_train: int = 0
    docs_val: int = 0
    shards_train: int = 0
    shards_val: int = 0
    bytes_on_disk: int = 0
    vocab_size: int = 0
    dtype: str = ""
    rejected_files: list[str] = Field(default_factory=list)
    tokens_per_source: dict[str, int] = Field(default_factory=dict)
    documents_per_source: dict[str, int] = Field(default_factory=dict)
    bytes_per_token_per_language: dict[str, LanguageTokens] = Field(default_factory=dict)
    length_histogram: Histogram | None = None  # tokens per document, end-of-text included
    tokenizer_seconds: float = 0.0
    tokenizer_sample_docs: int | None = None  # documents the tokenizer was trained on (None: an existing tokenizer)
    tokenizer_sample_bytes: int | None = None  # their UTF-8 bytes (bounded by tokenize.train_sample_bytes)


class TokenizerStats(StageStats):
    """Tokenizer training: documents are read, not removed (docs_out == docs_in)."""

    sample_docs: int | None = None  # the seeded sample trained on (None: an existing tokenizer was used)
    sample_bytes: int | None = None


# What one unit of each stage returns (and its done record keeps).
UNIT_STATS: dict[str, type[StageStats]] = {"ingest": IngestSourceStats, "clean": CleanStats, "dedup": DedupStats,
                                           "tokenizer": TokenizerStats, "tokenize": TokenizeStats}


# ---------------------------------------------------------------- the manifest


class Stages(Record):
    ingest: IngestStats | None = None
    clean: CleanStats | None = None
    dedup: DedupStats | None = None
    tokenize: TokenizeStats | None = None

    def items(self) -> list[tuple[str, StageStats]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields if getattr(self, name) is not None]


class ResumeCounts(Record):
    units: int
    reused: int


class Manifest(Record):
    """`manifest.json`: what a corpus was built from, with what, and what each stage did."""

    file_name: ClassVar[str] = "manifest.json"
    format_version: int = MANIFEST_VERSION
    name: str
    description: str = ""
    created: str
    recipe_path: str | None = None
    recipe_hash: str
    recipe: dict[str, Any]  # the recipe as written (relative paths kept, so the folder can move)
    code_version: str
    versions: dict[str, str] = Field(default_factory=dict)
    command: str = ""
    stages: Stages = Field(default_factory=Stages)
    resume: dict[str, ResumeCounts] = Field(default_factory=dict)

    def conservation_errors(self) -> list[str]:
        return [f"{name}: {err}" for name, s in self.stages.items() if (err := s.conservation_error())]

    @classmethod
    def parse(cls, data: Any, origin: str = "<manifest>") -> "Manifest":
        return super().parse(migrate_manifest(data, origin), origin)


def migrate_manifest(data: Any, origin: str = "<manifest>") -> Any:
    """Bring an older manifest to MANIFEST_VERSION; refuse one from a newer opencorpus."""
    if not isinstance(data, dict):
        return data
    version = data.get("format_version", 1)
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise RecordError(f"{origin}: manifest format_version {version!r} was written by a newer opencorpus "
                          f"(this one reads up to {MANIFEST_VERSION}); upgrade opencorpus")
    if version == 1:  # 0.1: untyped stats; ingest per-source counts were `rejected_by_reason`
        data = json.loads(json.dumps(data))
        data["format_version"] = 2
        stages = data.get("stages", {})
        for src in (stages.get("ingest") or {}).get("sources", {}).values():
            src["rejected_by_filter"] = src.pop("rejected_by_reason", {})
        if "ingest" in stages:
            totals: dict[str, int] = {}
            for src in stages["ingest"].get("sources", {}).values():
                for k, v in src["rejected_by_filter"].items():
                    totals[k] = totals.get(k, 0) + v
            stages["ingest"].setdefault("rejected_by_filter", totals)
        if "clean" in stages:
            stages["clean"].setdefault("rejected_by_filter",
                                       {k: f["docs"] for k, f in stages["clean"].get("filters", {}).items() if f["docs"]})
        if "dedup" in stages:
            d = stages["dedup"]
            d.setdefault("rejected_by_filter", _dedup_filters(d))
        if "tokenize" in stages:  # 0.1 recorded power-of-two buckets without the summary figures
            stages["tokenize"]["length_histogram"] = None
    return data


def _dedup_filters(d: dict) -> dict[str, int]:
    counts = {"duplicate_id": d.get("duplicate_ids", 0), "exact_duplicate": d.get("exact_removed", 0),
              "duplicate_url": d.get("url_removed", 0), "near_duplicate": d.get("near_removed", 0),
              "duplicate_lines": d.get("lines_emptied", 0)}
    return {k: v for k, v in counts.items() if v}


# ---------------------------------------------------------------- resume state


class DoneRecord(Record):
    """`.opencorpus/done/<stage>/<unit>.json`: a finished unit, its key, outputs and stats."""

    stage: str
    unit: str
    key: str
    outputs: dict[str, dict[str, Any]]  # relative path -> {size, mtime_ns, sha256}
    stats: dict[str, Any]  # the stage's stats record, dumped (typed by the stage that reads it)

    def output_hashes(self) -> dict[str, str]:
        return {rel: o["sha256"] for rel, o in self.outputs.items()}


# ---------------------------------------------------------------- tokens/index.json


class SplitTotals(Record):
    documents: int = 0
    tokens: int = 0
    shards: int = 0


class TokenShard(Record):
    split: str
    file: str  # relative to tokens/
    input: str | None = None  # the dedup shard its documents come from (one encode unit each)
    source: str | None = None  # the recipe source of all its documents (None: several, or an older index)
    tokens: int
    documents: int
    bytes: int
    sha256: str


class TokenIndex(Record):
    """`tokens/index.json`: the token shards a trainer reads, and how to read them."""

    file_name: ClassVar[str] = "tokens/index.json"
    format: str = TOKEN_INDEX_FORMAT
    columns: dict[str, str] = Field(alias="schema")
    dtype: str
    vocab_size: int
    eot_id: int
    pad_id: int | None = None
    mask_id: int | None = None
    special_tokens: dict[str, str] = Field(default_factory=dict)
    tokenizer_sha256: str
    val_fraction: float
    seed: int
    shard_tokens: int
    totals: dict[str, SplitTotals]
    shards: list[TokenShard]
    packed_index: str | None = None

    @classmethod
    def parse(cls, data: Any, origin: str = "<token index>") -> "TokenIndex":
        fmt = data.get("format") if isinstance(data, dict) else None
        if fmt != TOKEN_INDEX_FORMAT:
            raise RecordError(f"{origin}: token index format {fmt!r} is not {TOKEN_INDEX_FORMAT!r}; "
                              "rebuild the corpus's tokens with this opencorpus (opencorpus run RECIPE)")
        return super().parse(data, origin)

    def shards_of(self, split: str) -> list[TokenShard]:
        return [s for s in self.shards if s.split == split]


# ---------------------------------------------------------------- what model/ writes


class CorpusRef(Record):
    """The corpus a run trained or was evaluated on, pinned by the hashes of its files."""

    data_dir: str | None = None
    manifest_sha256: str | None = None
    recipe_hash: str | None = None
    tokenizer_sha256: str | None = None
    index_sha256: str | None = None
    vocab_size: int | None = None
    eot_id: int | None = None
    train_tokens: int | None = None
    val_tokens: int | None = None
    shards: list[dict[str, Any]] = Field(default_factory=list)


class RunRecord(Record):
    """`RUN_DIR/run.json`: settings, corpus and status of a training run."""

    file_name: ClassVar[str] = "run.json"
    status: str  # running | finished
    preset: str
    config: dict[str, Any]  # model.train.TrainConfig, every field
    model: dict[str, Any]
    n_params: int
    corpus: CorpusRef
    world_size: int = 1
    device: str
    dtype: str
    torch: str
    started_at: str
    resumed_from_step: int | None = None
    final_step: int | None = None
    tokens_seen: int | None = None
    final_loss: float | None = None
    median_tokens_per_s: float | None = None
    checkpoint: str | None = None
    finished_at: str | None = None
    # The mixture the run consumed: `mix` weights, and input tokens drawn per source (rank 0's
    # batches; `ranks` ranks drew as many each)
    mixture: dict[str, Any] | None = None


class EvalRecord(Record):
    """`RUN_DIR/eval.json`: a run scored on its corpus's validation split."""

    file_name: ClassVar[str] = "eval.json"
    objective: str = "clm"
    val_loss: float
    val_perplexity: float
    val_bits_per_byte: float | None
    tokens_seen: int
    step: int
    val_tokens: int | None = None
    val_bytes: int | None = None
    val_tokens_available: int
    checkpoint: str
    n_params: int
    model: dict[str, Any]
    corpus: CorpusRef
    eval_seconds: float | None = None
    samples: list[dict[str, Any]] | None = None
    # masked LM (objective "mlm") figures
    val_mlm_loss: float | None = None
    val_mlm_perplexity: float | None = None
    val_mlm_accuracy: float | None = None
    val_masked_tokens: int | None = None
    mask_seed: int | None = None


class FinetuneRecord(Record):
    """`FT_DIR/eval.json`: a classifier fine-tuned from a run, against the same model from scratch."""

    file_name: ClassVar[str] = "eval.json"
    task: str
    task_file: str | None = None
    task_fingerprint: str
    pretrained_run: str
    pretrained_checkpoint: str
    objective: str
    corpus: CorpusRef
    base_model: str
    seeds: dict[str, int | None]
    labels: list[str]
    pairs: bool
    splits: dict[str, Any]
    settings: dict[str, Any]
    accuracy: float
    macro_f1: float
    validation_accuracy: float
    majority_class_accuracy: float
    pretrained: dict[str, Any]
    scratch_accuracy: float | None = None
    accuracy_gain: float | None = None
    scratch: dict[str, Any] | None = None
    pretraining_gain: dict[str, float] | None = None


class ModelEntry(Record):
    """One line of a corpus's `models.json`: a pretraining run or a fine-tuning result."""

    kind: str  # pretrain | finetune
    run: str
    run_dir: str
    recorded_at: str
    report: str | None = None
    # pretrain
    preset: str | None = None
    objective: str | None = None
    n_params: int | None = None
    step: int | None = None
    tokens_seen: int | None = None
    val_loss: float | None = None
    val_perplexity: float | None = None
    val_bits_per_byte: float | None = None
    val_tokens: int | None = None
    evaluated_on: str | None = None
    manifest_sha256: str | None = None
    mixture: dict[str, Any] | None = None  # RunRecord.mixture: source weights and tokens consumed per source
    ablation: str | None = None  # the ablation that trained the run (report: ablations/<name>/report.md)
    # finetune
    task: str | None = None
    base: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    # set when read: whether the run trained on the corpus build the card describes
    same_build: bool | None = None


class ModelList(Record):
    file_name: ClassVar[str] = "models.json"
    models: list[ModelEntry] = Field(default_factory=list)
