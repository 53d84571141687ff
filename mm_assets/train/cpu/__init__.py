"""The CPU trainer's parts: args, data, model, checkpoint, trainer, run. `mm_assets.train.cpu_pretrain` is the
entry point and documents what matches Megatron-LM."""

VOCAB_FILE = "vocab.json"  # beside each shard prefix (mm_assets.shards.assets)


class TrainerError(Exception):
    """Bad arguments, data or checkpoint: reported as one line on stderr, exit status 2."""
