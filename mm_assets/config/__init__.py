"""The pipeline config, configs/pipeline.yaml, the single source of truth (DESIGN.md §4): base.py (the strict
section class, YAML reading, error messages), pipeline.py (PipelineConfig, loaded once per process, and the
experiments built from it). Tokenizer, training and eval sections live with their stages (tokens/config.py,
train/launch/config.py, eval/config.py)."""
