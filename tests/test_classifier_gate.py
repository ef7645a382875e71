"""quality_classifier's gate: it judges what a model does on crawl documents it did not train on
(distribution, agreement with the signals, hand labels), and says why in one line."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_jobs.validate_classifier import in_holdout, measure
from gpu_jobs.validate_classifier import run as validate
from quality.suites import CLASSIFIER_MIN_DOCUMENTS, classifier_accounting, classifier_reasons, classifier_verdict

MIN_AUC, MIN_AGREEMENT = 0.7, 0.6


def figures(scores, signals=None, hand=None, urls=None):
    scores = np.asarray(scores, float)
    labels = ["high" if s >= 0.5 else "low" for s in scores]
    return measure(
        scores, labels, None if signals is None else np.asarray(signals, float), hand or {}, urls or [""] * len(scores), 0.05, 0.3
    )


def test_the_demo_failure_is_refused_collapsed_low():
    """What #23 saw: every page scored 0.0003–0.036 by a classifier with AUC 1.0 on its own split."""
    rng = np.random.default_rng(0)
    scores = np.exp(rng.uniform(np.log(0.0003), np.log(0.036), 300))
    signals = rng.uniform(0.97, 0.999, 300)  # the sample crawl's signals: all high, no spread
    f = figures(scores, signals)
    reasons = classifier_reasons(f, MIN_AUC, MIN_AGREEMENT)
    assert reasons[0].startswith("scores collapsed low") and any(r.startswith("all one class (low") for r in reasons)
    assert f["agreement_auc"] is None  # the signals do not separate these pages: no agreement is measured
    line = classifier_verdict({**f, "measured_on": "300 of 300 documents of deduplicated@v0"}, MIN_AUC, MIN_AGREEMENT)
    assert line.startswith("refused: scores collapsed low") and "\n" not in line and "deduplicated@v0" in line


def test_collapsed_high_no_spread_and_one_class():
    assert classifier_reasons(figures(np.full(50, 0.97)), MIN_AUC, MIN_AGREEMENT)[0].startswith("scores collapsed high")
    flat = classifier_reasons(figures(np.linspace(0.40, 0.43, 50)), MIN_AUC, MIN_AGREEMENT)
    assert flat[0].startswith("no spread") and any(r.startswith("all one class (low") for r in flat)
    one = classifier_reasons(figures(np.linspace(0.55, 0.95, 50), signals=np.linspace(0, 1, 50)), MIN_AUC, MIN_AGREEMENT)
    assert one == ["all one class (high for all 50)"]


def test_no_hand_labels_and_no_signal_spread_is_no_evidence():
    """The sample crawl: every page a good article, the signals all above 0.97: nothing to agree with."""
    rng = np.random.default_rng(3)
    f = figures(rng.uniform(0, 1, 100), signals=rng.uniform(0.97, 0.99, 100))
    assert f["agreement_auc"] is None and f["labelled_auc"] is None
    [why] = classifier_reasons(f, MIN_AUC, MIN_AGREEMENT)
    assert why.startswith("no evidence of accuracy (no hand labels; builtin:signals-v1 does not separate these documents")


def test_agreement_with_the_signals_decides_without_hand_labels():
    rng = np.random.default_rng(1)
    signals = rng.uniform(0, 1, 200)
    agreeing = np.clip(signals + rng.normal(0, 0.15, 200), 0, 1)
    f = figures(agreeing, signals)
    assert f["agreement_auc"] > 0.9 and classifier_reasons(f, MIN_AUC, MIN_AGREEMENT) == []
    assert classifier_verdict({**f, "measured_on": "x"}, MIN_AUC, MIN_AGREEMENT).startswith("approved: p10/p50/p90")
    unrelated = rng.uniform(0, 1, 200)
    f = figures(unrelated, signals)
    assert f["agreement_auc"] < MIN_AGREEMENT
    assert any(r.startswith("agreement with builtin:signals-v1 ROC-AUC") for r in classifier_reasons(f, MIN_AUC, MIN_AGREEMENT))


def test_hand_labels_win_over_agreement():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)
    scores = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, 100), 0, 1)
    urls = [f"u{i}" for i in range(100)]
    anti_signals = 1 - scores  # the signals disagree; the hand labels, which decide, agree
    f = figures(scores, anti_signals, hand={u: int(v) for u, v in zip(urls, y)}, urls=urls)
    assert f["labelled_auc"] > 0.95 and f["labelled_documents"] == 100 and f["agreement_auc"] < 0.1
    assert classifier_reasons(f, MIN_AUC, MIN_AGREEMENT) == []
    f = figures(1 - scores, scores, hand={u: int(v) for u, v in zip(urls, y)}, urls=urls)
    assert classifier_reasons(f, MIN_AUC, MIN_AGREEMENT) == [f"hand-label ROC-AUC {f['labelled_auc']:.3f} < 0.7 on 100 labelled pages"]


