"""Spark job: decontaminated documents (with their scores) → the rows of one training mixture.

1. Each document goes to the first source whose rule it meets; documents of no source are left out.
2. Tokens are counted with the mixture's Hugging Face tokenizer over Arrow batches (``encode_batch``,
   Rust, no special tokens); the tokenized rows go to scratch Parquet, read by every later step.
3. The tokens each source has give its epochs for its target (``documents.mixture.plan``); an
   infeasible mixture stops here with the report of what cannot be met, before anything is written.
4. A source repeated e epochs contributes every document floor(e) times, plus the documents whose
   keyed hash ``xxhash64(doc_id, seed)`` is smallest until the fractional target is reached. The cut
   is found without a global sort: token sums per (source, top 16 bits of the hash) are collected,
   the bucket where the target is crossed is found, and only that bucket is ordered. The rows do not
   depend on the partitioning or the number of cores, and each source lands within one document of
   its target.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa

from documents.mixture import MixtureSpec, plan, tokenizer_file
from storage.tables import MIXED_COLUMNS


class MixtureInfeasible(ValueError):
    pass


def _count_tokens(batches: Iterator[pa.RecordBatch], tokenizer_path: str) -> Iterator[pa.RecordBatch]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_path)
    tok.no_truncation()
    for b in batches:
        texts = [t or "" for t in b.column("text").to_pylist()]
        counts = [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
        yield b.append_column("token_count", pa.array(counts, pa.int64()))


@dataclass
class MixStats:
    available: dict[str, int] = field(default_factory=dict)  # tokens by source
    documents: dict[str, int] = field(default_factory=dict)  # documents by source (once)
    targets: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, float] = field(default_factory=dict)
    unassigned: int = 0  # documents of no source


def build_mixture(spark, docs, spec: MixtureSpec, scratch: str, out_dir: str) -> MixStats:
    """``docs``: a DataFrame with doc_id, source (the text layer), source_doc_id, crawl_id, url, text
    and the score columns the rules use. Writes the mixture's rows as Parquet into ``out_dir``."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    stats = MixStats()
    bucket = F.lit(None).cast("string")
    for s in reversed(spec.sources):  # the first matching rule wins
        bucket = F.when(F.expr(s.where), F.lit(s.name)).otherwise(bucket)
    assigned = docs.withColumn("bucket", bucket)
    stats.unassigned = assigned.where(F.col("bucket").isNull()).count()
    keep = ["doc_id", "source", "source_doc_id", "crawl_id", "url", "text", "bucket"]
    assigned = assigned.where(F.col("bucket").isNotNull()).select(*keep)
    schema = to_arrow_schema(assigned.schema).append(pa.field("token_count", pa.int64()))
    tokenized_dir = f"{scratch}/tokenized"
    assigned.mapInArrow(partial(_count_tokens, tokenizer_path=str(tokenizer_file(spec.tokenizer))), from_arrow_schema(schema)).withColumn(
        "key", F.xxhash64(F.col("doc_id"), F.lit(spec.seed))
    ).withColumn("hb", F.shiftrightunsigned(F.col("key"), 48)).write.mode("overwrite").parquet(tokenized_dir)
    t = spark.read.parquet(tokenized_dir)
    for r in t.groupBy("bucket").agg(F.sum("token_count").alias("tokens"), F.count("*").alias("docs")).collect():
        stats.available[r["bucket"]], stats.documents[r["bucket"]] = int(r["tokens"]), int(r["docs"])
    stats.targets, stats.epochs, problems = plan(spec, stats.available)
    if problems:
        raise MixtureInfeasible(f"mixture {spec.name!r} cannot be built from the documents there are:\n- " + "\n- ".join(problems))

    # The fractional epoch of each source: whole hash buckets below the crossing one, then a prefix of it.
    sums: dict[str, list[tuple[int, int]]] = {}
    for r in t.groupBy("bucket", "hb").agg(F.sum("token_count").alias("tokens")).collect():
        sums.setdefault(r["bucket"], []).append((int(r["hb"]), int(r["tokens"])))
    frac_rules = []
    full = {}
    for s in spec.sources:
        e = stats.epochs[s.name]
        full[s.name] = int(math.floor(e + 1e-9))
        want = (e - full[s.name]) * stats.available[s.name]
        if want <= 0:
            continue
        cum, cut = 0, None
        for hb, tokens in sorted(sums[s.name]):
            if cum + tokens > want:
                cut = hb
                break
            cum += tokens
        if cut is None:  # the whole source fits (rounding)
            frac_rules.append(F.col("bucket") == s.name)
            continue
        chosen = []
        for r in (
            t.where((F.col("bucket") == s.name) & (F.col("hb") == cut))
            .select("doc_id", "key", "token_count")
            .orderBy("key", "doc_id")
            .collect()
        ):
            if cum + r["token_count"] > want:
                # the crossing document is taken when that leaves the source closer to its target
                if cum + r["token_count"] - want < want - cum:
                    chosen.append(r["doc_id"])
                break
            cum += r["token_count"]
            chosen.append(r["doc_id"])
        rule = (F.col("bucket") == s.name) & ((F.col("hb") < cut) | ((F.col("hb") == cut) & F.col("doc_id").isin(chosen)))
        frac_rules.append(rule)

    repeats = F.lit(0)
    for name, n in full.items():
        repeats = F.when(F.col("bucket") == name, F.lit(n)).otherwise(repeats)
    whole = t.withColumn("n", repeats).where(F.col("n") > 0).withColumn("repeat", F.explode(F.sequence(F.lit(0), F.col("n") - 1)))
    parts = [whole]
    if frac_rules:
        cond = frac_rules[0]
        for c in frac_rules[1:]:
            cond = cond | c
        parts.append(t.where(cond).withColumn("n", repeats).withColumn("repeat", F.col("n")))
    rows = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    rows = rows.withColumnRenamed("source", "origin").withColumnRenamed("bucket", "source")
    cols = []
    for name, typ in MIXED_COLUMNS:
        spark_type = from_arrow_schema(pa.schema([(name, typ)])).fields[0].dataType
        cols.append(F.col(name).cast(spark_type).alias(name))
    rows.select(*cols).write.mode("overwrite").parquet(out_dir)
    return stats
