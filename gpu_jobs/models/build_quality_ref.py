"""Build ``quality-ref``: the reference-trained fastText quality classifier Sluice ships (the GPT-3 /
LLaMA / DCLM recipe: clean reference text vs. random crawl pages).

    .venv/bin/python gpu_jobs/models/build_quality_ref.py --wikitext <pytorch/examples checkout>/word_language_model/data/wikitext-2 \
        --source-commit <that checkout's commit>

Positives: the Wikipedia Good and Featured articles of WikiText-2 (Merity et al., 2016; CC BY-SA 3.0),
as the ``valid.txt`` and ``test.txt`` files that the pytorch/examples repository carries. Each
article is cut at its section headings into documents; WikiText's tokenisation is undone (``@-@``,
spaces before punctuation) and its ``<unk>`` tokens are dropped, so that the model does not learn
the corpus's markup instead of its prose.

Negatives: real web pages of ../shared/data (trafilatura-eval pages, Readability sources, the HTML
responses of its WARC files), extracted by the pipeline's own extractor and identified as English, as
the crawl would hand them to ``quality_scored``: the 22 without a hand label, and the hand-labelled
pages of benchmarks/data/quality_labels.tsv in the training fold (:func:`in_training_fold`, half of
them by a hash of their id; their labels are not used for training: they are random crawl pages
here). The other fold is the evaluation set (benchmarks/scorer_quality.py): no page the model is
evaluated on trained or calibrated it.

Calibration: Platt scaling fitted on the training fold's hand labels (the only labels read here),
so that 0.5 means something on web pages; the ranking, and so every ROC-AUC, is the raw model's.

The output folder holds only what we made: the quantized model (``model.ftz``), the card the scorer
reads (``sluice_model.json``) and a model card (``MODEL_CARD.md``) naming the data, its source
repository and commit, its licence and the model's version. No third-party text is written there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

VERSION = "quality-ref-v1"
LABEL = "__label__high"
MAX_WORDS = 1000  # what the scorer reads of a document (as quality_classifier's fastText models)
# Smallest document kept on either side: a heading alone or a stub says nothing about prose.
MIN_WORDS = 50

_HEADING = re.compile(r"^ ?(=+) (.*?) \1 ?$")


def detokenize(line: str) -> str:
    """WikiText's tokenised line as ordinary text, its ``<unk>`` tokens dropped."""
    s = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace("<unk>", " ")
    s = re.sub(r" +", " ", s).strip()
    s = re.sub(r" ([.,;:!?%)\]}])", r"\1", s)
    s = re.sub(r"([(\[{$]) ", r"\1", s)
    s = re.sub(r" (['’](?:s|re|ve|ll|d|m|t)\b|n't\b)", r"\1", s)
    s = re.sub(r'" (.*?) "', r'"\1"', s)
    return s


