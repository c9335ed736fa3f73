"""Held-out evaluation: greedy accuracy, and the accuracy of sampled answers (pass@1 over k
samples) from the same prompts."""

import pytest

from harness.config import SFTConfig, load_config
from harness.data.dataset import QADataset, SkipLedger
from harness.data.synthetic import synthesize
from harness.model.build import load_model
from harness.trainer.evaluate import evaluate_accuracy
from harness.trainer.sft import train_sft
from tests.helpers import tiny_overrides


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """A tiny model trained on a few basic-level questions (one-sentence reasoning) until it
    answers them: its greedy answers are then mostly right and well-formed, which makes the
    comparisons below non-trivial. Evaluated on those same questions."""
    data = tmp_path_factory.mktemp("basic")
    synthesize(data, 6, seed=0, difficulty="basic", minutes=(0.5, 0.5), progress=False)
    out = tmp_path_factory.mktemp("memorised")
    overrides = tiny_overrides(data, out, **{
        "data.eval": None, "run.steps": 150, "run.save_every": 150, "optim.lr": 3e-3,
        "optim.warmup_steps": 0, "train.batch_size": 4, "train.freeze_vision": False})
    train_sft(load_config("configs/sft/toy-cpu.yaml", overrides, SFTConfig))
    model = load_model(out / "final").eval()
    return model, QADataset(data / "sft.jsonl", 4, SkipLedger(1.0))


def test_greedy_only_unless_samples_are_asked_for(memorised):
    model, data = memorised
    result = evaluate_accuracy(model, data, max_new_tokens=64)
    assert result["eval/questions"] == len(data.records)
    assert result["eval/accuracy"] >= 0.5 and result["eval/format_rate"] == 1.0  # learnt (measured 0.67)
    assert "eval/sampled_accuracy" not in result


def test_sampling_near_zero_temperature_scores_like_greedy(memorised):
    model, data = memorised
    greedy = evaluate_accuracy(model, data, max_new_tokens=64)
    cold = evaluate_accuracy(model, data, max_new_tokens=64, samples=3, temperature=1e-4)
    assert cold["eval/sampled_accuracy"] == greedy["eval/accuracy"]
    assert cold["eval/sampled_format_rate"] == greedy["eval/format_rate"]


def test_hot_sampling_scores_below_greedy_and_is_reproducible(memorised):
    model, data = memorised
    hot = evaluate_accuracy(model, data, max_new_tokens=64, samples=4, temperature=3.0, seed=1)
    assert hot["eval/sampled_accuracy"] < hot["eval/accuracy"]  # near-uniform tokens rarely answer
    assert evaluate_accuracy(model, data, max_new_tokens=64, samples=4, temperature=3.0, seed=1) == hot


def test_negative_samples_are_refused(memorised):
    model, data = memorised
    with pytest.raises(ValueError, match="samples"):
        evaluate_accuracy(model, data, max_new_tokens=8, samples=-1)
