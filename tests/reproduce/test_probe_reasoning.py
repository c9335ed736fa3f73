"""The reasoning probe parses the basic level's narration and scores each field against the
reference, with the harness's answer rule (the last complete `<answer>` span)."""

import pytest

from harness.data.synthetic import synthesize
from harness.model.build import init_model
from reproduce.probe_reasoning import probe, read_fields, score

REF = "A yellow square appears in the top right. So the answer is {}."


def _row(question, key, response):
    truth = {"What colour was the object?": "yellow", "What shape was the object?": "square",
             "Where in the frame was the object?": "top right"}[question]
    return question, "free-form", REF.format(truth), f"<answer>{key}</answer>", response


def test_read_fields():
    assert read_fields("<think>A red circle appears in the bottom left. So") == {
        "colour": "red", "shape": "circle", "region": "bottom left"}
    assert read_fields("<think>red circle</think>") is None


def test_score_by_hand():
    rows = [
        # colour asked, read right, answered right
        _row("What colour was the object?", "yellow",
             "<think>A yellow circle appears in the top left. So the answer is yellow.</think><answer>yellow</answer>"),
        # shape asked, read wrong, answered as read (wrong)
        _row("What shape was the object?", "square",
             "<think>A yellow circle appears in the top right. So the answer is circle.</think><answer>circle</answer>"),
        # region asked, read right, repeated answer block: the last span counts (right, follows)
        _row("Where in the frame was the object?", "top right",
             "<think>A blue square appears in the top right. So the answer is top right.</think>"
             "<answer>top right.</think><answer>top right</answer>"),
        # unparsed narration, answered right by luck
        _row("What colour was the object?", "yellow", "<think>no idea</think><answer>yellow</answer>"),
    ]
    r = score(rows)
    assert r["questions"] == 4 and r["unparsed"] == 1
    assert r["accuracy"] == pytest.approx(3 / 4)
    assert r["acc_colour"] == 1.0 and r["acc_shape"] == 0.0 and r["acc_region"] == 1.0
    # over the 3 parsed: colour yellow/yellow/blue -> 2/3; shape circle/circle/square -> 1/3;
    # region top left/top right/top right -> 2/3; every parsed answer names its own reading
    assert r["reads_colour"] == pytest.approx(2 / 3)
    assert r["reads_shape"] == pytest.approx(1 / 3)
    assert r["reads_region"] == pytest.approx(2 / 3)
    assert r["answer_follows_reasoning"] == 1.0


def test_score_rejects_a_reference_of_another_level():
    with pytest.raises(ValueError, match="not a basic-level narration"):
        score([("What colour was the object?", "free-form", "First the red circle moved.", "<answer>red</answer>", "x")])


def test_probe_runs_a_model(tmp_path):
    synthesize(tmp_path / "data", 12, seed=0, difficulty="basic", minutes=(0.2, 0.2), progress=False)
    init_model("vila", "tiny", seed=0).save_pretrained(tmp_path / "model")
    r = probe(tmp_path / "model", tmp_path / "data", split="test.jsonl", frames=4, max_new_tokens=8)
    assert r["questions"] >= 3
    assert 0.0 <= r["accuracy"] <= 1.0
    assert r["unparsed"] == r["questions"]  # 8 tokens of an untrained model narrate nothing
