"""The crawl stages' automation condition, evaluated by Dagster's own evaluator over real runs on an
ephemeral instance: a stage re-materialized on its own is followed downstream, and a whole-crawl run
(what the landing sensor and `sluice run` launch) is never followed by a second run of its stages,
not even when one of them failed (under Dagster's ``eager`` the automation sensor re-ran it, and an
evaluation that fell between a stage's commit and its next tick launched it twice: three runs for one
crawl in CI)."""

from dagster import AssetSelection, DagsterInstance, Definitions, asset, evaluate_automation_conditions, materialize

from assets.partitions import crawl_partitions
from assets.stage import follow_upstreams
from orchestration.definitions import CRAWL_JOB, build_jobs, crawl_stage_keys

FAIL = {"c": False}


@asset(partitions_def=crawl_partitions)
def a() -> None:
    pass


@asset(partitions_def=crawl_partitions, deps=[a], automation_condition=follow_upstreams())
def b() -> None:
    pass


@asset(partitions_def=crawl_partitions, deps=[b], automation_condition=follow_upstreams())
def c() -> None:
    if FAIL["c"]:
        raise RuntimeError("a step that fails")


def test_whole_crawl_runs_are_not_followed_and_a_lone_stage_is():
    defs = Definitions(assets=[a, b, c], jobs=build_jobs([a, b, c]))
    crawl_job = defs.resolve_job_def(CRAWL_JOB)
    with DagsterInstance.ephemeral() as instance:
        cursor = None

        def tick() -> dict[str, set[str]]:
            nonlocal cursor
            r = evaluate_automation_conditions(defs, instance, asset_selection=AssetSelection.all(), cursor=cursor)
            cursor = r.cursor
            return {k.to_user_string(): set(r.get_requested_partitions(k)) for k in (b.key, c.key) if r.get_requested_partitions(k)}

        def whole_run(fail: bool) -> bool:
            """The crawl job over every stage, naming them, as the landing sensor and `sluice run` launch it."""
            FAIL["c"] = fail
            try:
                return crawl_job.execute_in_process(
                    partition_key="p", instance=instance, asset_selection=crawl_stage_keys([a, b, c]), raise_on_error=False
                ).success
            finally:
                FAIL["c"] = False

        assert tick() == {}
        instance.add_dynamic_partitions(crawl_partitions.name, ["p"])
        assert tick() == {}  # a new crawl is the landing sensor's, not the automation sensor's
        assert not whole_run(fail=True)
        # the failed run is the operator's to re-execute; automation does not run half of it again
        assert tick() == {} and tick() == {}
        assert whole_run(fail=False)
        assert tick() == {} and tick() == {}

        # `a` alone, re-materialized (a click): what is downstream follows, both stages in one tick
        assert materialize([a], partition_key="p", instance=instance).success
        assert tick() == {"b": {"p"}, "c": {"p"}}
        assert tick() == {}  # asked once, not again while it runs
