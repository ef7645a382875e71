"""GPU program: score every document of a pinned Delta version with one or more classifiers and
leave its rows (one column per classifier) as finished chunks for the `quality_scored` asset to
stage, gate and publish.

Launched by the `quality_scored` asset through Dagster Pipes (a local subprocess, or a pod on a GPU
node: see infra/). Resumable: rows are scored in fixed chunks in the input's file order, each
finished chunk is kept (see ``chunked_output``), and a restart skips them.

Parameters (JSON): input_files (the pinned snapshot's data files, in order), input_uri,
input_version, output_uri, partition, scorers [{name, path, kind, label, max_length, uri,
version}], options (ScoringOptions). Reports the chunk files (``files``) and their folder.

A scorer that needs only signals the filter stored (the built-in formulas) reads those columns of
the input and measures nothing; the models read the text, all of a chunk in one batch.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpu_jobs.chunked_output import ChunkedOutput, work_key
from gpu_jobs.options import ScorerSpec, ScoringOptions
from gpu_jobs.runtime import iter_rows, job_session
from gpu_jobs.scorers import load_scorer
from storage.tables import QUALITY_SCORED


def ensemble(members: list, n: int) -> tuple[pa.Array, pa.Array]:
    """Mean logit of the members' probabilities, per document, over the members that scored it."""
    import warnings

    logits = []
    for m in members:
        p = np.clip(np.asarray(pa.array(m).to_numpy(zero_copy_only=False), np.float64), 1e-6, 1 - 1e-6)
        logits.append(np.log(p / (1 - p)))  # a null member is NaN here, and left out below
    if not logits:
        return pa.nulls(n, pa.float64()), pa.nulls(n, pa.string())
    with warnings.catch_warnings():  # a document no member scored: NaN, then null
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.vstack(logits), axis=0)
    score = 1 / (1 + np.exp(-mean))
    missing = np.isnan(score)
    labels = pa.array([None if m else ("high" if s >= 0.5 else "low") for s, m in zip(score, missing)], pa.string())
    return pa.array(score, pa.float64(), mask=missing), labels


def _signal_columns(specs: list[dict]) -> set[str]:
    """The input columns a built-in formula may read instead of the text (the filter's signals)."""
    from gpu_jobs.scorers.signals import COLUMNS

    return set(COLUMNS) if any(c.get("kind") == "signals" and not c.get("unavailable") for c in specs) else set()


def run(params: dict, log, report) -> dict:
    opts = ScoringOptions.model_validate(params["options"])
    specs = params["scorers"]
    names = [c["name"] for c in specs]
    # The columns of the scorers this job was given (the asset resolves them from the same options).
    schema = QUALITY_SCORED.data_schema(opts.model_copy(update={"scorers": [ScorerSpec(name=n) for n in names]}))
    key = work_key(
        input=params["input_uri"],
        version=params["input_version"],
        partition=params["partition"],
        scorers=specs,
        rows_per_chunk=opts.rows_per_chunk,
    )
    out = ChunkedOutput(params["output_uri"], key, schema)
    done = out.done()
    if done:
        log.info(f"resuming: {len(done)} chunks already scored")
    model_uri = json.dumps({c["name"]: c["uri"] for c in specs}, sort_keys=True)
    model_version = json.dumps({c["name"]: c.get("version") for c in specs}, sort_keys=True)
    scorers = None
    t0 = time.time()
    docs = tokens = skipped = 0
    available = set(pq.read_schema(params["input_files"][0]).names) if params["input_files"] else set()
    read = ["doc_id", "text", *sorted(_signal_columns(specs) & available)]
    for chunk, table in iter_rows(params["input_files"], read, opts.rows_per_chunk):
        if chunk in done:
            skipped += 1
            continue
        if scorers is None:  # load the models only when there is work left; an unavailable one scores nothing
            scorers = [
                None if c.get("unavailable") else load_scorer(c["kind"], c["path"], c["max_length"], c.get("label"), opts.device)
                for c in specs
            ]
            log.info(
                f"models loaded on {next((getattr(x, 'device', 'cpu') for x in scorers if x is not None), 'cpu')}: "
                + ", ".join(f"{c['name']}={c['uri']}" for c in specs)
            )
            from_columns = [s is not None and bool(getattr(s, "columns", None)) and set(s.columns) <= available for s in scorers]
            for c, yes in zip(specs, from_columns):
                if yes:
                    log.info(f"scorer {c['name']}: read from the filter's columns, not measured on the text")
        texts = None
        cols: dict[str, object] = {"doc_id": table.column("doc_id")}
        for c, s, by_columns in zip(specs, scorers, from_columns):
            if s is None:
                cols[c["name"]] = pa.nulls(table.num_rows, pa.float64())
                cols[f"{c['name']}_label"] = pa.nulls(table.num_rows, pa.string())
                continue
            if by_columns:
                r = s.score_table(table)
            else:
                texts = texts if texts is not None else [t or "" for t in table.column("text").to_pylist()]
                r = s.score(texts, batch_tokens=opts.batch_tokens, max_batch_size=opts.max_batch_size)
            cols[c["name"]] = pa.array(r.score, pa.float64())
            cols[f"{c['name']}_label"] = pa.array(r.label, pa.string())
            tokens += r.tokens
        for e in opts.ensembles:
            cols[e.name], cols[f"{e.name}_label"] = ensemble([cols[m] for m in e.of if m in cols], table.num_rows)
        n = table.num_rows
        cols["model_uri"] = pa.array([model_uri] * n, pa.string())
        cols["model_version"] = pa.array([model_version] * n, pa.string())
        out.write(chunk, pa.table(cols))
        docs += n
        elapsed = time.time() - t0
        log.info(f"chunk {chunk}: {docs} documents scored this run, {docs / elapsed:.1f} docs/s, {tokens / elapsed:.0f} tokens/s")
    elapsed = time.time() - t0
    summary = {
        "files": {"part": out.files()},
        "resume_dir": str(out.dir),
        "scored_this_run": docs,
        "chunks_skipped": skipped,
        "tokens": tokens,
        "seconds": elapsed,
        "docs_per_s": docs / elapsed if elapsed else 0.0,
        "tokens_per_s": tokens / elapsed if elapsed else 0.0,
    }
    report(summary)
    return summary


def main() -> None:
    with job_session("score") as (params, log, report):
        run(params, log, report)


if __name__ == "__main__":
    main()
