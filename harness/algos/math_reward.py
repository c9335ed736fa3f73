"""Math answer checking with Math-Verify (HF `math-verify`), and the authors' two math rewards.

`math_accuracy(text, key)` is 1.0 iff the response's final answer equals the key as
mathematics (Math-Verify's `parse` + `verify`: numbers, fractions, LaTeX, sets, intervals,
matrices, equations "x=3" against "3", percentages, units and "$" around numbers). The
response's answer is, in this order:

1. the contents of the last complete `\\boxed{...}` (or `\\fbox{...}`) anywhere in the text;
2. else the last complete `<answer>...</answer>` span (the repo's own format,
   `rewards.extract_answer`);
3. else the last number written in the text ("-3", "1,234", "2.5", "3/4").

The key may be bare ("42", "3/4", "\\frac{3}{4}", "0.75", "1,234", "x^2+1", "\\text{(C)}") or
wrapped ("<answer>42</answer>", the records' format). A key Math-Verify cannot read at all is a
dataset bug and raises ValueError, as the keys of `rewards.py` do; the trainer's `safe_reward`
turns it into a counted, logged zero.

How a string is handed to Math-Verify: its `parse` only reads LaTeX between delimiters
($...$, \\[...\\], \\boxed{}) and otherwise falls back to plain expressions, where "2\\pi" reads
as 2 and "x^2+1" not at all. So a string with LaTeX markers (`\\ ^ _ { }`) or with no words is
parsed as `\\boxed{string}`; plain prose ("18 apples", "The answer is 18") is parsed as it is,
where Math-Verify picks the number out of it ("18 dollars" inside \\boxed{} would read as
18*d*o*l*l*a*r*s). Each way falls back to the other when it finds nothing.

Timeouts, and why these settings: Math-Verify bounds its work with `signal.alarm` by default
(`parse(..., parsing_timeout=5)`, `verify(..., timeout_seconds=5)`). Signals only work in the
main thread: anywhere else both raise ValueError ("signal only works in main thread"), and in
the main thread the alarm silently cancels any other SIGALRM timer (pytest-timeout's, a
caller's). So this module passes `parsing_timeout=None, timeout_seconds=None` (no signals,
same result in every thread) and bounds the work itself, before anything is evaluated:
answers longer than MAX_ANSWER_CHARS are not parsed (score 0), and a parsed answer whose
exact value would need more than MAX_DIGITS digits (power towers such as 9^{9^{9}}, on
which `verify` runs for ever, or huge factorials) is not verified (score 0). A caller on the
main thread who wants Math-Verify's own alarm as well can pass `timeout_s`; off the main
thread it is ignored rather than failing.

The authors' rewards (NVlabs/Long-RL, `examples/reward_function/math.py` and `r1v.py`, commit
97abc844) grade with `mathruler.grader.grade_answer`; `math_reward` and `r1v_reward` keep their
format rules, answer extraction and weighting and grade with Math-Verify instead (see each).

Plug-ins for the RL recipe (`algo.reward_fn: module:function`): the trainer calls
`accuracy_fn(text, record.answer, record.problem_type)` through `safe_reward` and adds its
own format term, reward = acc_weight * accuracy + format_weight * format
(harness/trainer/rl_collect.py `_score`). Hence:

- `harness.algos.math_reward:math_accuracy_reward` -> `math_accuracy` (multiple-choice records
  -> `rewards.choice_accuracy`), with the harness's 0.9 / 0.1 weighting;
- `harness.algos.math_reward:math_overall_reward` / `r1v_overall_reward` -> the authors'
  "overall" score (their format rule and weighting inside); set `algo.acc_weight=1.0
  algo.format_weight=0.0` so that it is the whole reward (the logged "accuracy" is then the
  overall score).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from typing import Any

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from harness.algos.rewards import choice_accuracy, extract_answer

MAX_ANSWER_CHARS = 1000  # longer answers are not parsed: parsing time grows with length
# exact values beyond this many digits are not verified: 10^(10^6) still verifies in 0.3 s,
# 9^(9^9) (370 million digits) never finishes
MAX_DIGITS = 100_000

_LATEX_MARKERS = re.compile(r"[\\^_{}]")
_WORD = re.compile(r"[A-Za-z]{2,}")
_BOXED = re.compile(r"\\(?:boxed|fbox)(\s*)")
# a number not glued to a word: "-3", "1,234", "2.5", ".5", "3/4"; a minus after a digit,
# letter or bracket is subtraction ("5-3" -> 3), not a sign
_NUMBER = re.compile(
    r"(?<![\w.])(?:(?<![\w)\]])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:/\d+(?!\.?\d))?"
)

_LATEX_FIRST = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


class _NoTimeoutNotice(logging.Filter):
    """Drops Math-Verify's one-time "Timeout is disabled ..." warning: this module disables
    the signal timeouts on purpose and bounds the work itself (module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutNotice())


