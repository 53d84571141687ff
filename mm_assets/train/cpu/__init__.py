"""The CPU trainer's parts: args, data, model, checkpoint, trainer, run. `mm_assets.train.cpu_pretrain` is the
entry point and documents what matches Megatron-LM."""


class TrainerError(Exception):
    """Bad arguments, data or checkpoint: reported as one line on stderr, exit status 2."""
