"""The model and optimizer: megatron-core's GPTModel on the CPU, torch optimizers under Megatron's LR schedule."""

from __future__ import annotations

import contextlib
import warnings

from mm_assets.monitor.flops import ModelShape, flops_per_token
from mm_assets.train.cpu.args import Schedule


def install_cpu_shims() -> None:
    """The two patches that let megatron-core 0.16.1 train on the CPU (DESIGN.md §9); this process only.

    RoPE moves its frequencies to `torch.cuda.current_device()`, and attention dropout (and Megatron's
    GPU weight init) enter `get_cuda_rng_tracker().fork()`, which needs CUDA RNG states
    (`model_parallel_cuda_manual_seed`). On one CPU process there is nothing to fork: dropout draws from the
    CPU generator, which the checkpoint saves.
    """
    import torch
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    torch.cuda.current_device = lambda: torch.device("cpu")
    get_cuda_rng_tracker().fork = lambda *_, **__: contextlib.nullcontext()


def build_model(args, vocab_padded: int):
    import torch
    import torch.nn.functional as F

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Apex is not installed. Falling back to Torch Norm", cuda graph scope
        from megatron.core.models.gpt import GPTModel
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
        from megatron.core.transformer.transformer_config import TransformerConfig

        config = TransformerConfig(
            num_layers=args.num_layers,
            hidden_size=args.hidden_size,
            ffn_hidden_size=args.ffn_hidden_size or 4 * args.hidden_size,
            num_attention_heads=args.num_attention_heads,
            num_query_groups=args.num_query_groups if args.group_query_attention else None,
            normalization=args.normalization,
            gated_linear_unit=args.swiglu,
            activation_func=F.silu if args.swiglu else F.gelu,
            add_bias_linear=not args.disable_bias_linear,
            hidden_dropout=args.hidden_dropout,
            attention_dropout=args.attention_dropout,
            init_method_std=args.init_method_std,
            use_cpu_initialization=True,  # Megatron's GPU init forks the CUDA RNG
            params_dtype=torch.float32,
            pipeline_dtype=torch.float32,
        )
        return GPTModel(
            config=config,
            transformer_layer_spec=get_gpt_layer_local_spec(normalization=args.normalization),
            vocab_size=vocab_padded,
            max_sequence_length=args.max_position_embeddings or args.seq_length,
            pre_process=True,
            post_process=True,
            share_embeddings_and_output_weights=not args.untie_embeddings_and_output_weights,
            position_embedding_type=args.position_embedding_type,
            rotary_base=args.rotary_base,
        )


def build_optimizer(args, model, sched: Schedule):
    """Plain torch optimizer with Megatron's parameter groups (no decay for biases and 1-D params) and
    megatron-core's OptimizerParamScheduler driving lr and weight decay, stepped in samples."""
    import torch
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(".bias") or param.dim() == 1 else decay).append(param)
    groups = [{"params": decay, "wd_mult": 1.0}, {"params": no_decay, "wd_mult": 0.0}]
    if args.optimizer == "adam":
        optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(args.adam_beta1, args.adam_beta2),
                                      eps=args.adam_eps, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=args.sgd_momentum, weight_decay=args.weight_decay)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = OptimizerParamScheduler(
            optimizer,
            init_lr=args.lr_warmup_init,
            max_lr=args.lr,
            min_lr=args.min_lr,
            lr_warmup_steps=sched.lr_warmup_steps,
            lr_decay_steps=sched.lr_decay_steps,
            lr_decay_style=args.lr_decay_style,
            start_wd=args.weight_decay,
            end_wd=args.weight_decay,
            wd_incr_steps=sched.train_samples,
            wd_incr_style="constant",
        )
    return optimizer, scheduler


def flops_per_batch(args, batch_size: int, vocab_padded: int) -> float:
    """Megatron's num_floating_point_operations for a dense GPT (forward + backward): mm_assets.monitor.flops."""
    shape = ModelShape(
        num_layers=args.num_layers,
        hidden_size=args.hidden_size,
        num_attention_heads=args.num_attention_heads,
        ffn_hidden_size=args.ffn_hidden_size or 4 * args.hidden_size,
        seq_length=args.seq_length,
        vocab_size=vocab_padded,
        num_query_groups=args.num_query_groups if args.group_query_attention else None,
        swiglu=args.swiglu,
    )
    return batch_size * args.seq_length * flops_per_token(shape)