# ---------------------------------------------------------------- answer extraction


def _braced(text: str, start: int) -> str | None:
    """The contents of the brace group opening at text[start] ("{"), or None if unclosed."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def extract_boxed(text: str) -> str | None:
    """Stripped contents of the last complete `\\boxed{...}` / `\\fbox{...}` (nested braces
    kept: "\\boxed{\\frac{1}{2}}" -> "\\frac{1}{2}"), or None. "\\boxed 5" (no braces) gives
    "5"; an unclosed last box (a cut-off response) is skipped for the one before it."""
    for m in reversed(list(_BOXED.finditer(text))):
        end = m.end()
        if text.startswith("{", end):
            inner = _braced(text, end)
        elif m.group(1):  # "\boxed 5": the argument is the next token
            token = re.match(r"[^\s$]+", text[end:])
            inner = token.group(0) if token else None
        else:
            inner = None
        if inner is not None and inner.strip():
            return inner.strip()
    return None


def last_number(text: str) -> str | None:
    """The last number written in `text` ("-3", "1,234", "2.5", "3/4"), as written, or None."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def extract_math_answer(text: str) -> str | None:
    """The response's final answer: last \\boxed{}, else last <answer> span, else last number."""
    for answer in (extract_boxed(text), extract_answer(text), last_number(text)):
        if answer:
            return answer
    return None


# ---------------------------------------------------------------- parsing and checking


def _thread_timeout(timeout_s: int | None) -> int | None:
    """Math-Verify's signal timeout where it can work (the main thread), else none."""
    if timeout_s and threading.current_thread() is threading.main_thread():
        return int(timeout_s)
    return None


def parse_math(s: str, timeout_s: int | None = None) -> list[Any]:
    """Math-Verify's reading of an answer string (sympy objects, then the matched string);
    [] when nothing can be read or the string is longer than MAX_ANSWER_CHARS."""
    s = s.strip()
    if not s or len(s) > MAX_ANSWER_CHARS:
        return []
    timeout = _thread_timeout(timeout_s)

    def as_latex() -> list[Any]:
        return parse(f"\\boxed{{{s}}}", extraction_config=_LATEX_FIRST, parsing_timeout=timeout)

    def as_prose() -> list[Any]:
        return parse(s, parsing_timeout=timeout)

    prose = not _LATEX_MARKERS.search(s) and _WORD.search(s)
    for attempt in ((as_prose, as_latex) if prose else (as_latex, as_prose)):
        parsed = attempt()
        if parsed:
            return parsed
    return []


