#!/usr/bin/env python3
"""Per-document keep/drop decisions of datatrove's quality filters (run with the bench venv's python).

    ../benchenv-clean/bin/python bench/clean_datatrove_decisions.py CORPUS.jsonl OUT.jsonl

Writes one JSON line per input document: {"id", "gopher_repetition", "gopher_quality", "c4",
"fineweb", "chain"}, each null when kept or datatrove's reason string when dropped. Each filter
judges the original text on its own; "chain" runs them in FineWeb's order on one document
(C4 rewrites the text it keeps, as in a datatrove pipeline). Default thresholds, language=english.
Used by bench/clean.py --agreement; not part of the project's runtime.
"""
import json
import sys

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter


def decide(f, doc):
    r = f.filter(doc)
    if r is True or r == (True,):
        return None
    if isinstance(r, tuple):
        return r[1] if len(r) > 1 else "dropped"
    return None if r else "dropped"


def main():
    src, dst = sys.argv[1], sys.argv[2]
    filters = {
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4": C4QualityFilter(),
        "fineweb": FineWebQualityFilter(),
    }
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line in f:
            rec = json.loads(line)
            row = {"id": rec["id"]}
            for name, flt in filters.items():
                row[name] = decide(flt, Document(text=rec["text"], id=rec["id"]))
            doc = Document(text=rec["text"], id=rec["id"])
            row["chain"] = None
            for name, flt in filters.items():
                r = decide(flt, doc)
                if r is not None:
                    row["chain"] = f"{name}:{r}"
                    break
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
