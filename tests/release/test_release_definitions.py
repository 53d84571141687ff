"""The release group in the code location: its lineage, its blocking checks, its job."""

import dagster as dg

from checks.release import release_checklist
from mm_assets.definitions import defs
from mm_assets.release.checklist import CHECKLIST


def test_release_bundle_lineage_checks_and_job():
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("release_bundle"))
    assert {k.to_user_string() for k in node.parent_keys} == {"checkpoint", "eval_report", "metadata_catalog"}
    assert node.partitions_def.name == "release" and node.group_name == "release"
    # partitioned by release, the experiment's assets by experiment: the edge claims no partition (lineage.py);
    # the materialization's `lineage` metadata names the experiment and its batches
    for parent in ("checkpoint", "eval_report"):
        mapping = node.partition_mappings[dg.AssetKey(parent)]
        assert isinstance(mapping, dg.SpecificPartitionsPartitionMapping) and list(mapping.partition_keys) == []
    checks = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey("release_bundle")}
    assert checks == {item.check for item in CHECKLIST} and len(checks) == 9
    assert all(spec.blocking for spec in release_checklist.check_specs)
    job = defs.resolve_job_def("build_release")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"release_bundle"}
