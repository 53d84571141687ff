"""Metrics, computed by maintained libraries (nothing here re-implements a score):

- BLEU: sacrebleu's corpus BLEU with its defaults (13a tokenisation, exponential smoothing, mixed case); the
  signature string (`nrefs:…|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`) is reported with the score.
  Samples with fewer references than the most in the set are padded with None, which sacrebleu skips.
- ExactMatch: torchmetrics' SQuAD exact match, in percent. Its normalisation (the SQuAD v1.1 script's):
  lower-case, remove punctuation, remove the articles a/an/the, collapse whitespace; a prediction matches when it
  equals any normalised reference.
- Accuracy: the share (0..1) of samples that exact-match, the unit of the reference's leakage rule.
- Perplexity: torchmetrics' Perplexity over every predicted token of the split (exp of the mean token NLL).

A generation's answer is its first line: the continuation up to the first newline, whitespace stripped (a
model without a stop token keeps writing; the canary documents end their answer with a newline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IGNORE_INDEX = -100  # targets torchmetrics' Perplexity skips


@dataclass(frozen=True)
class Score:
    metric: str
    value: float
    detail: str = ""  # e.g. sacrebleu's verbose score
    signature: str = ""  # sacrebleu's signature string (BLEU only)


def answer_of(generated: str) -> str:
    """The answer in a generated continuation: its first non-empty line, stripped."""
    return generated.lstrip().split("\n", 1)[0].strip()


def _squad(predictions: Sequence[str], references: Sequence[Sequence[str]]):
    from torchmetrics.functional.text import squad

    preds = [{"prediction_text": p, "id": str(i)} for i, p in enumerate(predictions)]
    target = [{"answers": {"answer_start": [0] * len(r), "text": list(r)}, "id": str(i)}
              for i, r in enumerate(references)]
    return squad(preds, target)


def exact_matches(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[bool]:
    """Per sample: does the prediction match a reference under SQuAD normalisation?"""
    return [float(_squad([p], [r])["exact_match"]) == 100.0 for p, r in zip(predictions, references)]


def exact_match(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Score:
    return Score("ExactMatch", float(_squad(predictions, references)["exact_match"]), "torchmetrics squad, percent")


def accuracy(correct: Sequence[bool]) -> Score:
    return Score("Accuracy", sum(correct) / len(correct), "share of samples that exact-match")


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> Score:
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    width = max(len(r) for r in references)
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(width)]
    result = metric.corpus_score(list(predictions), streams)
    return Score("BLEU", float(result.score), str(result), str(metric.get_signature()))


def perplexity_meter():
    """torchmetrics' Perplexity accumulator: update(logits (1, T, V), targets (1, T)), then compute()."""
    from torchmetrics.text import Perplexity

    return Perplexity(ignore_index=IGNORE_INDEX)


def generation_scores(metrics: Sequence[str], predictions: Sequence[str],
                      references: Sequence[Sequence[str]]) -> list[Score]:
    """The task's generation metrics, plus Accuracy (the leakage rule reads it) when not listed."""
    correct = exact_matches(predictions, references)
    compute = {"ExactMatch": lambda: exact_match(predictions, references), "BLEU": lambda: bleu(predictions, references),
               "Accuracy": lambda: accuracy(correct)}
    names = list(metrics) + ([] if "Accuracy" in metrics else ["Accuracy"])
    return [compute[name]() for name in names]
