"""One partition per crawl snapshot. Defined here (not in orchestration/) because assets are built
against it; orchestration's sensor adds partitions to it."""

from dagster import DynamicPartitionsDefinition

crawl_partitions = DynamicPartitionsDefinition(name="crawls")
