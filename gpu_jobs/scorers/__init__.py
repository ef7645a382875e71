"""Document scorers, one module per kind: ``hf`` (sequence classifiers), ``fasttext``, ``signals``
(the built-in formula), ``toxicity`` (alt-profanity-check). :func:`load_scorer` is the one way in; the kinds import only ``base``."""

from __future__ import annotations


def load_scorer(kind: str, path: str, max_length: int = 512, label: str | None = None, device: str = "auto"):
    """A scorer with ``score(texts, batch_tokens=, max_batch_size=) -> Scores``."""
    if kind == "signals":
        from gpu_jobs.scorers.signals import SignalScorer

        return SignalScorer(path)
    if kind == "toxicity":
        from gpu_jobs.scorers.toxicity import ToxicityScorer

        return ToxicityScorer(path)
    if kind == "fasttext":
        from gpu_jobs.scorers.fasttext import FastTextClassifier

        return FastTextClassifier(path, label)
    from gpu_jobs.scorers.hf import HFClassifier

    return HFClassifier(path, max_length=max_length, label=label, device=device)