def _log10_bound(expr: Any) -> float:
    """An upper bound on the decimal digits of any number inside a sympy expression, computed
    from the unevaluated tree without evaluating it (inf for power towers)."""
    if isinstance(expr, sympy.Integer):
        return math.log10(abs(int(expr)) + 1)
    if isinstance(expr, sympy.Rational):
        return math.log10(max(abs(expr.p), expr.q) + 1)
    if isinstance(expr, sympy.Float):
        return math.log10(abs(float(expr)) + 1) if math.isfinite(float(expr)) else math.inf
    if isinstance(expr, sympy.Pow):
        base, exponent = _log10_bound(expr.base), _log10_bound(expr.exp)
        if exponent > math.log10(MAX_DIGITS) + 1:
            return math.inf if base > 0 else exponent
        return max(base, 1.0) * 10**exponent + exponent
    if isinstance(expr, sympy.factorial):
        n = _log10_bound(expr.args[0])
        return math.inf if n > 7 else 10**n * max(n, 1.0)
    args = getattr(expr, "args", ())
    if isinstance(expr, sympy.MatrixBase):
        args = list(expr)
    return sum(_log10_bound(a) for a in args if isinstance(a, sympy.Basic))


def _affordable(parsed: list[Any]) -> bool:
    """Whether `verify` can compare these without running for ever (see MAX_DIGITS)."""
    try:
        return all(_log10_bound(p) <= MAX_DIGITS for p in parsed)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return False


def parse_key(key: str, timeout_s: int | None = None) -> list[Any]:
    """The key's Math-Verify reading; the key may be wrapped in <answer> tags or \\boxed{}.
    ValueError when it cannot be read or is too large to verify (a dataset bug). Cached: an
    RL group scores n responses against one key, an eval rescores a benchmark's keys."""
    return list(_parsed_key(key, _thread_timeout(timeout_s)))


@functools.lru_cache(maxsize=4096)
def _parsed_key(key: str, timeout_s: int | None) -> tuple[Any, ...]:
    span = extract_answer(key)
    s = (span if span is not None else key).strip()
    s = extract_boxed(s) or s
    parsed = parse_math(s, timeout_s)
    if not parsed:
        raise ValueError(f"math key {key!r} cannot be read as an answer")
    if not _affordable(parsed):
        raise ValueError(f"math key {key!r} is too large to verify (over {MAX_DIGITS} digits)")
    return tuple(parsed)


def answers_match(answer: str | None, gold: list[Any], timeout_s: int | None = None) -> bool:
    """Whether an answer string equals a parsed key (`parse_key`) under Math-Verify."""
    if not answer:
        return False
    parsed = parse_math(answer, timeout_s)
    if not parsed or not _affordable(parsed):
        return False
    return bool(verify(gold, parsed, timeout_seconds=_thread_timeout(timeout_s)))


def math_check(text: str, key: str, *, timeout_s: int | None = None) -> tuple[str, bool]:
    """(the response's final answer as written, "" when none; whether it equals the key):
    what a benchmark records per question. ValueError for an unreadable key."""
    gold = parse_key(key, timeout_s)
    answer = extract_math_answer(text) or ""
    return answer, answers_match(answer, gold, timeout_s)


def math_accuracy(text: str, key: str, *, timeout_s: int | None = None) -> float:
    """1.0 iff the response's final answer (last \\boxed{}, else last <answer> span, else last
    number) equals the key under Math-Verify, else 0.0. ValueError for an unreadable key."""
    return 1.0 if math_check(text, key, timeout_s=timeout_s)[1] else 0.0


# ---------------------------------------------------------------- the authors' rewards

# math.py: mathruler's grader is fed a response with the spaces around "<", ">" and "/"
# removed ("handle qwen2.5vl-32b format"), then needs a think block followed by a box.
_MATH_TAG_SPACES = re.compile(r"\s*(<|>|/)\s*")
_MATH_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
# r1v.py: the think block then the answer span, nothing around them (not even whitespace)
_R1V_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_R1V_ANSWER = re.compile(r"<answer>(.*?)</answer>")


def _weighted(accuracy: float, fmt: float, format_weight: float) -> dict[str, float]:
    return {"overall": (1 - format_weight) * accuracy + format_weight * fmt,
            "format": fmt, "accuracy": accuracy}


