"""The manifest sensor: a new file under sources/<source>/ becomes a crawl-batch partition and a run."""

import dagster as dg

from mm_assets.crawl.batch import BatchError, batch_key, find_manifests, register_batch
from mm_assets.jobs import ingest_batch_job
from mm_assets.partitions import crawl_batches
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


@dg.sensor(
    job=ingest_batch_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers new URL manifests under sources/<source>/*.txt as crawl batches and crawls them.",
)
def batch_manifest_sensor(
    context: dg.SensorEvaluationContext, pipeline: PipelineConfigResource, storage: StorageResource
) -> dg.SensorResult | dg.SkipReason:
    cfg = pipeline.load()
    known = set(context.instance.get_dynamic_partitions(crawl_batches.name))
    new_keys, runs = [], []
    for source, path in find_manifests(cfg):
        try:
            if batch_key(source, path) in known:
                continue
            info, _ = register_batch(storage, cfg, path, source)
        except BatchError as err:
            context.log.warning(f"manifest {path} not registered: {err}")
            continue
        new_keys.append(info.batch)
        runs.append(dg.RunRequest(run_key=f"{info.batch}:{info.manifest_sha256[:16]}", partition_key=info.batch))
        context.log.info(f"registered crawl batch {info.batch} ({info.urls} URLs) from {path}")
    if not new_keys:
        return dg.SkipReason("no new manifests")
    return dg.SensorResult(
        run_requests=runs, dynamic_partitions_requests=[crawl_batches.build_add_request(new_keys)]
    )
