"""GPU program: measure a quality classifier on the crawl it is about to score, on documents it did
not train on, for `quality_classifier`'s gate (quality/suites.py judges the figures).

A classifier's held-out split of its own training task says nothing about the crawl: a model that
tells a reference corpus from crawl pages gets ROC-AUC 1.0 there and may still call every page of
the crawl junk. So it is measured here on the crawl's documents of the held-out fold
(:func:`in_holdout`, a hash of ``doc_id``: per-crawl training never draws from it):

* its score distribution (p10/p50/p90, the share labelled high): collapse and spread;
* hand labels when given (JSONL of ``{"url", "label"}`` matched to the crawl's documents by URL):
  ROC-AUC against them;
* otherwise agreement with an independent signal, the rule-based ``builtin:signals-v1`` score:
  ROC-AUC of the classifier at telling the signals' top 30% from their bottom 30% — where the
  signals separate the documents at all (their own p90 - p10 ≥ the gate's minimum spread).

Parameters (JSON): model_path, kind, label, max_length, files (the pinned `deduplicated` files),
table (``deduplicated@v<k>``), holdout_only (per-crawl models: only the held-out fold; a shipped
model never saw the crawl), documents (a cap, sampled uniformly by a seeded hash), labels_path,
min_spread, agreement_fraction, device. Reports the figures and the documents they were measured on.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from gpu_jobs.options import SIGNALS_MODEL
from gpu_jobs.runtime import job_session

HOLDOUT_FOLDS = 5  # one fold in five is held out of per-crawl training


def in_holdout(doc_id: str) -> bool:
    """The held-out fold: fixed by the document's id, so training and validation agree on it."""
    return hashlib.sha256(doc_id.encode()).digest()[0] % HOLDOUT_FOLDS == 0


def crawl_sample(files: list[str], holdout_only: bool, limit: int) -> tuple[list[str], list[str], list[str], int]:
    """(doc_ids, urls, texts) of at most ``limit`` documents (those with the smallest hash of
    their id: a uniform sample that does not depend on file order), and how many were eligible."""
    import heapq

    import pyarrow.parquet as pq

    eligible = 0

    def rows():
        nonlocal eligible
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(columns=["doc_id", "url", "text"], batch_size=4096):
                for d, u, t in zip(*(batch.column(c).to_pylist() for c in ("doc_id", "url", "text"))):
                    if t and (not holdout_only or in_holdout(d)):
                        eligible += 1
                        yield hashlib.sha256(b"v" + d.encode()).hexdigest(), d, u, t

    # a bounded heap: memory is `limit` documents, not the crawl
    picked = heapq.nsmallest(limit, rows())
    return [r[1] for r in picked], [r[2] for r in picked], [r[3] for r in picked], eligible


def signal_scores(scorer, files: list[str], ids: list[str], texts: list[str]) -> np.ndarray:
    """The signals score of the sampled documents, read from the filter's columns where the files
    carry them (the pipeline's tables do: nothing is measured again), else measured from the text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    columns = list(scorer.columns or ())
    if not columns or any(not set(columns) <= set(pq.read_schema(f).names) for f in files):
        return scorer.score(texts).score
    wanted = pa.array(ids)
    parts = []
    for f in files:
        t = pq.read_table(f, columns=["doc_id", "text", *columns])
        parts.append(t.filter(pc.is_in(t.column("doc_id"), value_set=wanted)))
    table = pa.concat_tables(parts)
    # the sample's order: ids are unique within a crawl's table
    order = pc.index_in(wanted, value_set=table.column("doc_id"))
    return scorer.score_table(table.take(order)).score


def measure(
    scores: np.ndarray, labels: list, signals: np.ndarray | None, hand: dict[str, int], urls: list[str], min_spread: float, fraction: float
) -> dict:
    """The figures of one classifier on one crawl sample (pure: tested with made-up scores)."""
    from gpu_jobs.train_classifier import roc_auc

    n = len(scores)
    out: dict = {
        "documents": n,
        "p10": None,
        "p50": None,
        "p90": None,
        "high_share": None,
        "agreement_auc": None,
        "agreement_with": SIGNALS_MODEL,
        "signals_p10": None,
        "signals_p90": None,
        "labelled_auc": None,
        "labelled_documents": 0,
    }
    if not n:
        return out
    p10, p50, p90 = (float(v) for v in np.quantile(scores, [0.1, 0.5, 0.9]))
    out.update(
        p10=p10,
        p50=p50,
        p90=p90,
        high_share=float(np.mean([lab == "high" or (lab is None and s >= 0.5) for lab, s in zip(labels, scores)])),
    )
    if signals is not None and n:
        s10, s90 = (float(v) for v in np.quantile(signals, [0.1, 0.9]))
        out.update(signals_p10=s10, signals_p90=s90)
        k = int(n * fraction)
        if s90 - s10 >= min_spread and k >= 5:
            order = np.argsort(signals, kind="stable")
            idx = np.concatenate([order[:k], order[-k:]])
            out["agreement_auc"] = roc_auc(np.array([0] * k + [1] * k), scores[idx])
    matched = [(hand[u], s) for u, s in zip(urls, scores) if u in hand]
    out["labelled_documents"] = len(matched)
    if matched and 0 < sum(y for y, _ in matched) < len(matched):
        out["labelled_auc"] = roc_auc(np.array([y for y, _ in matched]), np.array([s for _, s in matched]))
    return out


def read_hand_labels(path: str | None) -> dict[str, int]:
    if not path:
        return {}
    out = {}
    with open(path) as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                out[r["url"]] = int(r["label"])
    return out


def run(params: dict, log, report) -> dict:
    from gpu_jobs.scorers import load_scorer
    from gpu_jobs.scorers.signals import SignalScorer

    t0 = time.time()
    ids, urls, texts, eligible = crawl_sample(params["files"], params["holdout_only"], params["documents"])
    scorer = load_scorer(
        params["kind"], params["model_path"], params.get("max_length", 256), params.get("label"), params.get("device", "auto")
    )
    r = scorer.score(texts) if texts else None
    scores = r.score if r is not None else np.zeros(0)
    signals = signal_scores(SignalScorer(SIGNALS_MODEL), params["files"], ids, texts) if texts else None
    figures = measure(
        scores,
        r.label if r is not None else [],
        signals,
        read_hand_labels(params.get("labels_path")),
        urls,
        params["min_spread"],
        params["agreement_fraction"],
    )
    fold = (
        "the held-out fold (sha256(doc_id) mod 5 = 0, never trained on)"
        if params["holdout_only"]
        else "all documents (the model never trained on this crawl)"
    )
    figures["measured_on"] = f"{len(ids)} of {eligible} documents of {params['table']}, {fold}"
    figures["seconds"] = time.time() - t0
    log.info(
        f"measured on {figures['measured_on']}: p10/p50/p90 "
        + "/".join("-" if figures[k] is None else f"{figures[k]:.3f}" for k in ("p10", "p50", "p90"))
    )
    report(figures)
    return figures


def main() -> None:
    with job_session("validate_classifier") as (params, log, report):
        run(params, log, report)


if __name__ == "__main__":
    main()