def test_too_few_documents_is_no_evidence():
    for n in (0, 1, CLASSIFIER_MIN_DOCUMENTS - 1):
        f = figures(np.linspace(0, 1, n))
        assert classifier_reasons(f, MIN_AUC, MIN_AGREEMENT) == [
            f"too few crawl documents to measure it on ({n}, {CLASSIFIER_MIN_DOCUMENTS} needed)"
        ]
        row = classifier_accounting({**f, "measured_on": f"{n} documents"}, MIN_AUC, MIN_AGREEMENT)
        assert row["approved"] is False and row["verdict"].startswith("refused: too few crawl documents")


def test_the_held_out_fold_is_a_fifth_and_never_trained_on(tmp_path):
    from gpu_jobs.train_classifier import sample_documents

    ids = [f"doc-{i}" for i in range(2000)]
    held = [d for d in ids if in_holdout(d)]
    assert 300 < len(held) < 500
    pq.write_table(pa.table({"doc_id": ids, "text": [f"text of {d}" for d in ids]}), tmp_path / "d.parquet")
    drawn = sample_documents([str(tmp_path / "d.parquet")], 5000, 0)
    assert len(drawn) == 2000 - len(held) and not {f"text of {d}" for d in held} & set(drawn)


def test_a_crawl_too_small_to_train_on_reports_not_trained(tmp_path):
    """#21: `pseudo-labels need more documents: 1 in the crawl` failed the run; now the job says why."""
    from gpu_jobs.options import ClassifierTraining
    from gpu_jobs.train_classifier import run

    pq.write_table(pa.table({"doc_id": ["a"], "text": ["One short page about nothing much at all."]}), tmp_path / "d.parquet")
    reports = []

    class Log:
        info = warning = staticmethod(lambda m: None)

    out = run(
        {
            "options": ClassifierTraining(source="pseudo", model_kind="fasttext").model_dump(),
            "negative_files": [str(tmp_path / "d.parquet")],
            "output_dir": str(tmp_path / "m"),
        },
        Log,
        reports.append,
    )
    assert out == reports[0] and out["trained"] is False and out["reason"].startswith("pseudo-labels need more documents")


def test_validation_job_measures_the_shipped_model_on_a_crawl(tmp_path):
    """The job end to end on a small made-up crawl (no ../shared): figures and where they were measured."""
    from gpu_jobs.models import QUALITY_REF, shipped_path

    prose = (
        "The river rises in the northern hills and flows south for about two hundred kilometres before it reaches the sea. "
        "Its valley was settled early, and the towns along its banks grew around the mills that the water drove. "
    )
    junk = "Home | About | Contact | Login | Cart (0) | Shop now | Sale | Privacy | Terms | © 2024 "
    texts = [(prose * (2 + i % 4)) if i % 2 else (junk * (1 + i % 3)) for i in range(60)]
    pq.write_table(
        pa.table({"doc_id": [f"d{i}" for i in range(60)], "url": [f"http://x/{i}" for i in range(60)], "text": texts}),
        tmp_path / "d.parquet",
    )
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps({"url": f"http://x/{i}", "label": i % 2}) + "\n" for i in range(60)))
    reports = []

    class Log:
        info = warning = staticmethod(lambda m: None)

    f = validate(
        {
            "model_path": str(shipped_path(QUALITY_REF) / "model.ftz"),
            "kind": "fasttext",
            "files": [str(tmp_path / "d.parquet")],
            "table": "deduplicated@v3",
            "holdout_only": False,
            "documents": 1000,
            "labels_path": str(tmp_path / "labels.jsonl"),
            "min_spread": 0.05,
            "agreement_fraction": 0.3,
        },
        Log,
        reports.append,
    )
    assert f["documents"] == 60 and f["measured_on"].startswith("60 of 60 documents of deduplicated@v3")
    assert f["labelled_documents"] == 60 and f["labelled_auc"] > 0.9  # prose above navigation junk
    assert classifier_reasons(f, MIN_AUC, MIN_AGREEMENT) == []


@pytest.mark.integration
def test_the_gate_passes_an_approved_row_and_fails_a_refused_one_with_its_reason(tmp_path):
    from quality.gate import run_gate
    from quality.suites import classifier_gate

    ok = classifier_accounting({**figures(np.linspace(0.05, 0.95, 100), np.linspace(0, 1, 100)), "measured_on": "100 docs"}, 0.7, 0.6)
    res = run_gate(classifier_gate(0.7, 0.6), tmp_path, "ok", accounting=ok)
    assert res.success, res.failed
    bad = classifier_accounting({**figures(np.full(100, 0.01)), "measured_on": "100 docs"}, 0.7, 0.6)
    res = run_gate(classifier_gate(0.7, 0.6), tmp_path, "bad", accounting=bad)
    assert not res.success and "refused: scores collapsed low" in res.describe() and "\n" not in res.describe()
