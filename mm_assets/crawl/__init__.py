"""The crawl stage: manifests of URLs -> published items under raw/<source>/<id>/ and a per-item ledger.

batch.py (manifests) and ledger.py (the ledger and the item.json contract); pool.py + worker.py (yt-dlp
through its Python API, one long-lived YoutubeDL per worker process) and their helpers ids, errors, probe,
page, options, staging; assets.py and sensors.py are the Dagster side.
"""
