"""Token shards: the unified vocabulary (vocab.py), document assembly (documents.py), the Megatron indexed dataset
(indexed.py, megatron.py), its statistics (stats.py) and manifest (manifest.py); assets.py is the Dagster side.
"""