def math_reward(text: str, key: str, format_weight: float = 0.1) -> dict[str, float]:
    """The authors' math reward (NVlabs/Long-RL `examples/reward_function/math.py`,
    `compute_score`, the default of `examples/config.yaml`), graded with Math-Verify.

    - the response first loses all whitespace around "<", ">" and "/"
      (`re.sub(r"\\s*(<|>|/)\\s*", r"\\1", response)`);
    - format = 1 iff it fully matches `<think>.*</think>.*\\\\boxed\\{.*\\}.*` (DOTALL, greedy);
    - accuracy = the last \\boxed{} contents (mathruler `extract_boxed_content`; no box -> 0,
      no fallback to <answer> or the last number) checked against the key;
    - overall = (1 - format_weight) * accuracy + format_weight * format, format_weight 0.1.

    Returns {"overall", "format", "accuracy"}. The key may be wrapped in <answer> tags (the
    authors' loader strips them: `verl/utils/dataset.py`)."""
    response = _MATH_TAG_SPACES.sub(r"\1", text)
    fmt = 1.0 if _MATH_FORMAT.fullmatch(response) else 0.0
    acc = 1.0 if answers_match(extract_boxed(response), parse_key(key)) else 0.0
    return _weighted(acc, fmt, format_weight)


def r1v_reward(text: str, key: str, format_weight: float = 0.1) -> dict[str, float]:
    """The authors' R1-V reward (NVlabs/Long-RL `examples/reward_function/r1v.py`,
    `compute_score`; the one their video, math and CLEVR scripts name), graded with
    Math-Verify.

    - format = 1 iff the response as given (not stripped) fully matches
      `<think>.*?</think>\\s*<answer>.*?</answer>` (DOTALL);
    - accuracy: the first `<answer>(.*?)</answer>` of the response with every newline and
      space removed, stripped; without a span, the whole stripped response; checked against
      the stripped key. Any error scores 0 (their `except Exception`), a bad key included;
    - overall = (1 - format_weight) * accuracy + format_weight * format; format_weight
      defaults to 0.1 in `compute_score` and no script of theirs overrides it.

    Grading difference: mathruler's `grade_answer` compares normalised strings and sympy
    forms of the whole answer; Math-Verify extracts the expression from it, so a short
    unformatted reply such as "It is 5" can score where theirs would not. A whole response
    longer than MAX_ANSWER_CHARS scores 0 here."""
    fmt = 1.0 if _R1V_FORMAT.fullmatch(text) else 0.0
    found = _R1V_ANSWER.search(text.replace("\n", "").replace(" ", ""))
    given = found.group(1).strip() if found else text.strip()
    try:
        acc = 1.0 if answers_match(given, parse_key(key.strip())) else 0.0
    except Exception:  # noqa: BLE001 - the authors' rule: a failed check scores 0
        acc = 0.0
    return _weighted(acc, fmt, format_weight)


# ---------------------------------------------------------------- plug-ins (algo.reward_fn)


def math_accuracy_reward(text: str, key: str, problem_type: str) -> float:
    """`algo.reward_fn: harness.algos.math_reward:math_accuracy_reward`: the accuracy term of
    the harness's reward. Multiple-choice records keep `rewards.choice_accuracy` (Math-Verify
    would read an option letter as a variable); every other type -> `math_accuracy`."""
    if " ".join(problem_type.lower().replace("_", " ").replace("-", " ").split()) == "multiple choice":
        return choice_accuracy(text, key)
    return math_accuracy(text, key)


def math_overall_reward(text: str, key: str, problem_type: str) -> float:
    """`algo.reward_fn: harness.algos.math_reward:math_overall_reward`: the authors' math.py
    overall score (`math_reward`); use with algo.acc_weight=1.0 algo.format_weight=0.0."""
    return math_reward(text, key)["overall"]


def r1v_overall_reward(text: str, key: str, problem_type: str) -> float:
    """`algo.reward_fn: harness.algos.math_reward:r1v_overall_reward`: the authors' r1v.py
    overall score (`r1v_reward`); use with algo.acc_weight=1.0 algo.format_weight=0.0."""
    return r1v_reward(text, key)["overall"]
