"""Deterministic synthetic crawls for the demo, tests and benchmarks."""

from sample_crawl.generator import generate_crawl

__all__ = ["generate_crawl"]
