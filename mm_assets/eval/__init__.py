"""Evaluation (reference §B.6): eval task files, datasets, prompts with a video placeholder, metrics from
sacrebleu and torchmetrics, the evaluator program, the canary leakage guard and the decontamination report.

Pure modules (no Dagster) beside the assets in `assets.py`; the checks live in `checks/eval.py`.
"""
