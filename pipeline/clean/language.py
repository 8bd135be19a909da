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


def identify(text: str, max_chars: int = 2000) -> tuple[str | None, float | None]:
    """(ISO 639-1 code, probability) of `text`'s first `max_chars` characters; (None, None) when there is nothing to judge."""
    sample = text[:max_chars]
    if not sample.strip():
        return None, None
    lang, score = _identifier().classify(sample)
    return lang, float(score)
