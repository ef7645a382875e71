"""Mixtures after they are built: export shards with a manifest, rebuild them bit for bit, and
propose weights from proxy-run results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestration.cli.common import config_from_args


def cmd_export(args: argparse.Namespace) -> int:
    """Shards, index and manifest of a mixture at a pinned version of ``mixed``."""
    from storage import tables as T
    from storage.delta_table import LakehouseError, commit_info, current_version
    from storage.export import export_mixture

    cfg = config_from_args(args)
    spec = next((m for m in cfg.mixing.mixtures if m.name == args.mixture), None)
    if spec is None:
        names = [m.name for m in cfg.mixing.mixtures] or ["(none configured: see mixing.mixtures in the README)"]
        print(f"sluice export: no mixture {args.mixture!r}; configured: {', '.join(names)}", file=sys.stderr)
        return 2
    root = cfg.lakehouse_path
    version = args.version if args.version is not None else current_version(root / T.MIXED.name)
    if version is None:
        print(f"sluice export: no {T.MIXED.name} table in {root}: materialize the mixture first (sluice run)", file=sys.stderr)
        return 2
    plan = {}
    run_id = commit_info(root / T.MIXED.name, version).get("mlflow_run_id")
    if run_id:  # what the mixture's run planned: epochs per source
        from mlflow.tracking import MlflowClient

        metrics = MlflowClient(cfg.mlflow_tracking_uri).get_run(run_id).data.metrics
        plan = {s.name: {"target_tokens": s.weight * spec.token_budget, "epochs": metrics.get(f"epochs.{s.name}")} for s in spec.sources}
    out = Path(args.out) if args.out else root / T.EXPORTS / spec.name / f"v{version}"
    try:
        m = export_mixture(root, spec, out, version, plan)
    except LakehouseError as e:
        print(f"sluice export: {e}", file=sys.stderr)
        return 2
    print(f"mixture {spec.name} from mixed@v{version}: {m['documents']} documents, {m['tokens']} tokens in {len(m['shards'])} shards")
    for name, src in m["sources"].items():
        print(f"  {name:16s} requested {src['requested_tokens']:>12.0f}  delivered {src['delivered_tokens']:>12d} tokens")
    print(f"manifest: {out / 'manifest.json'}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from storage.export import rebuild

    cfg = config_from_args(args)
    bad = rebuild(args.manifest, cfg.lakehouse_path, args.out)
    if bad:
        print(f"rebuilt into {args.out}: {len(bad)} files differ from the manifest: {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"rebuilt into {args.out}: every shard has the manifest's sha256")
    return 0


def cmd_mixture_search(args: argparse.Namespace) -> int:
    """Fit proxy-run results (weights → metric) and propose weights under the mixture's constraints."""
    import json
    import tempfile

    from documents.mixture import file_sha256
    from documents.mixture_search import propose, read_runs
    from storage import tables as T
    from storage.delta_table import commit_info, current_version

    cfg = config_from_args(args)
    spec = next((m for m in cfg.mixing.mixtures if m.name == args.mixture), None)
    if spec is None:
        print(f"sluice mixture-search: no mixture {args.mixture!r} in mixing.mixtures", file=sys.stderr)
        return 2
    sources = [s.name for s in spec.sources]
    try:
        w, y = read_runs(args.runs, sources, args.metric)
    except (OSError, ValueError) as e:
        print(f"sluice mixture-search: {e}", file=sys.stderr)
        return 2
    from orchestration.resources import lineage_resource

    lineage = lineage_resource(cfg)
    client = lineage.client
    # Tokens each source has: given, or from the mixture's last build (target / epochs).
    available = {k: float(v) for k, v in (a.split("=", 1) for a in args.available or [])}
    version = current_version(cfg.lakehouse_path / T.MIXED.name)
    run_id = commit_info(cfg.lakehouse_path / T.MIXED.name, version).get("mlflow_run_id") if version is not None else None
    if run_id and not available:
        metrics = client.get_run(run_id).data.metrics
        available = {
            s.name: s.weight * spec.token_budget / metrics[f"epochs.{s.name}"] for s in spec.sources if metrics.get(f"epochs.{s.name}")
        }
    bounds = {
        s.name: min(1.0, (s.max_epochs or spec.max_epochs) * available[s.name] / spec.token_budget)
        for s in spec.sources
        if s.name in available
    }
    try:
        p = propose(
            w,
            y,
            sources,
            bounds,
            [s.name for s in spec.sources if s.synthetic],
            spec.synthetic_cap,
            lower_is_better=not args.higher_is_better,
            samples=args.samples,
            seed=spec.seed,
        )
    except ValueError as e:
        print(f"sluice mixture-search: {e}", file=sys.stderr)
        return 2
    run = client.create_run(
        lineage.experiment_id, run_name=f"mixture-search[{spec.name}]", tags={"sluice.level": "mixture_search", "sluice.mixture": spec.name}
    )
    rid = run.info.run_id
    for k, v in {
        "mixture": spec.name,
        "metric": args.metric,
        "lower_is_better": not args.higher_is_better,
        "runs_file": str(args.runs),
        "runs_sha256": file_sha256(args.runs),
        "model": "ridge on weights and pairwise products",
        "samples": args.samples,
        **{f"bound.{n}": round(b, 6) for n, b in p.bounds.items()},
    }.items():
        client.log_param(rid, k, str(v))
    for k, v in {
        "runs": p.runs,
        "cv_r2": p.cv_r2,
        "predicted": p.predicted,
        "best_run_metric": p.best_run["metric"],
        **{f"weight.{n}": v for n, v in p.weights.items()},
    }.items():
        client.log_metric(rid, k, float(v))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "proposal.json"
        out.write_text(json.dumps(p.__dict__, indent=1))
        client.log_artifact(rid, str(out), "mixture_search")
        client.log_artifact(rid, str(args.runs), "mixture_search")
    client.set_terminated(rid)
    print(
        f"{p.runs} proxy runs, fit leave-one-out R² {p.cv_r2:.3f}; best run: {args.metric} {p.best_run['metric']:.4g}; "
        f"predicted for the proposal: {p.predicted:.4g}"
    )
    print(f"proposed weights for mixture {spec.name} (MLflow run {rid}):")
    for s in spec.sources:
        print(f'  - {{name: {s.name}, where: "{s.where}", weight: {p.weights[s.name]:.4f}}}   # bound {p.bounds.get(s.name, 1.0):.3f}')
    return 0