def wikitext_documents(folder: Path) -> list[str]:
    """One document per article section (the article's lead, then each ``= = heading = =`` part)."""
    docs: list[str] = []
    cur: list[str] = []

    def flush() -> None:
        text = "\n".join(cur).strip()
        if len(text.split()) >= MIN_WORDS:
            docs.append(text)
        cur.clear()

    for name in ("valid.txt", "test.txt"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            m = _HEADING.match(line)
            if m:
                flush()
                if len(m.group(1)) > 1:  # a section: its heading leads the document, as on a page
                    cur.append(detokenize(m.group(2)))
                continue
            if line.strip():
                cur.append(detokenize(line))
    flush()
    return docs


def in_training_fold(page_id: str) -> bool:
    """Half of the hand-labelled pages, fixed by a hash of their id, may serve as (unlabelled)
    negatives; the other half is the evaluation fold that benchmarks/scorer_quality.py reports
    this model on. ../shared/data has too few unlabelled English pages (22) to train on alone."""
    return hashlib.sha256(page_id.encode()).digest()[0] % 2 == 0


def calibration(raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Platt scaling: σ(a·logit(p) + b) fitted to labels (logistic regression on the logit)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    p = np.clip(raw, 1e-6, 1 - 1e-6)
    lr = LogisticRegression(C=1e6).fit(np.log(p / (1 - p)).reshape(-1, 1), y)
    return {"a": float(lr.coef_[0][0]), "b": float(lr.intercept_[0])}


def crawl_negatives(labelled: set[str]) -> tuple[list[str], int, int]:
    """Extracted English texts of the real pages in ../shared/data: the unlabelled ones and the
    labelled ones of the training fold (their labels are not used: they are random crawl pages
    here). Returns the texts and how many of each kind."""
    from scorer_quality import english_documents

    docs = english_documents()
    crawl_negatives.docs = docs  # the calibration reads the training fold's labelled pages again
    unlabelled = [k for k in sorted(docs) if k not in labelled]
    fold = [k for k in sorted(docs) if k in labelled and in_training_fold(k)]
    keep = [docs[k] for k in unlabelled + fold if len(docs[k].split()) >= MIN_WORDS]
    return keep, len(unlabelled), len(fold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wikitext", required=True, type=Path, help="folder with WikiText-2's valid.txt and test.txt")
    ap.add_argument("--source-commit", required=True, help="the pytorch/examples commit those files came from")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / VERSION)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import fasttext
    from scorer_quality import read_labels

    from gpu_jobs.scorers.fasttext import fasttext_line
    from gpu_jobs.train_classifier import roc_auc

    labelled = set(read_labels())
    pos = wikitext_documents(args.wikitext)
    neg, n_unlabelled, n_fold = crawl_negatives(labelled)
    rng = random.Random(args.seed)
    rng.shuffle(pos)
    rng.shuffle(neg)
    n = min(len(pos), len(neg))
    pos, neg = pos[:n], neg[:n]  # balanced classes
    print(
        f"{n} positives (WikiText-2 sections), {n} negatives (real pages: {n_unlabelled} unlabelled, {n_fold} of the "
        f"{len(labelled)} hand-labelled pages in the training fold, labels unused)"
    )

    # A 10% split only to see that training converged; the model's real test is on the crawl and
    # the hand labels (benchmarks/scorer_quality.py, quality_classifier's gate).
    examples = [(1, t) for t in pos] + [(0, t) for t in neg]
    rng.shuffle(examples)
    k = len(examples) // 10
    test, train = examples[:k], examples[k:]
    params = dict(dim=16, epoch=25, lr=0.2, wordNgrams=2, bucket=1 << 18, minCount=2, seed=args.seed, thread=1, verbose=0)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text("".join(("__label__high " if y else "__label__low ") + fasttext_line(t, True, MAX_WORDS) + "\n" for y, t in train))
        model = fasttext.train_supervised(input=str(path), **params)
        # Product quantization with a vocabulary cut: a few hundred kilobytes instead of ~17 MB.
        model.quantize(input=str(path), qnorm=True, retrain=True, cutoff=50000, epoch=params["epoch"], lr=params["lr"], thread=1, verbose=0)
        model.save_model(str(args.out / "model.ftz"))
    card = {"kind": "fasttext", "file": "model.ftz", "label": LABEL, "lowercase": True, "max_words": MAX_WORDS, "version": VERSION}
    (args.out / "sluice_model.json").write_text(json.dumps(card, indent=1) + "\n")

    import numpy as np

    from gpu_jobs.scorers.fasttext import FastTextClassifier

    # Calibration on the training fold's hand labels (the evaluation fold is never read here): the
    # model ranks pages by how much they read like Wikipedia, which puts most web pages, good ones
    # too, near 0; Platt scaling keeps that ranking and moves 0.5 to where the labels put it.
    labels = read_labels()
    fold = [k for k in sorted(crawl_negatives.docs) if k in labels and in_training_fold(k)]
    raw = FastTextClassifier(str(args.out / "model.ftz")).score([crawl_negatives.docs[k] for k in fold]).score
    card["calibration"] = calibration(raw, np.array([labels[k] for k in fold]))
    (args.out / "sluice_model.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"calibration on {len(fold)} training-fold hand labels: {card['calibration']}")
    scorer = FastTextClassifier(str(args.out / "model.ftz"))
    split_auc = roc_auc(np.array([y for y, _ in test]), scorer.score([t for _, t in test]).score)
    digest = hashlib.sha256((args.out / "model.ftz").read_bytes()).hexdigest()
    size = (args.out / "model.ftz").stat().st_size
    print(f"written {args.out / 'model.ftz'} ({size:,} bytes, sha256 {digest[:16]}); AUC on a 10% split of its own task {split_auc:.3f}")
    (args.out / "MODEL_CARD.md").write_text(f"""# {VERSION}: reference-trained fastText quality classifier

Built by `gpu_jobs/models/build_quality_ref.py` (Sluice's own code); this folder holds only our trained
weights and these cards, no third-party text.

- **What it scores**: the probability that a document reads like curated encyclopedic prose rather
  than a random web page (`__label__high`), from its first {MAX_WORDS} lower-cased words.
- **Model**: fastText supervised, {params["dim"]} dimensions, word bigrams, {params["epoch"]} epochs, lr {params["lr"]},
  {params["bucket"]:,} hash buckets, product-quantized (`model.ftz`, {size:,} bytes, sha256 `{digest}`).
- **Positives** ({n} documents): the sections of WikiText-2's validation and test articles (Wikipedia Good
  and Featured articles; Merity et al. 2016), from the repository pytorch/examples @ {args.source_commit},
  `word_language_model/data/wikitext-2/{{valid,test}}.txt`. Licence of the text: CC BY-SA 3.0 (Wikipedia).
  WikiText's tokenisation undone, `<unk>` tokens dropped.
- **Negatives** ({n} documents): real web pages of the team's shared data (trafilatura's evaluation pages,
  Apache-2.0, adbar/trafilatura @ e90b0ef; mozilla/readability @ ab4027a test pages, Apache-2.0; the HTML
  responses of the shared WARC files), extracted by Sluice's extractor, English only: the {n_unlabelled} pages without a
  hand label, and the {n_fold} hand-labelled pages of `benchmarks/data/quality_labels.tsv` whose id falls in the training
  fold (sha256(id)[0] even; their labels are not used). The other fold is where the model is evaluated
  (`benchmarks/scorer_quality.py` reports it on that fold only).
- **Calibration**: Platt scaling σ(a·logit(p) + b) of the raw probability, a = {card["calibration"]["a"]:.4f}, b = {card["calibration"]["b"]:.4f},
  fitted on the hand labels of the training fold's {len(fold)} pages (the only labels it read); the ranking is the raw model's.
- **Sanity split**: ROC-AUC {split_auc:.3f} on a 10% split of its own training task (not a validation: see below).
- **Validation**: on the hand labels by `benchmarks/scorer_quality.py`, and on every crawl it scores by
  `quality_classifier`'s gate (agreement with the rule-based signals on the crawl, and its score
  distribution there).
- **Version**: `{VERSION}`. A rebuild with other data or settings is a new version.
""")


if __name__ == "__main__":
    main()
