"""The CPU trainer: `pretrain_gpt.py`'s arguments, log lines and checkpoint layout, for CI and the demo.

`python -m mm_assets.train.cpu <Megatron-LM arguments>` trains a small GPT built with megatron-core
0.16.1 (`GPTModel` + `get_gpt_layer_local_spec()`) on the CPU, one process, gloo, reading our shards through
Megatron's GPTDataset / BlendedDataset. The launch renderer (mm_assets.train.launch.megatron_args) hands it the same
argv it hands `pretrain_gpt.py`: every flag it can emit is accepted; those that have no meaning on one CPU
process (sequence parallel, distributed optimizer, recompute, attention backend, tensorboard) are accepted and
ignored with a notice; values it cannot honour (TP/PP/CP > 1, bf16, fp8, transformer_engine, nccl) are refused.

What matches Megatron-LM (main, d98e8a64): the stdout lines (`training_log`, `evaluate_and_print_results`,
`save_checkpoint`; parsed by mm_assets.train.megatron_log), the LR schedule (megatron-core's own
OptimizerParamScheduler, stepped in samples; lr 0 at the first step of a warmup), weight decay off for biases
and norms, per-token loss averaged over micro-batches, skipped-iteration bookkeeping, dataset sizes, and the
checkpoint layout (`iter_0000100/mp_rank_00/model_optim_rng.pt` + `latest_checkpointed_iteration.txt`). What
differs: the optimizer is plain torch AdamW (SGD for --optimizer sgd); a non-finite loss or grad norm skips the
step instead of stopping the run; the log time is UTC; on resume the schedule's shape comes from the current
arguments (Megatron would assert it equals the checkpoint's), so a run can be extended with a larger
--train-iters; checkpoints load with `torch.load(weights_only=True)`.

Under Dagster Pipes (DAGSTER_PIPES_CONTEXT set, e.g. by the Slurm Pipes client) the log lines go to Dagster's
log and the end of the run reports a materialization (final loss, iterations, checkpoint path and sha256s,
wall time); without it, it is a plain command. Exit status: 0 done, 2 bad arguments or data, 1 anything else.

The parts: args.py (the command line), data.py (--data-path blends and GPTDataset), model.py, checkpoint.py
(Megatron's --save layout), trainer.py (the loop), run.py (argv to exit code; `python -m` runs its main).
"""


class TrainerError(Exception):
    """Bad arguments, data or checkpoint: reported as one line on stderr, exit status 2."""
