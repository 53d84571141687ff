"""The metric table (valid Prometheus names, units, the reference's dotted names) and FLOPs per token / MFU."""

import re
from types import SimpleNamespace

import pytest

from mm_assets.monitor import metrics as mt
from mm_assets.monitor.flops import ModelShape, flops_per_token, matrix_params, padded_vocab, size_label
from mm_assets.train.cpu.model import flops_per_batch


def test_every_name_is_valid_and_every_reference_name_is_not():
    for m in mt.METRICS:
        assert mt.METRIC_NAME.match(m.name), m.name
        assert not mt.METRIC_NAME.match(m.reference) and m.reference.replace(".", "_") == m.name
        assert all(mt.LABEL_NAME.match(label) for label in m.labels)
        assert (m.type == "counter") == m.name.endswith("_total")
    assert len({m.name for m in mt.METRICS}) == len(mt.METRICS)


def test_units_are_in_the_names():
    units = {m.name: m.unit for m in mt.METRICS}
    assert units["llm_pretrain_training_gpu_memory_used_bytes"] == "bytes"
    assert mt.name("training", "mfu_ratio") and mt.name("training", "throughput_tokens_per_second")
    assert mt.name("training", "last_update_timestamp_seconds")
    assert mt.metric("llm_pretrain_hardware_gpu_utilization").labels == ("experiment", "node_id", "gpu_id")
    with pytest.raises(KeyError, match="not in the metric table"):
        mt.name("training", "losss")


def test_the_issues_names_exist():
    for name in ("llm_pretrain_training_loss", "llm_pretrain_training_grad_norm",
                 "llm_pretrain_training_throughput_tokens_per_second", "llm_pretrain_training_mfu_ratio",
                 "llm_pretrain_hardware_gpu_utilization", "llm_pretrain_data_pipeline_processed_bytes_total"):
        assert mt.metric(name)


REF_10B = ModelShape(num_layers=40, hidden_size=4096, num_attention_heads=32, ffn_hidden_size=11008,
                     seq_length=8192, vocab_size=padded_vocab(192611, 4))


def test_flops_per_token_is_6n_plus_causal_attention():
    n = matrix_params(REF_10B)
    attention_projections = 4 * 4096 * 4096
    mlp = 3 * 4096 * 11008
    assert n == 40 * (attention_projections + mlp) + 4096 * REF_10B.vocab_size
    assert flops_per_token(REF_10B) == 6 * n + 6 * 40 * 8192 * 4096
    assert REF_10B.vocab_size == 193024 and size_label(n + 4096 * REF_10B.vocab_size) == "10b"


def test_the_cpu_trainer_reports_the_same_formula():
    args = SimpleNamespace(hidden_size=64, seq_length=128, num_layers=2, num_attention_heads=4, num_query_groups=2,
                           group_query_attention=True, ffn_hidden_size=176, swiglu=True)
    h, s, layers, kv = 64, 128, 2, 16
    q, k = kv * 4, kv * 2
    # megatron-core's num_floating_point_operations, written out (dense GPT, GQA, SwiGLU, causal)
    expected = 8 * s * 6 * ((h * 176 * 3 + h * (q + 2 * k) + q * h) * layers + h * 512) + 8 * s * s * 6 * q * layers
    assert flops_per_batch(args, 8, 512) == expected


def test_size_labels():
    assert [size_label(n) for n in (9.7e9, 1.2e6, 3_400_000, 950)] == ["10b", "1m", "3m", "950"]
    assert re.fullmatch(r"\d+[kmbt]?", size_label(123456789))
