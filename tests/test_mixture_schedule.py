"""The mixture's schedule, evaluated by Dagster's own automation evaluator over a real instance: a
configured mixture is rebuilt at a cron tick when one of its inputs changed since it was last built,
and not otherwise. (Dagster's ``on_cron`` waits for every input to change after the tick, and a
mixture reads crawls finished long before: under it `mixed` never ran unattended.)"""

from datetime import UTC, datetime

from dagster import AssetKey, AssetMaterialization, AssetSelection, DagsterInstance, evaluate_automation_conditions

from documents.mixture import MixingOptions, MixtureSpec, SourceSpec
from orchestration.config import DagsterSettings


def _materialize(instance, asset: str, partition: str) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key=AssetKey(asset), partition=partition))


def test_a_mixture_is_rebuilt_on_its_tick_only_when_its_inputs_changed(make_config, tmp_path):
    from dagster import Definitions

    from assets import build_assets
    from assets.partitions import crawl_partitions
    from orchestration.resources import build_resources

    cfg = make_config(
        tmp_path / "landing",
        dagster=DagsterSettings(mixture_cron="0 * * * *"),
        mixing=MixingOptions(
            mixtures=[MixtureSpec(name="m", token_budget=1000, sources=[SourceSpec(name="all", where="true", weight=1.0)])]
        ),
    )
    defs = Definitions(assets=build_assets(cfg), resources=build_resources(cfg))
    mixed = AssetKey("mixed")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(crawl_partitions.name, ["c1", "c2"])
        t = datetime(2026, 5, 1, 10, 10, tzinfo=UTC)
        cursor = None

        def tick(at: datetime) -> set[str]:
            nonlocal cursor
            r = evaluate_automation_conditions(
                defs, instance, asset_selection=AssetSelection.assets(mixed), evaluation_time=at, cursor=cursor
            )
            cursor = r.cursor
            return set(r.get_requested_partitions(mixed))

        at = lambda h, m: t.replace(hour=h, minute=m)  # noqa: E731 - the cron ticks on the hour
        assert tick(at(10, 10)) == set()  # nothing to mix yet
        _materialize(instance, "quality_scored", "c1")
        assert tick(at(11, 1)) == set()  # the 11:00 tick: scores, but no decontaminated text yet
        _materialize(instance, "decontaminated", "c1")
        assert tick(at(11, 5)) == set()  # inputs changed, but no tick since
        assert tick(at(12, 1)) == {"m"}  # the 12:00 tick: the crawl decontaminated earlier is mixed
        _materialize(instance, "mixed", "m")
        assert tick(at(12, 5)) == set()
        assert tick(at(13, 1)) == set()  # 13:00: nothing changed since it was built
        _materialize(instance, "decontaminated", "c2")  # a second crawl finishes
        assert tick(at(13, 5)) == set()
        assert tick(at(14, 1)) == {"m"}  # 14:00: rebuilt with it
