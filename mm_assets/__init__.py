"""mm-pretrain: a multimodal LLM pretraining project as a Dagster asset graph."""
