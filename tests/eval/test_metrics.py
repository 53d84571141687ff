"""Metric values against the libraries' own documented values."""

import math

import pytest
import torch

from mm_assets.eval.metrics import (
    accuracy,
    answer_of,
    bleu,
    exact_match,
    exact_matches,
    generation_scores,
    perplexity_meter,
)


def test_bleu_is_sacrebleus_readme_example():
    # sacrebleu's README (Python API): two reference streams, three hypotheses.
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    score = bleu(hyps, list(zip(*refs)))  # ours takes references per sample
    assert round(score.value, 2) == 48.53
    assert score.detail == "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)"
    assert score.signature == "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def test_bleu_with_a_varying_number_of_references():
    one = bleu(["the cat sat on the mat today"], [["the cat sat on the mat today"]])
    assert one.value == pytest.approx(100.0) and one.signature.startswith("nrefs:1|")
    mixed = bleu(["the cat sat on the mat", "a dog ran in the park"],
                 [["the cat sat on the mat"], ["a dog ran in the park", "a dog runs in a park"]])
    assert mixed.value == pytest.approx(100.0) and mixed.signature.startswith("nrefs:var|")


def test_exact_match_is_squad_normalised():
    # torchmetrics' squad docstring example: an exact answer scores 100 (percent).
    assert exact_match(["1976"], [["1976"]]).value == 100.0
    # SQuAD normalisation: case, punctuation, articles and whitespace do not count; anything else does.
    assert exact_matches(["The  Cat!", "cats", "an apple", "440 Hz"], [["cat"], ["cat"], ["Apple."], ["440 hz", "440"]]) \
        == [True, False, True, True]
    assert exact_match(["cat", "dog"], [["cat"], ["cow"]]).value == 50.0
    assert accuracy([True, False, True, True]).value == 0.75


def test_generation_scores_always_carry_accuracy():
    scores = generation_scores(["BLEU"], ["a b c d e"], [["a b c d e"]])
    assert [s.metric for s in scores] == ["BLEU", "Accuracy"] and scores[1].value == 1.0


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    meter = perplexity_meter()
    meter.update(torch.zeros(1, 5, 7), torch.tensor([[0, 1, 2, 3, 4]]))
    assert float(meter.compute()) == pytest.approx(7.0)
    # a peaked prediction: exp of the mean negative log-likelihood
    logits = torch.tensor([[[math.log(3.0), 0.0]]])  # p(0) = 3/4
    meter = perplexity_meter()
    meter.update(logits, torch.tensor([[0]]))
    assert float(meter.compute()) == pytest.approx(4 / 3)


def test_the_answer_is_the_first_line():
    assert answer_of(" 440 Hz\nMM-CANARY-abc") == "440 Hz"
    assert answer_of("\n\n testsrc \nmore") == "testsrc"
    assert answer_of("") == ""
