"""Math answer checking with Math-Verify: extraction order, numbers / fractions / LaTeX /
\\boxed{}, wrong answers, bounded work in any thread, the authors' math.py and r1v.py rewards
(NVlabs/Long-RL examples/reward_function/) and the plug-in adapters."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.algos import math_reward as mr
from harness.algos.math_reward import (
    extract_boxed,
    extract_math_answer,
    last_number,
    math_accuracy,
    math_accuracy_reward,
    math_check,
    math_overall_reward,
    math_reward,
    parse_key,
    r1v_overall_reward,
    r1v_reward,
)
from harness.algos.rewards import load_reward_fn, safe_reward

# (response, key, expected accuracy)
ACCURACY_TABLE = [
    # plain numbers, negatives, decimals
    ("The answer is \\boxed{42}.", "42", 1.0),
    ("\\boxed{-5}", "-5", 1.0),
    ("\\boxed{5}", "-5", 0.0),
    ("<answer>-7</answer>", "-7", 1.0),
    ("<answer>7</answer>", "-7", 0.0),
    ("<answer>2.50</answer>", "2.5", 1.0),
    ("<answer>17</answer>", "18", 0.0),
    # fractions in every spelling, against every spelling of the key
    ("so \\boxed{\\frac{3}{4}}", "0.75", 1.0),
    ("\\boxed{\\dfrac{3}{4}}", "3/4", 1.0),
    ("<answer>3/4</answer>", "\\frac{3}{4}", 1.0),
    ("<answer>0.75</answer>", "<answer>3/4</answer>", 1.0),
    ("\\boxed{-\\frac{1}{2}}", "-0.5", 1.0),
    ("\\boxed{\\frac{2}{3}}", "\\frac{3}{4}", 0.0),
    ("<answer>1/3</answer>", "0.333", 0.0),  # 6-digit rounding: 0.333 is not 1/3
    # thousands separators as GSM8K writes them, "$" and units around the number
    ("The total is 1,234 apples", "1234", 1.0),
    ("<answer>$1,234</answer>", "1,234", 1.0),
    ("\\boxed{1,234,567}", "1234567", 1.0),
    ("<answer>18 apples</answer>", "18", 1.0),
    ("<answer>\\$18.00</answer>", "18", 1.0),
    ("\\boxed{18 \\text{ dollars}}", "18", 1.0),
    ("\\boxed{5\\text{ cm}^2}", "5", 1.0),
    ("He pays $18.", "18", 1.0),
    ("<answer>$19</answer>", "18", 0.0),
    ("<answer>10\\%</answer>", "10\\%", 1.0),
    # LaTeX expressions, sets, intervals, equations, text answers
    ("\\boxed{x^2+1}", "1+x^2", 1.0),
    ("\\boxed{x^2-1}", "x^2+1", 0.0),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt{2}}{2}", 1.0),
    ("\\boxed{2\\pi}", "2", 0.0),  # not read as the number 2
    ("\\boxed{(1,2)}", "(1,2)", 1.0),
    ("\\boxed{3, 5}", "5, 3", 1.0),
    ("x = \\boxed{3}", "3", 1.0),
    ("\\boxed{x=3}", "3", 1.0),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)", 1.0),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}", 1.0),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", 1.0),
    # the key wrapped in \boxed{} or <answer> tags
    ("<answer>4</answer>", "\\boxed{4}", 1.0),
    ("\\boxed{4}", "<answer>\\boxed{4}</answer>", 1.0),
    # no answer at all
    ("no numbers here", "5", 0.0),
    ("", "5", 0.0),
]


@pytest.mark.parametrize(("response", "key", "expected"), ACCURACY_TABLE)
def test_math_accuracy_table(response, key, expected):
    assert math_accuracy(response, key) == expected


def test_extraction_order_boxed_then_answer_span_then_last_number():
    assert extract_math_answer("<answer>3</answer> but \\boxed{4} 5") == "4"
    assert extract_math_answer("I think 3. <answer>4</answer> 5") == "4"
    assert extract_math_answer("I think 3, then 4.") == "4"
    assert extract_math_answer("nothing") is None
    assert math_accuracy("<answer>3</answer> so \\boxed{4}", "4") == 1.0
    assert math_accuracy("<answer>3</answer> so \\boxed{4}", "3") == 0.0  # the box wins
    assert math_accuracy("first \\boxed{3} then \\boxed{4}", "4") == 1.0  # the last box


def test_extract_boxed_braces_and_forms():
    assert extract_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{4} then \\boxed{3") == "4"  # a cut-off last box is skipped
    assert extract_boxed("\\boxed 5 apples") == "5"
    assert extract_boxed("\\fbox{7}") == "7"
    assert extract_boxed("\\boxed {7}") == "7"
    assert extract_boxed("\\boxedx") is None
    assert extract_boxed("\\boxed{}") is None
    assert extract_boxed("no box") is None


@pytest.mark.parametrize(("text", "number"), [
    ("5-3 is 2", "2"), ("it is -3", "-3"), ("1,234 apples", "1,234"), ("about 2.5.", "2.5"),
    ("3/4 of them", "3/4"), ("it is 3/4.", "3/4"), ("(2)-3", "3"), ("mp4 file", None), ("x", None), ("then 10, 20", "20"),
])
def test_last_number(text, number):
    assert last_number(text) == number


@pytest.mark.parametrize("key", ["", "   ", "<answer> </answer>", "9^{9^{9}}"])
def test_unreadable_key_raises_and_safe_reward_counts_it(key):
    with pytest.raises(ValueError):
        math_accuracy("\\boxed{1}", key)
    reward, err = safe_reward(math_accuracy_reward, "\\boxed{1}", key, "numerical")
    assert reward == 0.0 and err.startswith("ValueError")


def test_math_check_reports_what_it_read():
    assert math_check("so \\boxed{\\frac{1}{2}}", "0.5") == ("\\frac{1}{2}", True)
    assert math_check("I give up", "0.5") == ("", False)


@pytest.mark.parametrize("answer", ["9^{9^{9}}", "10^{10^{10}}", "\\frac{1}{9^{9^9}}", "(10^{100})!",
                                    "2^{-10^{10}}"])
def test_runaway_answers_score_zero_quickly(answer):
    """Math-Verify's verify runs for ever on these without its signal alarm; the guard
    refuses them before it is called, in any thread."""
    start = time.monotonic()
    assert math_accuracy(f"\\boxed{{{answer}}}", "5") == 0.0
    assert time.monotonic() - start < 5.0


def test_long_answers_are_not_parsed():
    assert math_accuracy("<answer>" + "1+" * mr.MAX_ANSWER_CHARS + "1</answer>", "5") == 0.0


def test_large_but_reasonable_values_still_verify():
    assert math_accuracy("\\boxed{2^{100}}", "1267650600228229401496703205376") == 1.0
    assert math_accuracy("\\boxed{20!}", "2432902008176640000") == 1.0


def test_works_in_worker_threads():
    """Math-Verify's default signal timeouts fail off the main thread; ours work there, with
    or without timeout_s (ignored off the main thread)."""
    from math_verify import parse

    def default_parse():
        return parse("$1$")  # parsing_timeout=5: signal.alarm

    def ours(timeout_s):
        return [math_accuracy(r, k, timeout_s=timeout_s) for r, k, _ in ACCURACY_TABLE[:12]]

    expected = [e for _, _, e in ACCURACY_TABLE[:12]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        with pytest.raises(ValueError, match="thread"):
            pool.submit(default_parse).result()
        assert pool.submit(ours, None).result() == expected
        assert pool.submit(ours, 5).result() == expected
        threaded = pool.submit(math_accuracy, "\\boxed{9^{9^{9}}}", "5")
        assert threaded.result(timeout=10) == 0.0
    assert threading.current_thread() is threading.main_thread()
    assert ours(5) == expected  # the main thread may use Math-Verify's alarm as well


def test_no_timeout_warning_logged(caplog):
    with caplog.at_level(logging.WARNING):
        mr.parse_math("3/4")
        math_accuracy("\\boxed{1}", "1")
    assert not [r for r in caplog.records if "Timeout is disabled" in r.getMessage()]


def test_parse_key_is_cached_and_not_mutated():
    first = parse_key("\\frac{3}{4}")
    first.append("junk")
    assert "junk" not in parse_key("\\frac{3}{4}")


# --- the authors' math.py: <think>..</think> then \boxed{}, 0.9 x accuracy + 0.1 x format ---

MATH_PY_TABLE = [  # (response, format, accuracy) against key "4"
    ("<think>2+2</think> so \\boxed{4}", 1.0, 1.0),
    ("<think>2+2</think>\\boxed{4}.", 1.0, 1.0),
    ("<think>2+2</think>\\boxed{5}", 1.0, 0.0),
    ("\\boxed{4}", 0.0, 1.0),  # no think block
    ("<think>2+2</think><answer>4</answer>", 0.0, 0.0),  # only the box counts
    ("< think >2+2</ think > \\boxed{4}", 1.0, 1.0),  # spaces around < > / removed first
]


@pytest.mark.parametrize(("response", "fmt", "acc"), MATH_PY_TABLE)
def test_math_reward_authors_rule(response, fmt, acc):
    out = math_reward(response, "<answer>4</answer>")
    assert (out["format"], out["accuracy"]) == (fmt, acc)
    assert out["overall"] == pytest.approx(0.9 * acc + 0.1 * fmt)


def test_math_reward_format_is_a_full_match_from_the_start():
    # `<think>.*</think>.*\\boxed\\{.*\\}.*` fullmatched: text before <think> fails
    assert math_reward("preamble <think>x</think>\\boxed{4}", "4")["format"] == 0.0
    assert math_reward("<think>x</think>\\boxed{4}", "4", format_weight=0.5)["overall"] == 1.0
    assert math_reward("<think>x</think>\\boxed{3}", "4", format_weight=0.5)["overall"] == 0.5


# --- the authors' r1v.py: <think>..</think>\s*<answer>..</answer>, spaces removed in the answer ---


def test_r1v_reward_authors_rule():
    good = r1v_reward("<think>x</think>\n<answer> 4 </answer>", "<answer>4</answer>")
    assert good == {"overall": 1.0, "format": 1.0, "accuracy": 1.0}
    wrong = r1v_reward("<think>x</think><answer>5</answer>", "4")
    assert wrong == {"overall": pytest.approx(0.1), "format": 1.0, "accuracy": 0.0}
    # not stripped before the full match: leading whitespace fails the format
    assert r1v_reward(" <think>x</think><answer>4</answer>", "4")["format"] == 0.0
    # spaces and newlines removed before the answer span is read
    assert r1v_reward("<think>x</think><answer>1 234</answer>", "1234")["accuracy"] == 1.0
    # the first span, not the last
    assert r1v_reward("<answer>4</answer><answer>5</answer>", "4")["accuracy"] == 1.0
    # no span: the whole response is the answer
    assert r1v_reward("4", "4") == {"overall": pytest.approx(0.9), "format": 0.0, "accuracy": 1.0}
    # any failure scores 0, an unreadable key included (their `except Exception`)
    assert r1v_reward("<think>x</think><answer>4</answer>", "")["accuracy"] == 0.0
    assert r1v_reward("<think>x</think><answer>4</answer>", "4", format_weight=0.5)["overall"] == 1.0


# --- plug-ins: algo.reward_fn "module:function", called as accuracy_fn(text, key, problem_type) ---


@pytest.mark.parametrize(("spec", "text", "key", "problem_type", "expected"), [
    ("harness.algos.math_reward:math_accuracy_reward", "<think>t</think><answer>3/4</answer>",
     "<answer>0.75</answer>", "numerical", 1.0),
    ("harness.algos.math_reward:math_accuracy_reward", "<answer>B</answer>", "<answer>B</answer>",
     "multiple choice", 1.0),
    ("harness.algos.math_reward:math_accuracy_reward", "<answer>C</answer>", "<answer>B</answer>",
     "Multiple_Choice", 0.0),
    ("harness.algos.math_reward:math_overall_reward", "<think>t</think>\\boxed{7}", "<answer>7</answer>",
     "numerical", 1.0),
    ("harness.algos.math_reward:math_overall_reward", "\\boxed{7}", "<answer>7</answer>", "numerical", 0.9),
    ("harness.algos.math_reward:r1v_overall_reward", "<think>t</think><answer>7</answer>",
     "<answer>7</answer>", "free-form", 1.0),
    ("harness.algos.math_reward:r1v_overall_reward", "<think>t</think><answer>8</answer>",
     "<answer>7</answer>", "numerical", 0.1),
])
def test_plugins_load_and_score_as_the_trainer_calls_them(spec, text, key, problem_type, expected):
    fn = load_reward_fn(spec)
    reward, err = safe_reward(fn, text, key, problem_type)
    assert err is None and reward == pytest.approx(expected)


def test_plugin_functions_are_the_module_functions():
    assert load_reward_fn("harness.algos.math_reward:math_accuracy_reward") is math_accuracy_reward
    assert math_overall_reward("<think>t</think>\\boxed{7}", "7", "numerical") == 1.0
    assert r1v_overall_reward("<think>t</think><answer>7</answer>", "7", "numerical") == 1.0
