"""Rule-based rewards for reasoning responses, and loading of user reward functions.

The authors' reward is 0.9 * accuracy + 0.1 * format:
- format = 1 iff the stripped response fully matches
  `<think>.*?</think>\\s*<answer>.*?</answer>` (DOTALL). This is the authors' regex,
  kept as is; note it is permissive: because `.*?` may still span tags in a full match,
  nested tags and several `<answer>` spans after the think block also pass.
- accuracy compares the answer inside the LAST complete `<answer>...</answer>` span with
  the key (a multiple-choice letter, a number, or normalised free text). A response
  without an answer span scores 0 accuracy (no fallback to the whole text, unlike
  Video-R1's scorer, so the format cannot be skipped for free).

Keys may be given bare ("B") or wrapped ("<answer>B</answer>", the authors' record
format). A key that yields no letter / number / text is a dataset bug and raises
ValueError; the trainer's `safe_reward` turns that into a counted, logged zero.

User reward functions are plain callables named "package.module:function" and run through
`safe_reward`, so one that raises or returns NaN gives reward 0 for that sample and an
error string the trainer counts and logs; the run goes on (DESIGN §4).
"""

from __future__ import annotations

import importlib
import math
import re
import string
from collections.abc import Callable
from typing import Any

FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
# a complete span whose contents hold no further "<answer>": the innermost when nested
ANSWER_RE = re.compile(r"<answer>((?:(?!<answer>).)*?)</answer>", re.DOTALL)

# "the answer is", "Answer:", "option", "the correct choice is -" ... before a letter
_LEAD_IN_RE = re.compile(r"\b(?:answer|option|choice)\b(?:\s+is)?\s*[:\-]?\s*", re.IGNORECASE)
# the whole answer is one letter: "B", "b", "(B)", "[B]", "B.", "B)", "(b)."
_LONE_LETTER_RE = re.compile(r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*[.:;,!]?")
# an option label followed by its text: "B. the red square", "(B) red", "b) red", "B: red"
_LABEL_RE = re.compile(r"(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Za-z])[.:)])\s+(.*)", re.DOTALL)
# another option label inside the rest of the answer (upper case only): "(C)", "C.", "C)"
_OTHER_LABEL_RE = re.compile(r"\(([A-Z])\)|\[([A-Z])\]|(?<![A-Za-z0-9])([A-Z])[.:)](?=\s|$)")
# an upper-case letter standing alone as a word
_STANDALONE_RE = re.compile(r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9])")

# a number not glued to a word or another number: "3", "-2.5", "1,000", "1,000.5", ".5", "1e3"
_NUMBER_RE = re.compile(
    r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[eE][-+]?\d+)?"
)

_ARTICLES_RE = re.compile(r"\b(?:a|an|the)\b")
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)

CHOICE_TYPES = ("multiple choice",)
NUMERIC_TYPES = ("numerical", "numeric", "number")
TEXT_TYPES = ("free form", "ocr", "open ended", "text")
MATH_TYPE = "math"  # an expression or number checked by Math-Verify (harness/algos/math_reward.py)


def format_reward(text: str) -> float:
    """1.0 iff the stripped response fully matches `<think>.*?</think>\\s*<answer>.*?</answer>`
    (DOTALL, case-sensitive), else 0.0."""
    return 1.0 if FORMAT_RE.fullmatch(text.strip()) else 0.0


def extract_answer(text: str) -> str | None:
    """Stripped contents of the last complete `<answer>...</answer>` span, or None.

    Nested spans resolve to the innermost ("<answer><answer>B</answer></answer>" -> "B");
    an unclosed trailing "<answer>" is ignored.
    """
    spans = ANSWER_RE.findall(text)
    return spans[-1].strip() if spans else None


def _key_span(key: str) -> str:
    span = extract_answer(key)
    return (span if span is not None else key).strip()


def _single_letter(s: str) -> str | None:
    m = _LONE_LETTER_RE.fullmatch(s)
    if m:
        return m.group(1).upper()
    m = _LABEL_RE.match(s)
    if m:
        letter = next(g for g in m.groups()[:3] if g).upper()
        others = {next(g for g in o if g) for o in _OTHER_LABEL_RE.findall(m.group(4))}
        return letter if others <= {letter} else None
    return None


def extract_choice(answer: str) -> str | None:
    """The option letter (upper case) an answer names, or None if none or ambiguous.

    Accepted: "B", "b", "(B)", "[B]", "B.", "B)", "B. the red square", "(B) red square",
    "Option B", "Answer: (c)", "The answer is B". Lower case counts only as the whole answer
    or as a leading label (elsewhere "a" is an article). Otherwise the answer must contain
    exactly one distinct upper-case letter standing alone ("B, the red one"); several
    distinct ones ("A or B", "A, C") are ambiguous -> None. A pronoun "I" counts as a
    letter, so "I think B" is ambiguous: a known limitation kept for predictability.
    """
    s = answer.strip()
    lead = _LEAD_IN_RE.search(s)
    after = s[lead.end() :].strip() if lead else s
    for candidate in (s, after):
        letter = _single_letter(candidate)
        if letter is not None:
            return letter
    letters = set(_STANDALONE_RE.findall(after))
    return letters.pop() if len(letters) == 1 else None


def choice_accuracy(text: str, key: str) -> float:
    """1.0 iff the letter named in the response's answer span equals the key's letter.

    key: "B" or "<answer>B</answer>" (any form `extract_choice` reads)."""
    key_letter = extract_choice(_key_span(key))
    if key_letter is None:
        raise ValueError(f"multiple-choice key {key!r} names no option letter")
    answer = extract_answer(text)
    if answer is None:
        return 0.0
    return 1.0 if extract_choice(answer) == key_letter else 0.0


