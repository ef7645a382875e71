"""Audits of a lakehouse: trace a document, funnel reports, table history and diffs, takedowns."""
