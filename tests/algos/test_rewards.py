import math
import textwrap

import pytest
import torch

from harness.algos.rewards import (
    accuracy_reward,
    choice_accuracy,
    combined_reward,
    extract_answer,
    extract_choice,
    format_reward,
    load_reward_fn,
    normalize_text,
    numeric_accuracy,
    safe_reward,
    text_accuracy,
)

# (response, expected format, expected multiple-choice accuracy against key "B")
MC_TABLE = [
    ("<think>the square is red</think><answer>B</answer>", 1.0, 1.0),
    ("  \n<think>r</think>\n\n<answer> B </answer>\n", 1.0, 1.0),  # outer whitespace stripped
    ("<think>multi\nline</think><answer>B</answer>", 1.0, 1.0),  # DOTALL
    ("<answer>B</answer>", 0.0, 1.0),  # missing think
    ("<think>r</think><answer>B</answer> trailing text", 0.0, 1.0),  # text after answer
    ("preamble <think>r</think><answer>B</answer>", 0.0, 1.0),  # text before think
    ("<think>r</think> so: <answer>B</answer>", 0.0, 1.0),  # text between
    ("<think>r<answer>B</answer>", 0.0, 1.0),  # think never closed
    ("<THINK>r</THINK><ANSWER>B</ANSWER>", 0.0, 0.0),  # tags are case-sensitive
    # the authors' regex is permissive: .*? may span tags in a full match, so nested tags
    # and several answer spans pass the format check; accuracy reads the innermost/last
    ("<think>r</think><answer><answer>B</answer></answer>", 1.0, 1.0),
    ("<think><think>r</think></think><answer>B</answer>", 1.0, 1.0),
    ("<think>r</think><answer>A</answer><answer>B</answer>", 1.0, 1.0),
    ("<think>r</think><answer>B</answer><answer>A</answer>", 1.0, 0.0),
    ("<think>r</think><answer>b</answer>", 1.0, 1.0),  # lower case
    ("<think>r</think><answer>(B)</answer>", 1.0, 1.0),
    ("<think>r</think><answer>B.</answer>", 1.0, 1.0),
    ("<think>r</think><answer>B. the red square</answer>", 1.0, 1.0),
    ("<think>r</think><answer>(B) the red square</answer>", 1.0, 1.0),
    ("<think>r</think><answer>Option B</answer>", 1.0, 1.0),
    ("<think>r</think><answer>The answer is b</answer>", 1.0, 1.0),
    ("<think>r</think><answer>(C)</answer>", 1.0, 0.0),
    ("<think>r</think><answer>A or B</answer>", 1.0, 0.0),  # several letters
    ("<think>r</think><answer>A, B</answer>", 1.0, 0.0),
    ("<think>r</think><answer>the red square</answer>", 1.0, 0.0),  # no letter
    ("<think>r</think><answer></answer>", 1.0, 0.0),  # empty answer
    ("<think>r</think><answer>B", 0.0, 0.0),  # answer never closed
    ("B", 0.0, 0.0),  # no answer span: no fallback to the whole text
    ("", 0.0, 0.0),
]


@pytest.mark.parametrize("response, fmt, acc", MC_TABLE)
def test_format_and_choice_table(response, fmt, acc):
    assert format_reward(response) == fmt
    assert choice_accuracy(response, "B") == acc
    assert choice_accuracy(response, "<answer>B</answer>") == acc  # authors' key format


def test_choice_other_keys():
    assert choice_accuracy("<answer>(C)</answer>", "C") == 1.0
    assert choice_accuracy("<answer>(c)</answer>", "<answer>(C)</answer>") == 1.0
    assert choice_accuracy("<answer>A, A</answer>", "A") == 1.0  # one distinct letter
    with pytest.raises(ValueError, match="names no option letter"):
        choice_accuracy("<answer>A</answer>", "the red square")


@pytest.mark.parametrize(
    "answer, letter",
    [
        ("B", "B"),
        ("b", "B"),
        ("[d]", "D"),
        ("B)", "B"),
        ("Answer: (c)", "C"),
        ("B, the red one", "B"),
        ("A. or B.", None),
        ("BC", None),
        ("", None),
    ],
)
def test_extract_choice(answer, letter):
    assert extract_choice(answer) == letter


def test_extract_answer():
    assert extract_answer("<answer> x </answer> <answer>\n y\n</answer>") == "y"
    assert extract_answer("<answer><answer>z</answer></answer>") == "z"
    assert extract_answer("<answer>a</answer><answer>unclosed") == "a"
    assert extract_answer("no tags") is None


@pytest.mark.parametrize(
    "answer, key, acc",
    [
        ("3", "3", 1.0),
        ("3.0", "3", 1.0),
        ("about 3 apples.", "<answer>3</answer>", 1.0),
        ("1,000", "1000", 1.0),
        ("1000", "1,000", 1.0),
        ("-2.5", "-2.5", 1.0),
        ("2.5", "-2.5", 0.0),
        ("1e3", "1000", 1.0),
        ("1000000.5", "1000000", 1.0),  # relative error 5e-7 < 1e-6
        ("1000002", "1000000", 0.0),  # 2e-6
        ("3.0 (that is, 3)", "3", 1.0),  # one distinct number
        ("3 or 4", "3", 0.0),  # ambiguous
        ("3-4", "3", 0.0),
        ("three", "3", 0.0),
        ("mp4", "4", 0.0),  # digits inside a word are not a number
    ],
)
def test_numeric_accuracy(answer, key, acc):
    assert numeric_accuracy(f"<think>r</think><answer>{answer}</answer>", key) == acc


