"""The expectation suites, one function per gated table. Thresholds live here, not in assets."""

from __future__ import annotations

from quality.gate import GateSpec


def conservation(read: str, parts: list[str]) -> list:
    """``read`` = sum of ``parts``: nothing lost, nothing invented."""
    import great_expectations as gx

    return [
        gx.expectations.ExpectColumnPairValuesToBeEqual(column_A=read, column_B="accounted_for"),
        *[gx.expectations.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in [read, *parts]],
    ]


def accounting_row(read: int, **parts: int) -> dict[str, int]:
    return {"records_read": read, **parts, "accounted_for": sum(parts.values())}


def raw_crawl_gate(columns: list[str]) -> GateSpec:
    import great_expectations as gx

    E = gx.expectations
    return GateSpec(
        name="raw_crawl",
        table=[
            E.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True),
            E.ExpectColumnValuesToNotBeNull(column="doc_id"),
            E.ExpectColumnValuesToBeUnique(column="doc_id"),
            E.ExpectColumnValuesToNotBeNull(column="url"),
            E.ExpectColumnValuesToNotBeNull(column="html"),
            E.ExpectColumnValuesToBeInSet(column="http_status", value_set=[200]),
            E.ExpectColumnValuesToBeBetween(column="content_length", min_value=1),
        ],
        accounting=conservation("records_read", ["documents", "rejected"]),
    )
