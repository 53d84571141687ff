"""Exact duplicates by content hash, over every crawled item before validation: excluded from the batch's rows,
written aside with their winner, counted."""

import json

import pyarrow.parquet as pq

from checks.metadata import check_quarantine
from itemfactory import make_item, run
from mm_assets.etl.dedup import Candidate, PriorHash, dedup, load_prior_hashes
from resources.storage import StorageResource


def _table(res, name):
    return pq.read_table(res.paths[name]).to_pylist()


def test_within_batch_first_manifest_line_wins(tmp_path, cfg, videos):
    items = [
        make_item(tmp_path, "late", 7, video=videos[0]),
        make_item(tmp_path, "first", 2, video=videos[0]),
        make_item(tmp_path, "other", 3, video=videos[1]),
        make_item(tmp_path, "audio_copy_a", 4, audio_seed=9),
        make_item(tmp_path, "audio_copy_b", 5, audio_seed=9),
    ]
    res = run(items, tmp_path, cfg)
    assert (res.rows, res.duplicates_within, res.duplicates_across) == (3, 2, 0)
    ids = pq.read_table(res.paths["metadata"])["unique_id"].to_pylist()
    assert ids == ["youtube_audio_copy_a", "youtube_first", "youtube_other"]
    dups = _table(res, "duplicates")
    assert [(d["unique_id"], d["kind"], d["winner_unique_id"], d["winner_batch"]) for d in dups] == [
        ("youtube_audio_copy_b", "within_batch", "youtube_audio_copy_a", "youtube-b1"),
        ("youtube_late", "within_batch", "youtube_first", "youtube-b1"),
    ]
    assert dups[1]["hash_of"] == "video"
    log = json.loads(dups[1]["row_json"])["processing_log"]
    assert log[-1]["stage"] == "dedup" and log[-1]["status"] == "skipped"
    assert "duplicate of youtube_first (batch youtube-b1)" in log[-1]["message"]
    statuses = {h["unique_id"]: h["status"] for h in _table(res, "hashes")}
    assert statuses == {"youtube_first": "accepted", "youtube_other": "accepted", "youtube_late": "duplicate",
                        "youtube_audio_copy_a": "accepted", "youtube_audio_copy_b": "duplicate"}
    # duplicates are valid items, not quarantined ones: they do not count against the quarantine limit
    assert check_quarantine(res.paths["metadata"], res.paths["quarantine"], res.paths["duplicates"],
                            cfg.metadata)[1]["items"] == 5


def test_a_copy_of_a_quarantined_original_is_a_duplicate_within_and_across_batches(tmp_path, cfg, videos):
    """The issue's case: the original fails validation; its copy in the batch and a third copy in the next
    batch are duplicates of it, not two more quarantined (or accepted) items."""
    a = [make_item(tmp_path, "original", 1, video=videos[0], batch="youtube-a",
                   info={"title": "o", "language": "English"}),  # quarantined: bad language code
         make_item(tmp_path, "copy", 2, video=videos[0], batch="youtube-a"),
         make_item(tmp_path, "broken_copy", 3, video=videos[0], batch="youtube-a", info=b"{not json"),
         make_item(tmp_path, "other", 4, video=videos[1], batch="youtube-a")]
    res_a = run(a, tmp_path, cfg, batch="youtube-a", registered_at="2026-11-01T00:00:00+00:00")
    assert (res_a.rows, res_a.quarantined, res_a.duplicates_within, res_a.duplicates_across) == (1, 1, 2, 0)
    assert [q["unique_id"] for q in _table(res_a, "quarantine")] == ["youtube_original"]
    dups = [(d["unique_id"], d["kind"], d["winner_unique_id"], d["winner_batch"]) for d in _table(res_a, "duplicates")]
    assert dups == [("youtube_copy", "within_batch", "youtube_original", "youtube-a"),
                    ("youtube_broken_copy", "within_batch", "youtube_original", "youtube-a")]
    statuses = {h["unique_id"]: h["status"] for h in _table(res_a, "hashes")}
    assert statuses == {"youtube_original": "quarantined", "youtube_copy": "duplicate",
                        "youtube_broken_copy": "duplicate", "youtube_other": "accepted"}

    b = [make_item(tmp_path, "third", 1, video=videos[0], batch="youtube-b")]
    prior = load_prior_hashes(StorageResource(root=str(tmp_path)), exclude_batch="youtube-b")
    res_b = run(b, tmp_path, cfg, batch="youtube-b", registered_at="2026-11-02T00:00:00+00:00", prior=prior)
    assert (res_b.rows, res_b.quarantined, res_b.duplicates_across) == (0, 0, 1)
    (dup,) = _table(res_b, "duplicates")
    assert (dup["unique_id"], dup["winner_unique_id"], dup["winner_batch"], dup["source_uri"]) == (
        "youtube_third", "youtube_original", "youtube-a", "https://example.test/watch?v=third")
    assert res_b.dagster_metadata()["duplicates"] == 1


