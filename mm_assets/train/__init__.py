"""The `train` group: an experiment's blend, its training run and its log (assets.py), by concept:

- launch/        the typed training config, experiments, validation rules, --data-path, Megatron args, sbatch
- megatron_log/  Megatron's text log: events, line parsing, whole and growing logs, the lines it prints
- cpu/           the CPU trainer (`python -m mm_assets.train.cpu`), Megatron's interface on one CPU process
- verified_shards.py, verified_checkpoints.py   the handoffs checked before and after each job
- run_files.py   the run folder's JSON documents; lineage.py   which crawl batches an experiment reads
"""
