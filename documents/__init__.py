"""Pure document logic: extraction, language ID, URL lists, quality rules, PII, MinHash.

No Spark, no Dagster, no storage: Spark tasks and GPU programs both call it per document or batch."""
