"""Main-text extraction quality of each extractor option, on real pages from ../shared/data/html.

    .venv/bin/python benchmarks/extraction_quality.py

* trafilatura-eval (990 pages with snippets that must be kept / dropped): a kept snippet found in the
  output is a true positive, a missing one a false negative, a dropped snippet found a false positive
  (the scoring of Trafilatura's own evaluation).
* Readability (130 cases with Mozilla Readability's expected main content): bag-of-words precision
  and recall of the output's words against the expected content's words, averaged over pages.

Prints precision, recall, F1 and docs/s (one core) per extractor.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "html"

from documents.extract import ExtractOptions, Extractor  # noqa: E402

BACKENDS = ["resiliparse", "resiliparse_blocks", "cascade", "trafilatura"]


def trafilatura_eval(extractor: Extractor) -> dict:
    d = json.loads((SHARED / "trafilatura-eval" / "evaldata.json").read_text())
    pages = [(v, gzip.open(SHARED / "trafilatura-eval" / "pages" / f"{v['file']}.gz").read()) for v in d.values()]
    tp = fp = fn = 0
    t0 = time.perf_counter()
    for v, html in pages:
        try:
            text = extractor.extract(html)
        except Exception:  # noqa: BLE001 - an extractor that fails on a page scores it as empty
            text = ""
        tp += sum(s in text for s in v["with"])
        fn += sum(s not in text for s in v["with"])
        fp += sum(s in text for s in v["without"])
    secs = time.perf_counter() - t0
    p, r = tp / (tp + fp), tp / (tp + fn)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), "docs_per_s": len(pages) / secs, "pages": len(pages)}


_WORD = re.compile(r"\w+", re.UNICODE)
_TAG = re.compile(r"<[^>]+>")


def _bag(text: str) -> Counter:
    return Counter(w.lower() for w in _WORD.findall(text))


def readability_eval(extractor: Extractor) -> dict:
    import html as htmlmod

    ps, rs = [], []
    cases = sorted(p for p in (SHARED / "readability").iterdir() if (p / "expected.html.gz").exists())
    t0 = time.perf_counter()
    for case in cases:
        src = gzip.open(case / "source.html.gz").read()
        expected = _bag(htmlmod.unescape(_TAG.sub(" ", gzip.open(case / "expected.html.gz").read().decode("utf-8", "replace"))))
        try:
            got = _bag(extractor.extract(src))
        except Exception:  # noqa: BLE001 - an extractor that fails on a page scores it as empty
            got = Counter()
        common = sum((got & expected).values())
        ps.append(common / sum(got.values()) if got else 0.0)
        rs.append(common / sum(expected.values()) if expected else 0.0)
    secs = time.perf_counter() - t0
    p, r = sum(ps) / len(ps), sum(rs) / len(rs)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "docs_per_s": len(cases) / secs, "pages": len(cases)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="*", default=BACKENDS)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"{SHARED} is absent: nothing to evaluate", file=sys.stderr)
        return 0
    results = {}
    print(f"{'extractor':20s} {'set':18s} {'P':>6s} {'R':>6s} {'F1':>6s} {'docs/s':>8s}")
    for b in args.backends:
        ex = Extractor(ExtractOptions(backend=b))
        for name, fn in (("trafilatura-eval", trafilatura_eval), ("readability", readability_eval)):
            r = fn(ex)
            results[f"{b}/{name}"] = r
            print(f"{b:20s} {name:18s} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} {r['docs_per_s']:8.1f}", flush=True)
    if "trafilatura/trafilatura-eval" in results:
        ref = results["trafilatura/trafilatura-eval"]["f1"]
        for b in args.backends:
            if b != "trafilatura":
                r = results[f"{b}/trafilatura-eval"]
                print(
                    f"{b}: F1 {r['f1'] - ref:+.3f} vs trafilatura (favor_precision), "
                    f"{r['docs_per_s'] / results['trafilatura/trafilatura-eval']['docs_per_s']:.1f}x its speed"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
