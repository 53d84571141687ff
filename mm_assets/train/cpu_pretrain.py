"""The CPU trainer: `pretrain_gpt.py`'s arguments, log lines and checkpoint layout, for CI and the demo.

`python -m mm_assets.train.cpu_pretrain <Megatron-LM arguments>` trains a small GPT built with megatron-core
0.16.1 (`GPTModel` + `get_gpt_layer_local_spec()`) on the CPU, one process, gloo, reading our shards through
Megatron's GPTDataset / BlendedDataset. The launch renderer (mm_assets.train.megatron_args) hands it the same
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
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence

# The parts live in mm_assets.train.cpu; re-exported here, where callers and tests have always found them.
from mm_assets.train.cpu import TrainerError  # noqa: F401
from mm_assets.train.cpu.args import PROG, Schedule, build_parser, check_args, schedule_of  # noqa: F401
from mm_assets.train.cpu.checkpoint import (  # noqa: F401
    CHECKPOINT_VERSION,
    MODEL_SHAPE_ARGS,
    checkpoint_dir,
    checkpoint_sha256,
    load_checkpoint,
    read_tracker,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mm_assets.train.cpu.data import (  # noqa: F401
    BATCH_KEYS,
    Vocab,
    build_datasets,
    causal_mask,
    missing_prefixes,
    padded_vocab_size,
    parse_data_path,
    resolve_vocab,
)
from mm_assets.train.cpu.model import build_model, build_optimizer, flops_per_batch, install_cpu_shims  # noqa: F401
from mm_assets.train.cpu.run import materialization_metadata, run  # noqa: F401
from mm_assets.train.cpu.trainer import Interval, Progress, RunResult, Trainer, now  # noqa: F401


def _pipes_context():
    """dagster_pipes' context when launched under Pipes (its bootstrap variable is set), else None."""
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return None
    return open_dagster_pipes()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with contextlib.ExitStack() as stack:
            pipes = _pipes_context()
            if pipes is not None:
                stack.enter_context(pipes)  # an exception leaving this block is reported to Dagster
            return run(argv, pipes)
    except TrainerError as err:
        print(f"cpu_pretrain: error: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
