"""Language identification: py3langid's offline Naive Bayes model (97 languages, shipped in the wheel).

Chosen over lingua-language-detector on measured accuracy and speed on
../shared/corpora/multilingual/ (docs/cleaning.md, `bench/clean.py --langid`).
Scores are normalized probabilities in [0, 1].
"""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str, max_bytes: int = 600) -> tuple[str | None, float | None]:
    """(ISO 639-1 code, probability) of `text`'s first `max_bytes` UTF-8 bytes; (None, None) when there is nothing to judge.

    The model walks its automaton one byte at a time in Python (about 1 us a byte), so the
    sample is bounded in bytes: about 600 Latin letters or 200 Chinese characters."""
    sample = text[:max_bytes]
    if not sample.strip():
        return None, None
    data = sample.encode("utf-8")[:max_bytes]  # py3langid drops a character cut in half
    lang, score = _identifier().classify(data)
    return lang, float(score)
