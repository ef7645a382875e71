"""Near-duplicate quality of the dedup job with its default parameters (14 × 8 LSH over 5-word
shingles), on sets where the truth is known.

1. ``../shared/data/neardup`` (news articles with planted near-duplicate pairs): precision and
   recall of the pairs found.
2. Self-made pairs with a known Jaccard: the main text of each real trafilatura-eval page
   (Resiliparse extraction) and one edited copy of it. Edit rates are spread so that the pairs'
   exact 5-gram Jaccard covers 0.3–1.0. Printed, with verification on (default) and off: recall by
   Jaccard band, recall above 0.8, and how many reported duplicate pairs (removed document → kept
   document) have an exact Jaccard below 0.6: LSH alone lets such pairs through on band
   collisions; exact-Jaccard verification should stop them.

    .venv/bin/python benchmarks/dedup_quality.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RATES = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.13, 0.17, 0.22)
BANDS = [(0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)]


def edit(text: str, rate: float, rng: random.Random) -> str:
    """Each word replaced, dropped or followed by an inserted word with probability ``rate``."""
    fillers = ["really", "also", "indeed", "quite", "then", "now", "still", "perhaps", "very", "just"]
    out = []
    for w in text.split(" "):
        r = rng.random()
        if r < rate / 3:
            continue
        if r < 2 * rate / 3:
            out.append(rng.choice(fillers))
            continue
        out.append(w)
        if r < rate:
            out.append(rng.choice(fillers))
    return " ".join(out)


def run_job(spark, ids: list[str], texts: list[str], verify: bool, work: Path) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    from documents.minhash import DedupOptions
    from spark_jobs.dedup_job import deduplicate_files, documents_table

    work.mkdir(parents=True, exist_ok=True)
    pq.write_table(documents_table(ids, texts), work / "docs.parquet")
    _, out = deduplicate_files(spark, [str(work / "docs.parquet")], DedupOptions(verify=verify), str(work / "out"))
    return [(r["doc_id"], r["related_doc_id"]) for r in out["rejected"].to_pylist()]


def shared_sets(spark, work: Path) -> list[dict]:
    rows = []
    for name in ("articles_100", "articles_1000"):
        train = SHARED / "neardup" / f"{name}.train"
        if not train.exists():
            continue
        lines = [line.rstrip("\n").split(" ", 1) for line in train.open()]
        truth = {tuple(sorted(line.split())) for line in (SHARED / "neardup" / f"{name}.truth").open()}
        found = {tuple(sorted(p)) for p in run_job(spark, [i for i, _ in lines], [t for _, t in lines], True, work / name)}
        tp = len(found & truth)
        rows.append(
            {
                "set": name,
                "docs": len(lines),
                "truth_pairs": len(truth),
                "found": len(found),
                "precision": tp / len(found) if found else 1.0,
                "recall": tp / len(truth),
            }
        )
    return rows


def self_made(spark, work: Path, min_words: int) -> dict:
    from resiliparse.extract.html2text import extract_plain_text

    from documents.minhash import exact_jaccard

    pages = sorted((SHARED / "html" / "trafilatura-eval" / "pages").glob("*.html.gz"))
    bases = []
    for p in pages:
        html = gzip.open(p).read().decode("utf-8", errors="replace")
        text = " ".join(extract_plain_text(html, main_content=True).split())
        if len(text.split()) >= min_words:
            bases.append(text)
    rng = random.Random(0)
    ids, texts, pairs = [], [], {}
    for i, base in enumerate(bases):
        rate = RATES[i % len(RATES)]
        variant = edit(base, rate, rng)
        a, b = f"base{i:04d}", f"copy{i:04d}"
        ids += [a, b]
        texts += [base, variant]
        pairs[b] = (a, exact_jaccard(base, variant, 5))
    text_of = dict(zip(ids, texts))
    result = {"pairs": len(pairs)}
    for verify in (True, False):
        reported = run_job(spark, ids, texts, verify, work / f"selfmade-{verify}")
        removed_to = dict(reported)
        by_band = []
        for lo, hi in BANDS:
            in_band = [c for c, (_, j) in pairs.items() if lo <= j < hi]
            found = [c for c in in_band if _linked(c, pairs[c][0], removed_to)]
            by_band.append({"band": f"{lo:.1f}-{min(hi, 1.0):.1f}", "pairs": len(in_band), "found": len(found)})
        high = [c for c, (_, j) in pairs.items() if j > 0.8]
        true_j = [exact_jaccard(text_of[r], text_of[k], 5) for r, k in reported]
        result["verify" if verify else "lsh_only"] = {
            "reported_pairs": len(reported),
            "reported_below_0.6": sum(1 for j in true_j if j < 0.6),
            "reported_below_0.7": sum(1 for j in true_j if j < 0.7),
            "recall_above_0.8": sum(1 for c in high if _linked(c, pairs[c][0], removed_to)) / max(len(high), 1),
            "by_band": by_band,
        }
    return result


def _linked(a: str, b: str, removed_to: dict[str, str]) -> bool:
    """Whether a and b ended in one cluster (one removed in favour of the other or of a third)."""
    return removed_to.get(a, a) == removed_to.get(b, b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-words", type=int, default=100)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"{SHARED} is absent: nothing to measure", file=sys.stderr)
        return 0
    from spark_jobs.session import SparkSettings, build_spark

    spark = build_spark(SparkSettings(master="local[2]", shuffle_partitions=4, show_progress=False))
    work = Path(tempfile.mkdtemp(prefix="sluice-dedup-quality-"))
    shared = shared_sets(spark, work)
    selfm = self_made(spark, work, args.min_words)
    spark.stop()

    print("\nplanted near-duplicates (../shared/data/neardup), default parameters, verification on")
    print(f"{'set':16s} {'docs':>6s} {'truth':>6s} {'found':>6s} {'precision':>10s} {'recall':>7s}")
    for r in shared:
        print(f"{r['set']:16s} {r['docs']:6d} {r['truth_pairs']:6d} {r['found']:6d} {r['precision']:10.3f} {r['recall']:7.3f}")
    print(f"\nself-made pairs from trafilatura-eval main texts: {selfm['pairs']} (page, edited copy) pairs")
    print(f"{'Jaccard band':>13s} {'pairs':>6s} {'found (verify)':>15s} {'found (LSH only)':>17s}")
    for bv, bl in zip(selfm["verify"]["by_band"], selfm["lsh_only"]["by_band"]):
        print(f"{bv['band']:>13s} {bv['pairs']:6d} {bv['found']:15d} {bl['found']:17d}")
    for mode in ("verify", "lsh_only"):
        m = selfm[mode]
        print(
            f"{mode:9s}: recall above 0.8 = {m['recall_above_0.8']:.3f}; reported pairs {m['reported_pairs']}, "
            f"of which exact Jaccard < 0.6: {m['reported_below_0.6']}, < 0.7: {m['reported_below_0.7']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"shared": shared, "self_made": selfm}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
