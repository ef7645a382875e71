"""``sluice run``: one named-job run per crawl, then one per configured mixture, in this process."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from orchestration.cli.common import config_from_args, prepare_dagster_home
from orchestration.cli.console import follow_progress, print_summary, quiet_console, report_run


def cmd_run(args: argparse.Namespace) -> int:
    extra = {}
    crawl_ids: list[str] = []
    if args.crawl:
        # Several crawls (a backfill from the CLI) must sit in one landing folder: it is where
        # ingest finds each crawl's files by its id.
        crawls = [Path(c).resolve() for c in args.crawl]
        for crawl in crawls:
            if not crawl.is_dir():
                print(f"sluice run: crawl folder {crawl} does not exist", file=sys.stderr)
                return 2
        if len({c.parent for c in crawls}) > 1:
            print("sluice run: the crawl folders given with --crawl must share one parent folder (the landing folder)", file=sys.stderr)
            return 2
        extra["landing_dir"] = crawls[0].parent
        crawl_ids = [c.name for c in crawls]
    cfg = config_from_args(args, **extra)
    if not args.crawl:
        from orchestration.sensors import landed_crawls

        crawl_ids = landed_crawls(Path(cfg.landing_dir).resolve(), cfg.ingest.file_globs, 0)
        if not crawl_ids:
            print(f"sluice run: no crawl folder with WARC files in {Path(cfg.landing_dir).resolve()}", file=sys.stderr)
            return 2
    prepare_dagster_home(cfg)

    from dagster import AssetKey, DagsterInstance

    from assets.partitions import crawl_partitions
    from orchestration.definitions import CRAWL_JOB, MIXTURE_JOB, build_definitions
    from orchestration.resources import build_resources
    from orchestration.sensors import run_tags
    from storage.tables import LOGS

    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(
        crawl_partitions.name, [c for c in crawl_ids if not instance.has_dynamic_partition(crawl_partitions.name, c)]
    )
    defs = build_definitions(cfg)
    # Crawl stages run once per crawl; mixtures (partitioned by mixture name) after every crawl.
    jobs = {n: defs.resolve_job_def(n) for n in (CRAWL_JOB, MIXTURE_JOB) if n in {j.name for j in defs.jobs or []}}
    selected = set(args.select.split(",")) if args.select else None
    lineage = build_resources(cfg)["lineage"]
    order = [a.key for a in defs.assets or []]  # pipeline order
    ok = True
    log_path = cfg.lakehouse_path / LOGS / f"sluice-run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.log"
    with quiet_console(log_path, args.verbose) as out:

        def one_run(job_name: str, key: str, label: str) -> bool:
            job = jobs.get(job_name)
            in_job = set(job.asset_layer.selected_asset_keys) if job is not None else set()
            keys = [k.to_user_string() for k in order if k in in_job]
            names = [n for n in keys if selected is None or n in selected]
            if not names:
                return True
            print(f"== {label}: {job_name} materializing {', '.join(names)} into {cfg.lakehouse_path}", file=out)
            token = uuid.uuid4().hex
            done = threading.Event()
            follower = threading.Thread(target=follow_progress, args=(instance, token, len(names), done, out), daemon=True)
            follower.start()
            try:
                with _runs_of_the_code_location(instance, job_name):
                    result = job.execute_in_process(
                        instance=instance,
                        partition_key=key,
                        asset_selection=[AssetKey(n) for n in names],
                        tags={"sluice/cli": token, **run_tags(cfg)},
                        raise_on_error=False,
                    )
            finally:
                done.set()
                follower.join()
            lineage.finish_parent(result.run_id, "FINISHED" if result.success else "FAILED")
            report_run(result, out, log_path)
            return result.success

        for crawl_id in crawl_ids:
            ok &= one_run(CRAWL_JOB, crawl_id, f"crawl {crawl_id}")
        if ok:
            for m in cfg.mixing.mixtures:
                ok &= one_run(MIXTURE_JOB, m.name, f"mixture {m.name}")
    print_summary(cfg)
    if not args.verbose:
        print(f"Log of the run (Dagster, Spark, models): {log_path}")
    return 0 if ok else 1


@contextlib.contextmanager
def _runs_of_the_code_location(instance, job_name: str) -> Iterator[None]:
    """Runs created meanwhile carry the origin of the job in the code location the UIs load
    (``-m orchestration.definitions``), as a run launched from the UI would: the Overview timeline
    only lists runs with an origin, and the run page then links to the job."""
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    module = "orchestration.definitions"
    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=module, working_directory=os.getcwd()), location_name=module
    )
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)
    create = instance.create_run_for_job

    def with_origin(*args, **kwargs):
        kwargs.setdefault("remote_job_origin", origin)
        return create(*args, **kwargs)

    instance.create_run_for_job = with_origin
    try:
        yield
    finally:
        del instance.create_run_for_job
