"""`release_bundle`, partitioned by release version: one bundle per configs/releases/<version>.yaml, built from
the lineage the upstream assets recorded and published whole under releases/<version>/ (manifest last).

Its checklist (checks/release.py) is a set of blocking checks: a bundle whose checks fail stays where it is
for inspection, and `mm release checklist <version>` says which box is not ticked and why.
"""

import dagster as dg

from mm_assets.config.base import ConfigError
from mm_assets.etl.assets import metadata_catalog
from mm_assets.etl.catalog import CatalogError
from mm_assets.eval.assets import eval_report
from mm_assets.partitions import releases
from mm_assets.release.bundle import publish_bundle
from mm_assets.release.lineage import ReleaseError, ReleaseLineage, read_lineage
from mm_assets.train.assets import checkpoint, git_commit
from mm_assets.train.lineage import NO_CLAIMED_PARTITIONS
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


def release_lineage(context, pipeline: PipelineConfigResource, storage: StorageResource) -> ReleaseLineage:
    try:
        return read_lineage(pipeline.load(), storage, context.partition_key)
    except (ConfigError, ReleaseError) as err:
        raise dg.Failure(str(err)) from None


def _lineage_table(lineage: ReleaseLineage) -> str:
    exp = lineage.experiment.id
    rows = [f"| experiment | [{exp}](/assets/checkpoint?partition={exp}) | iteration {lineage.iteration}, trained at "
            f"`{lineage.run.get('git_commit')}` |",
            f"| evaluation | [{exp}](/assets/eval_report?partition={exp}) | the experiment's eval report |"]
    rows += [f"| crawl batch | [{b}](/assets/token_shards?partition={b}) | |" for b in lineage.batches]
    rows += [f"| blend entry | `{prefix}` | {label} |" for label, prefix in lineage.other_sources.items()]
    rows += [f"| {t.modality} tokenizer | {t.identity.get('tokenizer')} | {t.label()} |"
             for _, t in sorted(lineage.tokenizers.items())]
    return "\n".join(["| from | what | detail |", "|---|---|---|", *rows])


@dg.asset(partitions_def=releases, group_name="release", kinds={"json"},
          deps=[dg.AssetDep(checkpoint, partition_mapping=NO_CLAIMED_PARTITIONS),
                dg.AssetDep(eval_report, partition_mapping=NO_CLAIMED_PARTITIONS), metadata_catalog],
          description="A release bundle (reference §B.7): checkpoint, launch and configs, vocabulary, tokenizers, "
                      "eval report, model and data cards, LICENSE, inference script; manifest.json last.")
def release_bundle(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                   storage: StorageResource) -> dg.MaterializeResult:
    lineage = release_lineage(context, pipeline, storage)
    try:
        manifest = publish_bundle(storage, lineage, git_commit())
    except CatalogError as err:
        raise dg.Failure(f"release {lineage.version}: {err}") from None
    key = storage.layout.release_dir(lineage.version)
    context.log.info(f"release {lineage.version}: {len(manifest.files)} files ({manifest.total_bytes:,} bytes) "
                     f"published at {storage.store.url(key)}, manifest.json last")
    for problem in lineage.tokenizer_problems:
        context.log.warning(f"release {lineage.version}: {problem}")
    return dg.MaterializeResult(data_version=dg.DataVersion(manifest.sha256[:24]), metadata={
        "url": dg.MetadataValue.path(storage.store.url(key)),
        "manifest_sha256": manifest.sha256,
        "files": len(manifest.files),
        "bytes": manifest.total_bytes,
        "experiment": lineage.experiment.id,
        "checkpoint_iteration": lineage.iteration,
        "crawl_batches": dg.MetadataValue.json(list(lineage.batches)),
        "internal": lineage.release.internal,
        "license": lineage.release.license.id,
        "lineage": dg.MetadataValue.md(_lineage_table(lineage)),
        "verify": f"mm release verify {storage.store.url(key)}",
    })
