"""Connected components of an edge list in Spark DataFrames.

GraphFrames would do this, but its JARs come from Maven, which is out of reach here. This is
label propagation with pointer jumping: every node takes the smallest label among itself and its
neighbours, then the label of its label, until nothing changes. Labels are node ids (strings), so
the result does not depend on partitioning, ordering or the number of cores. Near-duplicate graphs
are mostly small stars and short chains, so it converges in a few rounds; each round's state is
checkpointed to local disk to keep the query plan flat.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.spark_io import checkpoint


def connected_components(edges: DataFrame, src: str = "a", dst: str = "b", max_rounds: int = 64) -> tuple[DataFrame, int]:
    """``(node, component)`` for every node that has an edge, component = smallest node id in it.

    Returns the DataFrame and the number of rounds it took.
    """
    both = checkpoint(
        edges.select(F.col(src).alias("u"), F.col(dst).alias("v"))
        .unionByName(edges.select(F.col(dst).alias("u"), F.col(src).alias("v")))
        .distinct()
    )
    labels = checkpoint(both.groupBy("u").agg(F.least(F.min("v"), F.first("u")).alias("label")).withColumnRenamed("u", "node"))
    for rounds in range(1, max_rounds + 1):
        # Propagate: the smallest label among the neighbours.
        prop = (
            both.join(labels.withColumnRenamed("node", "v"), "v")
            .groupBy("u")
            .agg(F.min("label").alias("nl"))
            .withColumnRenamed("u", "node")
        )
        step = labels.join(prop, "node").select("node", F.least("label", "nl").alias("label"))
        # Jump: a node takes its label's label.
        jumped = checkpoint(
            step.alias("s")
            .join(step.alias("t"), F.col("s.label") == F.col("t.node"), "left")
            .select(F.col("s.node").alias("node"), F.least(F.col("s.label"), F.coalesce(F.col("t.label"), F.col("s.label"))).alias("label"))
        )
        changed = jumped.join(labels.withColumnRenamed("label", "old"), "node").where(F.col("label") != F.col("old")).limit(1).count()
        labels = jumped
        if not changed:
            return labels.withColumnRenamed("label", "component"), rounds
    raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
