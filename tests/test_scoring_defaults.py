"""The default scorers beyond the signals: the toxicity score (alt-profanity-check) and the shipped
reference quality classifier, which must load from the repository alone (no ../shared)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_jobs.options import ScoringOptions

CLEAN = (
    "The committee met on Tuesday to review the budget for the new library. Members agreed that the reading room "
    "should open in the spring, and that the children's section needs more shelves and better lighting."
)
ABUSIVE = "shut up you stupid fucking idiot, you worthless piece of shit, nobody wants you here you moron"


def test_toxicity_is_a_default_column_and_scores_offensive_text_high():
    from gpu_jobs.scorers import load_scorer
    from storage.tables import QUALITY_SCORED

    opts = ScoringOptions()
    assert [(c.name, c.kind) for c in opts.scorers] == [("quality", "signals"), ("classifier", "hf"), ("toxicity", "toxicity")]
    assert {"toxicity", "toxicity_label"} <= set(QUALITY_SCORED.schema(opts).names)
    s = load_scorer("toxicity", "package:profanity_check").score([CLEAN, ABUSIVE, ""])
    assert s.score[1] > 0.9 > 0.2 > s.score[0] and s.label == ["clean", "toxic", "clean"]


def test_one_abusive_passage_is_not_diluted_by_a_long_page():
    from gpu_jobs.scorers.toxicity import ToxicityScorer

    long_clean = " ".join([CLEAN] * 40)
    mixed = " ".join([CLEAN] * 20 + [ABUSIVE] + [CLEAN] * 20)
    s = ToxicityScorer().score([long_clean, mixed]).score
    assert s[0] < 0.2 and s[1] > 0.9


def test_toxicity_column_through_the_score_job(tmp_path):
    """gpu_jobs.score writes a toxicity column usable by mixture and rewrite rules (a float per doc)."""
    from gpu_jobs.score import run

    docs = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"doc_id": ["a", "b"], "text": [CLEAN, ABUSIVE]}), docs)
    opts = ScoringOptions(scorers=[{"name": "toxicity", "kind": "toxicity", "model": "package:profanity_check"}])
    reports = []

    class Log:
        info = warning = staticmethod(lambda m: None)

    run(
        {
            "input_files": [str(docs)],
            "input_uri": "mem://docs",
            "input_version": 0,
            "output_uri": str(tmp_path / "out"),
            "partition": {"crawl_id": "c"},
            "scorers": [
                {
                    "name": "toxicity",
                    "kind": "toxicity",
                    "path": "package:profanity_check",
                    "label": None,
                    "max_length": 512,
                    "uri": "package:profanity_check",
                    "version": None,
                }
            ],
            "options": opts.model_dump(),
        },
        Log,
        reports.append,
    )
    rows = pa.concat_tables([pq.read_table(f) for f in reports[0]["files"]["part"]]).to_pylist()
    by = {r["doc_id"]: r for r in rows}
    assert by["a"]["toxicity"] < 0.5 <= by["b"]["toxicity"] and by["b"]["toxicity_label"] == "toxic"


def test_the_shipped_reference_classifier_loads_from_the_repository():
    from gpu_jobs.models import QUALITY_REF, shipped_path
    from gpu_jobs.scorers.fasttext import FastTextClassifier

    folder = shipped_path(f"shipped:{QUALITY_REF}")
    card = json.loads((folder / "sluice_model.json").read_text())
    assert card["kind"] == "fasttext" and card["version"] == QUALITY_REF and set(card["calibration"]) == {"a", "b"}
    assert (folder / "MODEL_CARD.md").read_text().count("pytorch/examples @") == 1
    assert (folder / card["file"]).stat().st_size < 5_000_000
    prose = (
        "The cathedral was begun in the twelfth century and completed nearly two hundred years later. Its nave, one of the "
        "longest in Europe, was rebuilt after a fire in 1194, and the west front keeps the sculpture of the earlier church. "
    ) * 3
    menu = "Home | News | Sport | Weather | Sign in | Subscribe | Cookie settings | Accept all | Share on Facebook | Tweet | " * 4
    s = FastTextClassifier(str(folder / card["file"])).score([prose, menu])
    assert s.score[0] > s.score[1] and np.all((s.score > 0) & (s.score < 1)) and s.label[0] == "high"


def test_the_renamed_scorers_key_is_refused_with_its_new_name():
    """`scoring.classifiers` held formulas and lists too: it is `scoring.scorers` now, and an old
    config says so instead of silently scoring with the defaults."""
    from gpu_jobs.options import ScoringOptions

    with pytest.raises(ValueError, match=r"scoring.classifiers is now scoring.scorers"):
        ScoringOptions.model_validate({"classifiers": [{"name": "quality", "kind": "signals", "model": "builtin:signals-v1"}]})
    assert [
        s.name
        for s in ScoringOptions.model_validate({"scorers": [{"name": "q", "kind": "signals", "model": "builtin:signals-v1"}]}).scorers
    ] == ["q"]
