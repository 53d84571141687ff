"""What monitoring needs to know about one experiment's run: its labels, FLOPs per token and MFU's denominator."""

from __future__ import annotations

from dataclasses import dataclass

from mm_assets.monitor.flops import ModelShape, flops_per_token, matrix_params, padded_vocab, size_label


@dataclass(frozen=True)
class RunSpec:
    experiment: str
    model: str  # the reference's `model` label, e.g. "10b" (from the parameter count)
    seq_length: int
    flops_per_token: float
    devices: int  # GPUs, or processes for a CPU run (gpus_per_node: 0)
    device_type: str  # training.cluster.gpu_type, or "cpu"
    peak_flops_per_device: float | None  # None: no peak configured for device_type, MFU is not computed

    def mfu(self, tokens_per_second: float) -> float | None:
        if not self.peak_flops_per_device:
            return None
        return tokens_per_second * self.flops_per_token / (self.devices * self.peak_flops_per_device)


def run_spec(exp, vocab_size: int, peak_flops_per_device: dict[str, float]) -> RunSpec:
    """From an ExperimentConfig and the shards' vocabulary size (model.vocab_size wins when it is a number)."""
    t = exp.training
    m = t.model
    vocab = m.vocab_size if isinstance(m.vocab_size, int) else vocab_size
    shape = ModelShape(num_layers=m.num_layers, hidden_size=m.hidden_size, num_attention_heads=m.num_attention_heads,
                       ffn_hidden_size=m.ffn_hidden_size, seq_length=m.seq_length,
                       vocab_size=padded_vocab(vocab, t.parallelism.tensor_model_parallel_size),
                       num_query_groups=m.num_query_groups, swiglu=m.swiglu)
    cluster = t.cluster
    device_type = (cluster.gpu_type or "gpu") if cluster.gpus_per_node else "cpu"
    return RunSpec(
        experiment=exp.id,
        model=size_label(matrix_params(shape) + (0 if not m.untie_embeddings_and_output_weights
                                                 else m.hidden_size * shape.vocab_size)),
        seq_length=m.seq_length,
        flops_per_token=flops_per_token(shape),
        devices=cluster.nodes * max(cluster.gpus_per_node, 1),
        device_type=device_type,
        peak_flops_per_device=peak_flops_per_device.get(device_type),
    )