def test_hashes_files_written_before_dedup_ran_over_everything_still_read(tmp_path, cfg, videos):
    """Old hashes.parquet: both copies of a quarantined pair were `quarantined`; the first line stays first."""
    import pyarrow as pa

    from mm_assets.etl.dedup import HASHES_SCHEMA

    folder = tmp_path / "metadata" / "youtube-old"
    folder.mkdir(parents=True)
    old = [{"hash": "h", "hash_of": "video", "unique_id": f"youtube_{n}", "line_no": i, "status": "quarantined",
            "winner_unique_id": None, "winner_batch": None, "registered_at": "2026-10-01T00:00:00+00:00"}
           for i, n in ((1, "x"), (2, "y"))]
    pq.write_table(pa.Table.from_pylist(old, schema=HASHES_SCHEMA), folder / "hashes.parquet")
    assert load_prior_hashes(StorageResource(root=str(tmp_path)), exclude_batch="youtube-new")["h"].unique_id == "youtube_x"


def test_across_batches_the_earlier_registered_batch_wins(tmp_path, cfg, videos):
    a = [make_item(tmp_path, "a1", 1, video=videos[0], batch="youtube-a"),
         make_item(tmp_path, "a2", 2, video=videos[1], batch="youtube-a")]
    res_a = run(a, tmp_path, cfg, batch="youtube-a", registered_at="2026-11-01T00:00:00+00:00")
    assert res_a.rows == 2

    b = [make_item(tmp_path, "b1", 1, video=videos[0], batch="youtube-b"),
         make_item(tmp_path, "b2", 2, video=videos[2], batch="youtube-b")]
    prior = load_prior_hashes(StorageResource(root=str(tmp_path)), exclude_batch="youtube-b")
    assert set(prior.values()) >= {PriorHash("youtube-a", "youtube_a1", ("2026-11-01T00:00:00+00:00", "youtube-a"))}
    res_b = run(b, tmp_path, cfg, batch="youtube-b", registered_at="2026-11-02T00:00:00+00:00", prior=prior)
    assert (res_b.rows, res_b.duplicates_within, res_b.duplicates_across) == (1, 0, 1)
    dup = _table(res_b, "duplicates")[0]
    assert (dup["unique_id"], dup["kind"], dup["winner_unique_id"], dup["winner_batch"]) == (
        "youtube_b1", "across_batches", "youtube_a1", "youtube-a")

    # Rematerializing batch a ignores its own old hashes and b's copy (b never accepted it): nothing changes.
    prior_a = load_prior_hashes(StorageResource(root=str(tmp_path)), exclude_batch="youtube-a")
    again = run(a, tmp_path, cfg, batch="youtube-a", registered_at="2026-11-01T00:00:00+00:00", prior=prior_a)
    assert (again.rows, again.duplicates_across, again.superseded) == (2, 0, {})


def test_registration_order_not_materialization_order_decides(tmp_path, cfg, videos):
    # "late" is registered after "early" but materialized first, so it accepted the shared video.
    late = [make_item(tmp_path, "l1", 1, video=videos[0], batch="youtube-late")]
    run(late, tmp_path, cfg, batch="youtube-late", registered_at="2026-11-05T00:00:00+00:00")
    early = [make_item(tmp_path, "e1", 1, video=videos[0], batch="youtube-early")]
    res = run(early, tmp_path, cfg, batch="youtube-early", registered_at="2026-11-01T00:00:00+00:00",
              prior=load_prior_hashes(StorageResource(root=str(tmp_path)), exclude_batch="youtube-early"))
    assert (res.rows, res.duplicates_across) == (1, 0)
    assert res.superseded == {"youtube-late": 1}  # tells the lead to rematerialize youtube-late
    res_late = run(late, tmp_path, cfg, batch="youtube-late", registered_at="2026-11-05T00:00:00+00:00",
                   prior=load_prior_hashes(StorageResource(root=str(tmp_path)), exclude_batch="youtube-late"))
    assert (res_late.rows, res_late.duplicates_across) == (0, 1)


def test_dedup_ties_on_registered_at_break_by_batch_key():
    prior = {"h": PriorHash("youtube-a", "youtube_x", ("2026-11-01", "youtube-a"))}
    cands = [Candidate(1, "youtube_y", "h")]
    assert dedup(cands, batch="youtube-b", registered_at="2026-11-01", prior=prior).count("across_batches") == 1
    res = dedup(cands, batch="youtube-0", registered_at="2026-11-01", prior=prior)
    assert res.originals == cands and res.superseded == {"youtube-a": ["youtube_x"]}
