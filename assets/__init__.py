"""The pipeline's stages, one module per layer: each declares its ``SPEC`` and its ``work``; the
stage framework (``assets.stage``) makes them Dagster assets."""

from __future__ import annotations

from typing import Any


def stages() -> list[tuple[Any, Any]]:
    """(spec, work) of every stage, in pipeline order."""
    from assets import decontaminated, deduplicated, filtered, mixed, quality_classifier, quality_scored, raw_crawl, rewritten

    return [
        (m.SPEC, m.work) for m in (raw_crawl, filtered, deduplicated, quality_classifier, quality_scored, rewritten, decontaminated, mixed)
    ]


def build_assets(config: Any) -> list:
    """The Dagster assets, their options (and code versions) taken from the Sluice configuration."""
    from assets.stage import stage_asset

    return [stage_asset(spec, work, config) for spec, work in stages() if spec.enabled is None or spec.enabled(config)]
