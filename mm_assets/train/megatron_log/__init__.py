"""Megatron's text log, both ways: the lines its `training_log` prints, and their conversion to the reference's
JSON Lines (§B.4), in batch or while the log is still being written.

Megatron writes no JSON logs (DESIGN.md §6). The formats follow NVIDIA/Megatron-LM main (d98e8a64, 2026-08-22):

    training_log (training.py):
     [2026-11-29 04:00:00.123456] iteration      100/    1000 | consumed samples:         3200 |
      elapsed time per iteration (ms): 81.2 | throughput per GPU (TFLOP/s/GPU): 0.0 |
      learning rate: 9.500000E-05 | global batch size:    32 | lm loss: 2.854000E+00 | loss scale: 1.0 |
      grad norm: 0.980 | number of skipped iterations:   0 | number of nan iterations:   0 |
    evaluate_and_print_results (between two lines of dashes):
     validation loss at iteration 100 | lm loss value: 2.854000E+00 | lm loss PPL: 1.735917E+01 |
    report_memory (utils):
     [Rank 0] (after 100 iterations) memory (MB) | allocated: 1.0 | max allocated: 2.0 | reserved: 3.0 | ...
    save_checkpoint (checkpointing.py):
     [2026-11-29 04:00:00.123456] saving checkpoint at iteration     100 to /ckpt in torch format

(one training line per log interval, on one physical line). Older Megatron prints the time without
microseconds; both parse. Quirks the parser absorbs: a loss that is NaN, or an interval whose iterations were
all skipped, is left out of the line (`avg >= 0` fails) or printed as 0 — both become `loss: null`; the time is
the node's local time without a zone (`tz` says which; our CPU trainer prints UTC); GPU memory is printed only
by separate report lines (iterations 1 and 2, and every `--log-memory-interval`), so `gpu_mem_used_gb` is the
latest report printed before the record, or None.

events.py holds what a line means (TrainingRecord, ValidationRecord, …), parse.py parses one line,
stream.py whole logs and growing ones (`parse_log`, the incremental `MegatronLogParser`, the JSONL writers) and
format.py prints the lines (the CPU trainer's log).
"""