def extract_numbers(s: str) -> list[float]:
    """All numbers written in `s`: "3", "3.0", "-2.5", "1,000" (thousands separators),
    ".5", "1e3". Digits glued to letters ("mp4") are not numbers."""
    return [float(m.replace(",", "")) for m in _NUMBER_RE.findall(s)]


def _single_number(s: str, rel_tol: float, abs_tol: float) -> float | None:
    values: list[float] = []
    for v in extract_numbers(s):
        if not any(math.isclose(v, u, rel_tol=rel_tol, abs_tol=abs_tol) for u in values):
            values.append(v)
    return values[0] if len(values) == 1 else None


def numeric_accuracy(text: str, key: str, rel_tol: float = 1e-6, abs_tol: float = 0.0) -> float:
    """1.0 iff the answer span holds one number (repeats allowed: "3.0 (3)") that is close to
    the key's number: math.isclose(answer, key, rel_tol, abs_tol). Several different
    numbers ("3 or 4") or none ("three") -> 0.0."""
    key_value = _single_number(_key_span(key), rel_tol, abs_tol)
    if key_value is None:
        raise ValueError(f"numerical key {key!r} does not hold exactly one number")
    answer = extract_answer(text)
    if answer is None:
        return 0.0
    value = _single_number(answer, rel_tol, abs_tol)
    if value is None:
        return 0.0
    return 1.0 if math.isclose(value, key_value, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0


def normalize_text(s: str) -> str:
    """SQuAD-style normalisation: lower case, delete ASCII punctuation, drop the articles
    a/an/the, collapse whitespace."""
    s = s.lower().translate(_PUNCT_TABLE)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def text_accuracy(text: str, key: str) -> float:
    """1.0 iff normalize_text(answer span) == normalize_text(key) (exact match)."""
    key_norm = normalize_text(_key_span(key))
    if not key_norm:
        raise ValueError(f"free-text key {key!r} is empty after normalisation")
    answer = extract_answer(text)
    if answer is None:
        return 0.0
    return 1.0 if normalize_text(answer) == key_norm else 0.0


def _problem_kind(problem_type: str) -> str:
    t = " ".join(problem_type.lower().replace("_", " ").replace("-", " ").split())
    if t in CHOICE_TYPES:
        return "choice"
    if t in NUMERIC_TYPES:
        return "numeric"
    if t in TEXT_TYPES:
        return "text"
    if t == MATH_TYPE:
        return "math"
    known = CHOICE_TYPES + NUMERIC_TYPES + TEXT_TYPES + (MATH_TYPE,)
    raise ValueError(
        f"unknown problem_type {problem_type!r}; expected one of {known} "
        "(case, '-' and '_' are ignored)"
    )


def accuracy_reward(text: str, key: str, problem_type: str) -> float:
    """Accuracy of a response against its key, by problem type: "multiple choice" ->
    `choice_accuracy`; "numerical" -> `numeric_accuracy`; "free-form", "OCR",
    "open-ended", "text" -> `text_accuracy` (exact match after normalisation; Video-R1 scores
    OCR/free-form by WER/ROUGE instead); "math" -> `math_reward.math_accuracy` (numbers,
    fractions, LaTeX, \\boxed{} compared as values). Unknown types raise ValueError."""
    kind = _problem_kind(problem_type)
    if kind == "math":
        from harness.algos.math_reward import math_accuracy  # it builds on this module

        return math_accuracy(text, key)
    if kind == "choice":
        return choice_accuracy(text, key)
    if kind == "numeric":
        return numeric_accuracy(text, key)
    return text_accuracy(text, key)


def combined_reward(
    text: str,
    key: str,
    problem_type: str,
    acc_weight: float = 0.9,
    fmt_weight: float = 0.1,
) -> dict[str, float]:
    """The authors' reward: {"reward": acc_weight * accuracy + fmt_weight * format,
    "accuracy": ..., "format": ...}."""
    acc = accuracy_reward(text, key, problem_type)
    fmt = format_reward(text)
    return {"reward": acc_weight * acc + fmt_weight * fmt, "accuracy": acc, "format": fmt}


def load_reward_fn(spec: str) -> Callable[..., Any]:
    """Import a user's reward function from "package.module:function" (the attribute may be
    dotted: "module:Class.method"). The module must be importable (on sys.path).

    Raises ValueError for a malformed spec, ImportError if the module cannot be imported
    (with the underlying error), AttributeError if the function is missing, TypeError if
    it is not callable.
    """
    module_name, sep, attr = spec.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not sep or not module_name or not attr:
        raise ValueError(f"reward function {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(
            f"cannot import module {module_name!r} of reward function {spec!r}: {e}"
        ) from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"reward function {spec!r}: {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"reward function {spec!r} is not callable (it is a {type(obj).__name__})")
    return obj


def safe_reward(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, str | None]:
    """Call a user reward function; return (reward, None) or (0.0, error message).

    Any Exception raised by `fn` becomes (0.0, "ExcType: message"); a return value that is
    not a finite real number (a string, None, a dict, NaN, inf, a multi-element tensor)
    becomes (0.0, a message naming the value). bool, int, numpy scalars and one-element
    tensors are accepted and converted to float. KeyboardInterrupt/SystemExit propagate.
    """
    try:
        value = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a user's bug must not end the run
        return 0.0, f"{type(e).__name__}: {e}"
    if isinstance(value, (str, bytes)) or value is None:
        return 0.0, f"reward function returned a non-numeric value {value!r}"
    try:
        reward = float(value)
    except (TypeError, ValueError, RuntimeError):
        return 0.0, f"reward function returned a non-numeric {type(value).__name__}: {value!r}"
    if not math.isfinite(reward):
        return 0.0, f"reward function returned a non-finite value {reward!r}"
    return reward, None
