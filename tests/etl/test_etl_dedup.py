"""Exact duplicates by content hash: excluded from the batch's rows, written aside with their winner, counted."""

import json

import pyarrow.parquet as pq

from checks.metadata import check_quarantine
from itemfactory import make_item, run
from mm_assets.etl.dedup import Candidate, PriorHash, dedup, load_prior_hashes


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


def test_a_quarantined_first_copy_does_not_shadow_a_valid_later_one(tmp_path, cfg, videos):
    items = [make_item(tmp_path, "nolicense", 1, video=videos[0], page={}),
             make_item(tmp_path, "licensed", 2, video=videos[0])]
    res = run(items, tmp_path, cfg)
    assert (res.rows, res.quarantined, res.duplicates_within) == (1, 1, 0)
    statuses = sorted((h["unique_id"], h["status"]) for h in _table(res, "hashes"))
    assert statuses == [("youtube_licensed", "accepted"), ("youtube_nolicense", "quarantined")]


def test_across_batches_the_earlier_registered_batch_wins(tmp_path, cfg, videos):
    a = [make_item(tmp_path, "a1", 1, video=videos[0], batch="youtube-a"),
         make_item(tmp_path, "a2", 2, video=videos[1], batch="youtube-a")]
    res_a = run(a, tmp_path, cfg, batch="youtube-a", registered_at="2026-11-01T00:00:00+00:00")
    assert res_a.rows == 2

    b = [make_item(tmp_path, "b1", 1, video=videos[0], batch="youtube-b"),
         make_item(tmp_path, "b2", 2, video=videos[2], batch="youtube-b")]
    prior = load_prior_hashes(tmp_path, exclude_batch="youtube-b")
    assert set(prior.values()) >= {PriorHash("youtube-a", "youtube_a1", ("2026-11-01T00:00:00+00:00", "youtube-a"))}
    res_b = run(b, tmp_path, cfg, batch="youtube-b", registered_at="2026-11-02T00:00:00+00:00", prior=prior)
    assert (res_b.rows, res_b.duplicates_within, res_b.duplicates_across) == (1, 0, 1)
    dup = _table(res_b, "duplicates")[0]
    assert (dup["unique_id"], dup["kind"], dup["winner_unique_id"], dup["winner_batch"]) == (
        "youtube_b1", "across_batches", "youtube_a1", "youtube-a")

    # Rematerializing batch a ignores its own old hashes and b's copy (b never accepted it): nothing changes.
    prior_a = load_prior_hashes(tmp_path, exclude_batch="youtube-a")
    again = run(a, tmp_path, cfg, batch="youtube-a", registered_at="2026-11-01T00:00:00+00:00", prior=prior_a)
    assert (again.rows, again.duplicates_across, again.superseded) == (2, 0, {})


def test_registration_order_not_materialization_order_decides(tmp_path, cfg, videos):
    # "late" is registered after "early" but materialized first, so it accepted the shared video.
    late = [make_item(tmp_path, "l1", 1, video=videos[0], batch="youtube-late")]
    run(late, tmp_path, cfg, batch="youtube-late", registered_at="2026-11-05T00:00:00+00:00")
    early = [make_item(tmp_path, "e1", 1, video=videos[0], batch="youtube-early")]
    res = run(early, tmp_path, cfg, batch="youtube-early", registered_at="2026-11-01T00:00:00+00:00",
              prior=load_prior_hashes(tmp_path, exclude_batch="youtube-early"))
    assert (res.rows, res.duplicates_across) == (1, 0)
    assert res.superseded == {"youtube-late": 1}  # tells the lead to rematerialize youtube-late
    res_late = run(late, tmp_path, cfg, batch="youtube-late", registered_at="2026-11-05T00:00:00+00:00",
                   prior=load_prior_hashes(tmp_path, exclude_batch="youtube-late"))
    assert (res_late.rows, res_late.duplicates_across) == (0, 1)


def test_dedup_ties_on_registered_at_break_by_batch_key():
    prior = {"h": PriorHash("youtube-a", "youtube_x", ("2026-11-01", "youtube-a"))}
    cands = [Candidate(1, "youtube_y", "h")]
    assert dedup(cands, batch="youtube-b", registered_at="2026-11-01", prior=prior).count("across_batches") == 1
    res = dedup(cands, batch="youtube-0", registered_at="2026-11-01", prior=prior)
    assert res.accepted == cands and res.superseded == {"youtube-a": ["youtube_x"]}
