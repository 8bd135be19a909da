"""Scores of a trained run on text it never saw, item by item (what an ablation compares).

Held-out text: each item (a passage of whole lines, about 1,000 characters) is encoded with the run's corpus tokenizer, preceded by
<|endoftext|>, and scored in windows of the model's context; per item the summed loss in nats,
its token count and its UTF-8 bytes, so that loss per token and bits per byte can be averaged,
or bootstrapped, over items.

Multiple choice, scored the way lm-eval-harness scores small models: for each choice, the
summed log-likelihood of the choice's tokens after the context (" " + choice, the context
encoded alone first); `acc` picks the largest, `acc_norm` the largest per character of the
choice (len(choice), the delimiter not counted: lm-eval's acc_norm; bench/lm_eval_parity.py checks
both give the same picks).
Task files are JSON lines `{"context": str, "choices": [str, ...], "label": int}`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from model.data import EOT_TOKEN


class TaskFileError(ValueError):
    """A task file that cannot be scored; the message names the file and the line."""


def join_pieces(pieces, chars: int, sep: str) -> list[str]:
    """Consecutive pieces joined by `sep` into chunks of at least `chars` characters (the last may be shorter)."""
    out, cur, size = [], [], 0
    for piece in pieces:
        cur.append(piece)
        size += len(piece)
        if size >= chars:
            out.append(sep.join(cur))
            cur, size = [], 0
    if cur:
        out.append(sep.join(cur))
    return out


def read_passages(path: str | Path, chars: int = 1000) -> list[str]:
    """A text file as passages of whole lines, about `chars` characters each (blank lines dropped)."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    return join_pieces((line.rstrip() for line in lines if line.strip()), chars, "\n")


def read_task(path: str | Path) -> list[dict]:
    items = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            ok = (isinstance(item.get("context"), str) and isinstance(item.get("choices"), list) and len(item["choices"]) >= 2
                  and all(isinstance(c, str) and c for c in item["choices"]) and isinstance(item.get("label"), int)
                  and 0 <= item["label"] < len(item["choices"]))
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise TaskFileError(f"{path}:{n}: expected {{\"context\": str, \"choices\": [str, str, ...], \"label\": int}}")
        items.append(item)
    if not items:
        raise TaskFileError(f"{path}: no items")
    return items


@torch.no_grad()
def _summed_logprobs(model, sequences: list[list[int]], block: int, batch: int = 32) -> list[float]:
    """For each token sequence, the summed log p(ids[i] | ids[:i]) over i >= 1, scored in windows
    of `block` tokens (a long sequence's context resets every `block` tokens), windows batched."""
    windows = [(k, ids[s: s + block + 1]) for k, ids in enumerate(sequences) for s in range(0, max(len(ids) - 1, 0), block)]
    totals = [0.0] * len(sequences)
    windows.sort(key=lambda w: len(w[1]))  # similar lengths together: little padding
    for b in range(0, len(windows), batch):
        chunk = windows[b: b + batch]
        width = max(len(w) for _, w in chunk) - 1
        x = torch.zeros(len(chunk), width, dtype=torch.long)
        y = torch.full((len(chunk), width), -100, dtype=torch.long)
        for r, (_, w) in enumerate(chunk):
            x[r, : len(w) - 1] = torch.tensor(w[:-1])
            y[r, : len(w) - 1] = torch.tensor(w[1:])
        logits, _ = model(x)
        logp = F.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(2, y.clamp(min=0)[..., None])[..., 0] * (y != -100)
        for r, (k, _) in enumerate(chunk):
            totals[k] += float(picked[r].sum())
    return totals


def passage_scores(model, tokenizer, passages: list[str], block: int) -> list[dict]:
    """Per passage: nll (nats, summed), tokens (targets), bytes."""
    eot = tokenizer.token_to_id(EOT_TOKEN)
    seqs = [[eot] + e.ids for e in tokenizer.encode_batch(passages, add_special_tokens=False)]
    sums = _summed_logprobs(model, seqs, block)
    return [{"nll": -lp, "tokens": len(ids) - 1, "bytes": len(text.encode("utf-8"))}
            for lp, ids, text in zip(sums, seqs, passages)]


