"""A training launch from one typed config, with no cluster needed: config.py (the `training:` sections),
experiment.py (experiment files: overrides of the base and their "key changes"), rules.py (every Megatron
constraint, checked before anything is submitted), blend.py (`--data-path`), megatron_args.py (the
`pretrain_gpt.py` argv), sbatch.py (the script; `render_launch` ties them together), run_folders.py (where a run
writes) and preflight.py (all of it, before any side effect).
"""
