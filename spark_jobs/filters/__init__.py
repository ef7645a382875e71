"""Per-document filters of the `filtered` stage (no Spark, no Dagster: unit-testable)."""
