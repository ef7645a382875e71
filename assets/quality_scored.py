"""``quality_scored`` (silver, GPU): one row per document of the pinned `deduplicated` version, one
score column per configured scorer (default: the built-in signals score ``quality``, the
`quality_classifier` version approved for this crawl ``classifier``, and the offensive-language
score ``toxicity``), with the model URIs and registry versions that produced them. A registry
reference to the model `quality_classifier` registers uses the version its gate approved for this
crawl; when that gate refused the model (or could not train or measure one), the column is null
and the metadata says why, in the gate's own words.

Scoring runs in ``gpu_jobs.score`` through Dagster Pipes (length-sorted dynamic batches, bf16 on
CUDA, resumable by chunks); the asset stages its chunks, gates and publishes them. Lineage: the
MLflow run records the input table version and each model's version; each registry version is
tagged with the table version it scored.
"""

from pathlib import Path

from dagster import MetadataValue

from assets.stage import Outcome, StageContext, StageSpec
from gpu_jobs.chunked_output import discard
from gpu_jobs.scorers.base import read_model_card
from quality.plots import histogram_png, markdown_image
from quality.suites import accounting_row, quality_scored_gate
from storage import tables as T

SPEC = StageSpec(
    name="quality_scored",
    description=__doc__,
    group="silver",
    kinds=("pytorch", "delta"),
    options=lambda cfg: {"scoring": cfg.scoring},
    upstreams=("deduplicated", "quality_classifier"),
    outputs=(T.QUALITY_SCORED,),
    gate_description="Great Expectations: one score per document",
    preview_columns=("doc_id", "model_version"),
    engine="pandas",
    resources=("lakehouse", "lineage", "gpu"),
)


def crawl_classifier(ctx: StageContext) -> dict | None:
    """What `quality_classifier`'s latest materialization of this crawl decided: its registered
    model, verdict line and (approved) model URI; None when it has not run for the crawl."""
    from dagster import AssetKey, AssetRecordsFilter

    records = ctx.dagster.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("quality_classifier"), asset_partitions=[ctx.key]), limit=1
    ).records
    if not records:
        return None
    md = records[0].asset_materialization.metadata
    return {k: md[k].value for k in ("registered_model", "verdict", "model_verdict", "model_uri") if k in md}


def resolved_scorers(ctx: StageContext) -> list[dict]:
    """The configured scorers with registry references resolved to a local path and version; a
    registry reference with no approved version, or one whose model was refused for this crawl, is
    ``unavailable`` (its column stays null)."""
    from gpu_jobs.models import PREFIX as SHIPPED_PREFIX
    from gpu_jobs.models import shipped_path

    out = []
    verdict = crawl_classifier(ctx)
    for c in ctx.options["scoring"].scorers:
        spec = {"name": c.name, "kind": c.kind, "label": c.label, "max_length": c.max_length}
        model = c.model
        registered = verdict.get("registered_model") if verdict else None
        if (
            registered
            and model.startswith(f"models:/{registered}")
            and model.removeprefix(f"models:/{registered}") in ("/latest", "@approved")
        ):
            if verdict.get("model_verdict") != "approved":
                why = f"quality_classifier for {ctx.crawl_id}: {verdict.get('verdict', 'not approved')}"
                ctx.log.warning(f"scorer {c.name!r}: {why}; its column is left null")
                out.append({**spec, "path": None, "uri": model, "version": None, "unavailable": why})
                continue
            model = verdict["model_uri"]  # the version approved for this crawl, not another crawl's
        try:
            if model.startswith(SHIPPED_PREFIX):
                path, uri, version = str(shipped_path(model)), model, None
            else:
                path, uri, version = ctx.lineage.resolve_model(model, ctx.lakehouse.folder(T.MODELS, "registry"))
        except LookupError as e:
            ctx.log.warning(f"scorer {c.name!r}: {e}; its column is left null")
            out.append({**spec, "path": None, "uri": c.model, "version": None, "unavailable": str(e)})
            continue
        card = read_model_card(path) if Path(path).is_dir() else None
        if card:  # a model Sluice trained says how it is read (a fastText model, a sequence classifier)
            spec.update(kind=card["kind"], label=c.label or card.get("label"))
            path = str(Path(path) / card["file"]) if card.get("file") else path
        out.append({**spec, "path": path, "uri": uri, "version": version})
    return out


def work(ctx: StageContext) -> Outcome:
    opts = ctx.options["scoring"]
    docs = ctx.pin("deduplicated")
    scorers = resolved_scorers(ctx)
    names = [c["name"] for c in scorers if not c.get("unavailable")]
    names += [e.name for e in opts.ensembles if any(m in names for m in e.of)]  # ensembles scored by one member or more
    ctx.run.log_params({f"model.{c['name']}": c["uri"] for c in scorers})
    summary = ctx.gpu_job(
        "gpu_jobs.score",
        {
            "input_files": docs.paths,
            "input_uri": ctx.lakehouse.uri(docs.table),
            "input_version": docs.version,
            "output_uri": ctx.lakehouse.uri(SPEC.name),
            "partition": ctx.partition,
            "scorers": scorers,
            "options": opts.model_dump(),
        },
    )
    ctx.output(SPEC.name).add_files(summary["files"]["part"])
    scored = ctx.staged_arrow(SPEC.name).to_pandas()
    plot = histogram_png({n: scored[n].tolist() for n in names}, f"quality scores — {ctx.crawl_id}", ctx.report_path())
    stats = (
        {
            n: {
                "mean": float(scored[n].mean()),
                "p10": float(scored[n].quantile(0.1)),
                "p50": float(scored[n].quantile(0.5)),
                "p90": float(scored[n].quantile(0.9)),
            }
            for n in names
        }
        if len(scored)
        else {}
    )

    def tag_models(commits) -> None:
        version = commits[SPEC.name].version
        for c in scorers:  # which table version each registered model version scored
            if c["version"] is not None and c["uri"].startswith("models:/"):
                ctx.lineage.client.set_model_version_tag(
                    c["uri"].split("/")[1], c["version"], f"scored.{ctx.crawl_id}", f"{SPEC.name}@v{version}"
                )

    return Outcome(
        gate=quality_scored_gate(T.QUALITY_SCORED.schema(opts).names, names),
        accounting=accounting_row(docs.rows, documents=len(scored)),
        documents_in=docs.rows,
        metrics={
            "tokens_per_s": summary["tokens_per_s"],
            "chunks_skipped": summary["chunks_skipped"],
            **{f"{n}.{k}": v for n, s in stats.items() for k, v in s.items()},
        },
        metadata={
            "models": MetadataValue.json({c["name"]: {"uri": c["uri"], "version": c["version"]} for c in scorers}),
            "unavailable_scorers": MetadataValue.json({c["name"]: c["unavailable"] for c in scorers if c.get("unavailable")}),
            "tokens_per_s": round(summary["tokens_per_s"]),
            "resumed_chunks": summary["chunks_skipped"],
            "score_stats": MetadataValue.json(stats),
            "score_histogram": MetadataValue.md(markdown_image(plot, "scores")),
        },
        artifacts=[(plot, "plots")],
        on_publish=[tag_models],
        cleanup=[lambda: discard(summary["resume_dir"])],
    )
