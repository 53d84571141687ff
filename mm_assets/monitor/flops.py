"""Model FLOPs per token (MFU's numerator: tokens/s × FLOPs per token / (devices × peak FLOP/s per device)).

The formula is the standard one for a dense decoder: 6·N for the weight matrices (forward 2·N, backward 4·N)
plus attention's score and value products, PaLM's 12·L·H·Q·T (Chowdhery et al. 2022, appendix B) halved for
the causal mask, i.e. 6·L·s·d_attn per token; N counts the transformer's matrices and the output layer (the
input embedding is a lookup). It is what Megatron-LM's `num_floating_point_operations` computes for a dense GPT
without MoE/MTP, and what the CPU trainer reports (mm_assets/train/cpu/model.py `flops_per_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

MEGATRON_VOCAB_MULTIPLE = 128  # --make-vocab-size-divisible-by default; Megatron pads to it × TP


@dataclass(frozen=True)
class ModelShape:
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int
    seq_length: int
    vocab_size: int  # padded, as Megatron builds the embedding
    num_query_groups: int | None = None  # None: multi-head attention
    swiglu: bool = True


def padded_vocab(vocab_size: int, tensor_parallel: int = 1, multiple: int = MEGATRON_VOCAB_MULTIPLE) -> int:
    step = multiple * max(1, tensor_parallel)
    return -(-vocab_size // step) * step


def matrix_params(shape: ModelShape) -> int:
    """N: parameters of the weight matrices each token passes through (transformer + output layer)."""
    h = shape.hidden_size
    kv_channels = h // shape.num_attention_heads
    q = kv_channels * shape.num_attention_heads
    k = kv_channels * (shape.num_query_groups or shape.num_attention_heads)
    mlp = h * shape.ffn_hidden_size * (3 if shape.swiglu else 2)
    attention = h * (q + 2 * k) + q * h
    return (mlp + attention) * shape.num_layers + h * shape.vocab_size


def flops_per_token(shape: ModelShape) -> float:
    """Training FLOPs (forward + backward) per token: 6·N + 6·L·s·d_attn (causal attention)."""
    d_attn = (shape.hidden_size // shape.num_attention_heads) * shape.num_attention_heads
    return 6.0 * matrix_params(shape) + 6.0 * shape.num_layers * shape.seq_length * d_attn


def size_label(params: int) -> str:
    """The reference's `model` label ("10b") from a parameter count: 9.7e9 -> "10b", 1.2e6 -> "1m"."""
    for scale, suffix in ((1e12, "t"), (1e9, "b"), (1e6, "m"), (1e3, "k")):
        if params >= scale:
            return f"{params / scale:.0f}{suffix}"
    return str(params)
