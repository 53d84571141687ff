"""Partition definitions: crawl batches (DESIGN.md §2)."""

import dagster as dg

# One partition per crawl batch (a manifest of 1k-10k URLs), never one per item: the UI and the
# run storage degrade past ~25-100k partitions.
crawl_batches = dg.DynamicPartitionsDefinition(name="crawl_batch")

# One partition per experiment id (configs/experiments/<id>.yaml), registered by `mm train add ID`.
experiments = dg.DynamicPartitionsDefinition(name="experiment")

# One partition per release version (configs/releases/<version>.yaml), registered by `mm release build VERSION`.
releases = dg.DynamicPartitionsDefinition(name="release")