def test_numeric_bad_key():
    with pytest.raises(ValueError, match="exactly one number"):
        numeric_accuracy("<answer>3</answer>", "three")
    assert numeric_accuracy("3", "3") == 0.0  # no answer span


def test_normalize_and_text_accuracy():
    assert normalize_text("  The Red-Square, an  apple!! ") == "redsquare apple"
    assert text_accuracy("<answer>A red apple.</answer>", "red apple") == 1.0
    assert text_accuracy("<answer>red apples</answer>", "<answer>red apple</answer>") == 0.0
    with pytest.raises(ValueError, match="empty after normalisation"):
        text_accuracy("<answer>x</answer>", "The")


def test_accuracy_reward_dispatch():
    resp = "<think>r</think><answer>B</answer>"
    assert accuracy_reward(resp, "B", "multiple choice") == 1.0
    assert accuracy_reward(resp, "B", "Multiple_Choice") == 1.0
    assert accuracy_reward("<answer>2.0</answer>", "2", "numerical") == 1.0
    assert accuracy_reward("<answer>Stop sign</answer>", "stop sign", "OCR") == 1.0
    assert accuracy_reward("<answer>the cat</answer>", "cat", "free-form") == 1.0
    with pytest.raises(ValueError, match="unknown problem_type 'regression'"):
        accuracy_reward(resp, "B", "regression")


def test_combined_reward():
    # 0.9 * acc + 0.1 * format
    good = combined_reward("<think>r</think><answer>B</answer>", "B", "multiple choice")
    assert good == {"reward": pytest.approx(1.0), "accuracy": 1.0, "format": 1.0}
    no_think = combined_reward("<answer>B</answer>", "B", "multiple choice")
    assert no_think["reward"] == pytest.approx(0.9)
    wrong = combined_reward("<think>r</think><answer>C</answer>", "B", "multiple choice")
    assert wrong["reward"] == pytest.approx(0.1)
    custom = combined_reward("<answer>B</answer>", "B", "multiple choice", 0.5, 0.5)
    assert custom["reward"] == pytest.approx(0.5)


# ---------------------------------------------------------------- user reward functions


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_mod.py").write_text(
        textwrap.dedent(
            """
            import math

            NOT_A_FUNCTION = 3

            def length_reward(text, key):
                return min(len(text), 10) / 10

            def broken(text, key):
                raise KeyError("no field 'answer' in record")

            def nan(text, key):
                return math.nan

            def words(text, key):
                return "1.0"

            class Scorer:
                @staticmethod
                def score(text, key):
                    return 1
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_rewards_mod"


def test_load_reward_fn(user_module):
    fn = load_reward_fn(f"{user_module}:length_reward")
    assert fn("abcde", "k") == 0.5
    assert load_reward_fn(f"{user_module}:Scorer.score")("x", "k") == 1


def test_load_reward_fn_errors(user_module):
    with pytest.raises(ValueError, match="package.module:function"):
        load_reward_fn(user_module)
    with pytest.raises(ImportError, match="cannot import module 'no_such_mod_xyz'"):
        load_reward_fn("no_such_mod_xyz:fn")
    with pytest.raises(AttributeError, match="has no 'missing'"):
        load_reward_fn(f"{user_module}:missing")
    with pytest.raises(TypeError, match="not callable"):
        load_reward_fn(f"{user_module}:NOT_A_FUNCTION")


def test_safe_reward(user_module):
    fn = load_reward_fn(f"{user_module}:length_reward")
    assert safe_reward(fn, "abcde", key="k") == (0.5, None)
    value, err = safe_reward(load_reward_fn(f"{user_module}:broken"), "x", "k")
    assert value == 0.0 and "KeyError" in err and "no field 'answer'" in err
    value, err = safe_reward(load_reward_fn(f"{user_module}:nan"), "x", "k")
    assert value == 0.0 and "non-finite" in err
    value, err = safe_reward(load_reward_fn(f"{user_module}:words"), "x", "k")
    assert value == 0.0 and "non-numeric" in err


@pytest.mark.parametrize(
    "returned, expected",
    [(True, 1.0), (2, 2.0), (torch.tensor(0.25), 0.25), (torch.tensor([0.5]), 0.5)],
)
def test_safe_reward_accepts_numbers(returned, expected):
    assert safe_reward(lambda: returned) == (expected, None)


@pytest.mark.parametrize(
    "returned", [None, {"reward": 1.0}, [1.0], torch.ones(2), math.inf, -math.inf, b"1"]
)
def test_safe_reward_rejects_non_numbers(returned):
    value, err = safe_reward(lambda: returned)
    assert value == 0.0 and err


def test_safe_reward_lets_keyboard_interrupt_through():
    def stop():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        safe_reward(stop)
