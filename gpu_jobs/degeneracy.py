"""Two measures of a generated text that the rewrite gate (``gpu_jobs.fidelity``) uses: a loop's
repeated 4-grams, and the text's language."""

from __future__ import annotations


def dup_4gram_frac(words: list[str]) -> float:
    """Share of word 4-grams that repeat an earlier one: a generation stuck in a loop scores high."""
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def language(text: str) -> str:
    import langid

    return langid.classify(text)[0]
