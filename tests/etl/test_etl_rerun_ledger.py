"""A rerun's ledger says `skipped`/`archived` for the items the batch published earlier: the metadata still holds
them, byte for byte, and items archived by another batch stay out."""

from dataclasses import replace

from itemfactory import BATCH, REGISTERED, SOURCE, good_batch
from mm_assets.crawl.batch import BatchInfo
from mm_assets.etl.metadata import build_batch_metadata
from resources.storage import StorageResource

FILES = ("metadata", "quarantine", "duplicates", "hashes")


def test_archived_by_this_batch_builds_the_same_bytes(tmp_path, cfg, videos):
    storage = StorageResource(root=str(tmp_path))
    info = BatchInfo(batch=BATCH, source=SOURCE, manifest_sha256="0" * 64, origin="m.txt", registered_at=REGISTERED,
                     urls=4)
    first = [rec for rec, _ in good_batch(tmp_path, videos)]
    rerun = [replace(r, status="skipped", reason="archived", owner_batch=BATCH, message=f"published by batch {BATCH!r}")
             for r in first]

    one = build_batch_metadata(first, storage=storage, info=info, cfg=cfg, prior_hashes={}, out_dir=tmp_path / "one")
    two = build_batch_metadata(rerun, storage=storage, info=info, cfg=cfg, prior_hashes={}, out_dir=tmp_path / "two")

    assert (two.items, two.rows, two.ledger_not_ok) == (4, 4, 0)
    for name in FILES:
        assert one.paths[name].read_bytes() == two.paths[name].read_bytes(), name

    others = [replace(r, owner_batch="youtube-other") for r in rerun[:2]] + rerun[2:]
    three = build_batch_metadata(others, storage=storage, info=info, cfg=cfg, prior_hashes={}, out_dir=tmp_path / "3")
    assert (three.items, three.rows, three.ledger_not_ok) == (2, 2, 2)