def choice_scores(model, tokenizer, items: list[dict], block: int) -> list[dict]:
    """Per item: the log-likelihood of each choice, and whether acc and acc_norm pick the label."""
    eot = tokenizer.token_to_id(EOT_TOKEN)
    seqs, spans = [], []
    for n, item in enumerate(items, 1):
        ctx = [eot] + tokenizer.encode(item["context"], add_special_tokens=False).ids
        for choice in item["choices"]:
            cont = tokenizer.encode(" " + choice.lstrip(), add_special_tokens=False).ids
            if len(cont) > block:  # its first tokens would be cut off, not scored (lm-eval keeps block + 1)
                raise TaskFileError(f"item {n}: the choice {choice[:40]!r} is {len(cont)} tokens, longer than the "
                                    f"model's context of {block}: shorten the choices or use a longer context")
            ids = (ctx + cont)[-(block + 1):]  # keep the end: the choice and as much context as fits
            seqs.append(ids)
            # acc_norm's length: characters of the choice, without the delimiter (lm-eval-harness's)
            spans.append((len(ids) - len(cont), max(len(choice.lstrip()), 1)))
    # the choice's log-likelihood = whole sequence minus its context part
    whole = _summed_logprobs(model, seqs, block)
    context = _summed_logprobs(model, [ids[:start] for ids, (start, _) in zip(seqs, spans)], block)
    rows, k = [], 0
    for item in items:
        n = len(item["choices"])
        lls = [whole[k + j] - context[k + j] for j in range(n)]
        nchars = [spans[k + j][1] for j in range(n)]
        k += n
        pick = max(range(n), key=lambda j: lls[j])
        pick_norm = max(range(n), key=lambda j: lls[j] / nchars[j])
        rows.append({"loglik": lls, "acc": float(pick == item["label"]), "acc_norm": float(pick_norm == item["label"]),
                     "chance": 1 / n})
    return rows


def summarize_passages(rows: list[dict]) -> dict:
    nll, tokens, nbytes = (sum(r[k] for r in rows) for k in ("nll", "tokens", "bytes"))
    return {"loss": nll / max(tokens, 1), "bits_per_byte": nll / math.log(2) / max(nbytes, 1), "items": len(rows)}


def summarize_choices(rows: list[dict]) -> dict:
    n = max(len(rows), 1)
    acc = sum(r["acc"] for r in rows) / n
    chance = sum(r["chance"] for r in rows) / n
    return {"acc": acc, "acc_norm": sum(r["acc_norm"] for r in rows) / n, "acc_above_chance": acc - chance,
            "chance": chance, "items": len(rows)}


def make_cloze_task(passages: list[str], n_items: int, n_choices: int = 4, context_chars: int = 400,
                    continuation_chars: int = 120, seed: int = 0) -> list[dict]:
    """A multiple-choice task from held-out text: the context is the start of a passage, the
    right choice its next `continuation_chars` characters, the others the same stretch of other
    passages (a HellaSwag-like cloze a small model can score above chance)."""
    import random

    rng = random.Random(seed)

    def cut(text: str, start: int, n: int) -> str:
        piece = " ".join(text[start: start + n].split())
        return piece.rsplit(" ", 1)[0] if " " in piece else piece

    usable = [" ".join(p.split()) for p in passages if len(" ".join(p.split())) >= context_chars + continuation_chars]
    if len(usable) < n_choices:
        raise TaskFileError(f"cloze task: {len(usable)} passages of {context_chars + continuation_chars}+ characters, "
                            f"need at least {n_choices}")
    items = []
    for k in rng.sample(range(len(usable)), min(n_items, len(usable))):
        text = usable[k]
        context = text[:context_chars].rsplit(" ", 1)[0]
        others = rng.sample([i for i in range(len(usable)) if i != k], n_choices - 1)
        choices = [cut(text, len(context) + 1, continuation_chars)] + [cut(usable[i], context_chars, continuation_chars) for i in others]
        order = list(range(n_choices))
        rng.shuffle(order)
        items.append({"context": context, "choices": [choices[i] for i in order], "label": order.index(0)})
    return items


def main(argv=None) -> int:
    """python -m model.heldout cloze TEXT_FILE OUT.jsonl [--items N] [--seed S]"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m model.heldout", description="build a cloze task from held-out text")
    p.add_argument("command", choices=["cloze"])
    p.add_argument("text")
    p.add_argument("out")
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    items = make_cloze_task(read_passages(args.text), args.items, seed=args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    print(f"{args.out}: {len(items)} items")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
