"""Build the example quality scorer of recipes/web_quality/recipe.yaml from ../shared/corpora.

    .venv/bin/python recipes/web_quality/make_scorer.py       (or: make quality-model)

Positives: encyclopedic and book text, WikiText-103's validation articles (Wikipedia "good" and
"featured" articles) and the novel Botchan (Project Gutenberg, header and licence removed).
WikiText-103's *test* articles are not used: the recipe keeps them as an evaluation set to
decontaminate against. Negatives: Common Crawl pages (697 dolma pages of CC-MAIN-2019-30 and
10 cc_net "head" pages). The split is by document: 20 % of the articles, chapters-sized book
parts and pages (seeded) are held out whole and never trained on; the training documents are
cut into 200-word pieces. WikiText's tokenization (" @-@ ", "<unk>") is undone first, so the
model cannot learn the dataset's format instead of its register.

Writes data/quality/examples/{train,heldout}_{pos,neg}.jsonl, then runs
`opencorpus quality train` on them: the model data/quality/wiki_books_vs_cc.npz and its figures
data/quality/wiki_books_vs_cc.json. Nothing derived from the shared corpora is committed.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HELD_OUT = 0.2


def held_out(key: str, seed: int) -> bool:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < HELD_OUT


def detokenize_wikitext(line: str) -> str:
    # the copy is CSV-quoted per original line ('" text \n"'): a record's quotes may sit on two lines
    line = line.strip()
    if line.startswith('"'):
        line = line[1:]
    if line.endswith('"') and not line.endswith('""'):
        line = line[:-1]
    line = line.replace('""', '"').strip()
    line = line.replace("<unk>", "").replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    line = re.sub(r" ([.,;:!?%)\]'])", r"\1", line)
    line = re.sub(r"([(\[$]) ", r"\1", line)
    return re.sub(r" {2,}", " ", line).replace(" 's", "'s").strip()


def wikitext_articles(path: Path) -> list[tuple[str, str]]:
    """(title, text) per article: an article starts at a ' = Title = ' line."""
    articles, title, lines = [], None, []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = detokenize_wikitext(raw)
        m = re.fullmatch(r"= ([^=].*[^=]) =", line)
        if m:
            if title and lines:
                articles.append((title, "\n".join(lines)))
            title, lines = m.group(1), []
        elif line and not line.startswith("= "):
            lines.append(line)
        elif line.startswith("= = "):
            lines.append(line.strip("= ").strip())
    if title and lines:
        articles.append((title, "\n".join(lines)))
    return articles


def book_parts(path: Path, words: int = 2500) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    start = text.find("*** START OF")
    end = text.find("*** END OF")
    body = text[text.find("\n", start) + 1: end if end > 0 else None]
    ws = body.split()
    return [(f"botchan-{i // words}", " ".join(ws[i:i + words])) for i in range(0, len(ws), words)]


def cc_pages(path: Path) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["id"], r["text"]) for r in rows]


def write(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "corpora"))
    ap.add_argument("--out", default=str(REPO / "data" / "quality" / "wiki_books_vs_cc.npz"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    shared = Path(args.shared)
    if not (shared / "classic").is_dir():
        print(f"error: no shared corpora at {shared} (give --shared)", file=sys.stderr)
        return 2
    pos = wikitext_articles(shared / "classic" / "wikitext-103_valid.txt") + book_parts(shared / "classic" / "botchan_en.txt")
    neg = (cc_pages(shared / "web" / "dolma_CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz")
           + cc_pages(shared / "web" / "dolma_cc_en_head-0091.jsonl.gz"))
    ex = Path(args.out).parent / "examples"
    split = {}
    for name, docs in (("pos", pos), ("neg", neg)):
        train = [t for k, t in docs if not held_out(k, args.seed)]
        test = [t for k, t in docs if held_out(k, args.seed)]
        write(ex / f"train_{name}.jsonl", train)
        write(ex / f"heldout_{name}.jsonl", test)
        split[name] = (len(train), len(test))
    print(f"documents: positives {split['pos'][0]} train / {split['pos'][1]} held out, "
          f"negatives {split['neg'][0]} train / {split['neg'][1]} held out (held out whole, by document)")
    sys.path.insert(0, str(REPO))
    from flows.cli import main as cli

    return cli(["quality", "train", "--positive", str(ex / "train_pos.jsonl"), "--negative", str(ex / "train_neg.jsonl"),
                "--test-positive", str(ex / "heldout_pos.jsonl"), "--test-negative", str(ex / "heldout_neg.jsonl"),
                "--field", "text", "--chunk-words", "200", "--out", args.out,
                "--report", str(Path(args.out).with_suffix(".json"))])


if __name__ == "__main__":
    sys.exit(main())
