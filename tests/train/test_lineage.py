"""An experiment's lineage tells the truth in the UI: its training_blend materialization names the crawl batches
its blend reads (linked to their token_shards partitions and to the run that wrote each shard), no other batch,
and the dependency claims no partition of token_shards. Checked through the UI server's GraphQL."""

import json
import textwrap

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import webui
from mm_assets.definitions import build_resources
from mm_assets.partitions import crawl_batches, experiments
from mm_assets.shards.assets import token_shards
from mm_assets.tokens.store import TokenRow, write_tokens
from mm_assets.train.assets import training_blend
from trainproject import write_experiment, write_project

pytestmark = pytest.mark.slow
EXPERIMENT = "exp-lineage"
USED, OTHER = "ci-used", "ci-other"
QUERY = """{ assetNodeOrError(assetKey: {path: ["training_blend"]}) { ... on AssetNode {
  dependencies { asset { assetKey { path } } partitionMapping { className description } }
  assetMaterializations(partitions: ["%s"], limit: 1) { runId metadataEntries { label
    ... on JsonMetadataEntry { jsonString } ... on MarkdownMetadataEntry { mdStr } } } } } }""" % EXPERIMENT


def write_batch_tokens(storage, batch: str) -> None:
    """A batch as the token assets leave it: metadata rows and text codes (no other modality)."""
    uids = [f"demo_{batch}_{i}" for i in range(3)]
    metadata = storage.store.local_path(storage.layout.metadata_file(batch))
    metadata.parent.mkdir(parents=True)
    pq.write_table(pa.table({"unique_id": pa.array(uids, pa.string())}), metadata)
    for modality in ("text", "audio", "image", "video"):
        rows = [TokenRow(uid, "ok", codes=[[5 + i, 6, 7, 8]]) for i, uid in enumerate(uids)] if modality == "text" else []
        write_tokens(storage.store.local_path(storage.layout.token_file(batch, modality)), rows,
                     {"config": {"vocab_size": 100}} if modality == "text" else {})


def test_the_ui_shows_the_batches_an_experiment_reads(tmp_path):
    config = write_project(tmp_path / "project")
    write_experiment(config, EXPERIMENT, data={"blend": [{"shard_batch": USED, "weight": 1.0}], "split": "98,1,1"})
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(f"storage: {{sqlite: {{base_dir: {home / 'storage'}}}}}\n"
                                       "telemetry: {enabled: false}\nnux: {enabled: false}\n")
    resources = build_resources(config)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(crawl_batches.name, [USED, OTHER])
        instance.add_dynamic_partitions(experiments.name, [EXPERIMENT])
        shard_runs = {}
        for batch in (USED, OTHER):  # real token_shards materializations, one run each
            write_batch_tokens(resources["storage"], batch)
            result = dg.materialize([token_shards], partition_key=batch, instance=instance, resources=resources)
            shard_runs[batch] = result.run_id
        first, blend = (dg.materialize([training_blend], partition_key=EXPERIMENT, instance=instance,
                                       resources=resources) for _ in range(2))
        versions = {r.get_asset_materialization_events()[0].materialization.tags["dagster/data_version"]
                    for r in (first, blend)}
        assert len(versions) == 1  # rebuilt from the same shards: the same data version, checkpoint stays fresh

    (tmp_path / "defs.py").write_text(textwrap.dedent(f"""\
        from mm_assets.definitions import build_definitions
        defs = build_definitions({str(config)!r})
        """))
    (tmp_path / "workspace.yaml").write_text(f"load_from:\n  - python_file: {tmp_path / 'defs.py'}\n")
    with webui.webserver(tmp_path / "workspace.yaml", home) as url:
        node = webui.graphql(url, QUERY)["data"]["assetNodeOrError"]

    deps = {tuple(d["asset"]["assetKey"]["path"]): d for d in node["dependencies"]}
    assert set(deps) == {("token_shards",), ("canary_set",)}  # canary_set: eval's canaries, injected on purpose
    dep = deps[("token_shards",)]
    assert dep["partitionMapping"]["className"] == "SpecificPartitionsPartitionMapping"  # not AllPartitionMapping
    assert dep["partitionMapping"]["description"].endswith("upstream partitions: []")
    (materialization,) = node["assetMaterializations"]
    assert materialization["runId"] == blend.run_id
    entries = {e["label"]: e for e in materialization["metadataEntries"]}
    assert json.loads(entries["shard_batches"]["jsonString"]) == [USED]
    lineage = entries["lineage"]["mdStr"]
    assert f"[{USED}](/assets/token_shards?partition={USED})" in lineage
    assert f"(/runs/{shard_runs[USED]})" in lineage
    assert OTHER not in lineage and shard_runs[OTHER] not in lineage
