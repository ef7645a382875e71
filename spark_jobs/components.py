"""Connected components of an edge list in Spark DataFrames.

GraphFrames would do this, but its JARs come from Maven, which is out of reach here. This is
label propagation with pointer jumping: every node takes the smallest label among itself and its
neighbours, then the label of its label, until nothing changes. Labels are node ids (strings), so
the result does not depend on partitioning, ordering or the number of cores. Near-duplicate graphs
are mostly small stars and short chains, so it converges in a few rounds; each round's state is
checkpointed to local disk to keep the query plan flat.

Up to ``LOCAL_MAX_EDGES`` edges the components are found on the driver instead, by scipy over the
collected edge list: each Spark round is three jobs and a checkpoint, about 0.3 s even on a dozen
edges. Both give every node the smallest node id of its component.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.spark_io import checkpoint

# Edges a driver takes in one piece: two short ids per edge, about 60 MB of Python at this size.
LOCAL_MAX_EDGES = 500_000


def connected_components(
    edges: DataFrame, src: str = "a", dst: str = "b", max_rounds: int = 64, n_edges: int | None = None, local_max_edges: int | None = None
) -> tuple[DataFrame, int]:
    """``(node, component)`` for every node that has an edge, component = smallest node id in it.

    Returns the DataFrame and the number of Spark rounds it took (0: found on the driver).
    ``n_edges``: the edge count when the caller has it.
    """
    limit = LOCAL_MAX_EDGES if local_max_edges is None else local_max_edges
    if (edges.count() if n_edges is None else n_edges) <= limit:
        return local_components(edges, src, dst), 0
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


def component_labels(n: int, a, b):
    """A component number for each of ``n`` nodes numbered 0..n-1, given edges ``a[i]``–``b[i]``
    (scipy's connected components; unconnected nodes are components of their own)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    return connected_components(coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)), directed=False)[1]


def local_components(edges: DataFrame, src: str = "a", dst: str = "b") -> DataFrame:
    """The same result as the Spark rounds, on the driver (a small edge list)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = edges.select(F.col(src).alias("a"), F.col(dst).alias("b")).toArrow()
    a, b = t.column("a").combine_chunks(), t.column("b").combine_chunks()
    nodes = pc.unique(pa.concat_arrays([a, b]).cast(pa.string()))
    nodes = nodes.take(pc.sort_indices(nodes))  # integer order = string order
    label = component_labels(len(nodes), pc.index_in(a, value_set=nodes).to_numpy(), pc.index_in(b, value_set=nodes).to_numpy())
    smallest = np.zeros(label.max() + 1 if len(label) else 0, np.int64)
    labels, first = np.unique(label, return_index=True)
    smallest[labels] = first  # the first node of a component in sorted order is its smallest id
    out = pa.table({"node": nodes, "component": nodes.take(pa.array(smallest[label]))})
    return edges.sparkSession.createDataFrame(out.to_pandas(), "node string, component string")
