"""Training launch: one typed config → a validated Megatron-LM argument list and a Slurm sbatch script.

Pure functions, no cluster needed: `config` (typed sections, experiment overrides and their diff), `validate`
(every Megatron constraint checked before anything is submitted), `blend` (`--data-path`), `megatron_args`
(the `pretrain_gpt.py` argv) and `sbatch` (the script, with `render_launch` tying them together).
"""
