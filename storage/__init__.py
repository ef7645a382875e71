"""Storage: Delta transactions committed by delta-rs, task outputs, and the table contract.

No Spark, no Dagster: Spark tasks, GPU programs, assets and the CLI all use it."""
