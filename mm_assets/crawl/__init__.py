"""The crawl stage: manifests of URLs -> published items under raw/<source>/<id>/ and a per-item ledger.

batch.py (manifests), records.py (the ledger and item.json contract), pool.py + worker.py (yt-dlp through its
Python API, one long-lived YoutubeDL per worker process), and the helpers they use: ids, errors, probe, page,
options, staging.
"""
