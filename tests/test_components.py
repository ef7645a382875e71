"""Connected components of the dedup graph: the driver's union-find (small edge lists) and the
Spark label rounds (large ones) must give every node the same component, the smallest node id in it,
on the shapes near-duplicate graphs take (stars, chains, a cycle, pairs) and on a random graph."""

from __future__ import annotations

import random

import pytest

from spark_jobs.components import connected_components

pytestmark = pytest.mark.integration


def _graph() -> list[tuple[str, str]]:
    rng = random.Random(3)
    edges = [(f"s{i:03d}", "s000") for i in range(1, 30)]  # a star around its smallest id
    edges += [(f"c{i:03d}", f"c{i + 1:03d}") for i in range(40, 0, -1)]  # a chain, numbered backwards
    edges += [("y3", "y1"), ("y1", "y2"), ("y2", "y3")]  # a cycle
    edges += [(f"p{i}b", f"p{i}a") for i in range(20)]  # pairs
    edges += [("c020", "z9")]  # joins the chain to an id larger than all of it
    nodes = [f"r{i:03d}" for i in range(200)]
    edges += [(rng.choice(nodes), rng.choice(nodes)) for _ in range(150)]  # random, self-loops included
    return edges


def _expected(edges: list[tuple[str, str]]) -> dict[str, str]:
    adj: dict[str, set[str]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    out: dict[str, str] = {}
    for start in adj:
        if start in out:
            continue
        seen, todo = {start}, [start]
        while todo:
            for n in adj[todo.pop()] - seen:
                seen.add(n)
                todo.append(n)
        for n in seen:
            out[n] = min(seen)
    return out


def test_union_find_on_the_driver_and_the_spark_rounds_give_the_same_components(spark):
    edges = _graph()
    df = spark.createDataFrame(edges, "a string, b string")
    local, local_rounds = connected_components(df)  # a few hundred edges: on the driver
    dist, rounds = connected_components(df, local_max_edges=0)  # forced through the Spark rounds
    assert local_rounds == 0 and rounds > 1
    want = _expected(edges)
    for got in (local, dist):
        assert {r["node"]: r["component"] for r in got.collect()} == want
