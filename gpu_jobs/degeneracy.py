"""The rewrite gate: what makes a generated text unusable, measured per output."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Verdict:
    reason: str | None  # None = usable
    detail: str | None = None
    value: float | None = None


def dup_4gram_frac(words: list[str]) -> float:
    """Share of word 4-grams that repeat an earlier one: a generation stuck in a loop scores high."""
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def language(text: str) -> str:
    import langid

    return langid.classify(text)[0]


def judge(source: str, output: str, min_ratio: float, max_ratio: float, max_dup: float, check_language: bool) -> Verdict:
    out_words = output.split()
    if not out_words:
        return Verdict("rewrite.empty", None, 0.0)
    ratio = len(out_words) / max(1, len(source.split()))
    if ratio < min_ratio or ratio > max_ratio:
        return Verdict("rewrite.length_ratio", f"{len(out_words)} words from {len(source.split())}", ratio)
    dup = dup_4gram_frac([w.lower() for w in out_words])
    if dup > max_dup:
        return Verdict("rewrite.repetition", "repeated 4-grams", dup)
    if check_language:
        a, b = language(source), language(output)
        if a != b:
            return Verdict("rewrite.language_changed", f"{a} -> {b}", None)
    return Verdict(None)
