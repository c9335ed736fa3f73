"""Turn a reasoner's reply into questions, repairing what is safe to repair and dropping
the rest with a reason.

The reasoner is asked for a JSON list of {category, question, options, answer, reasoning}
(prompts/reason_v*.txt). Replies from real LLMs stray from that in known ways; each is
handled here and pinned by tests/data/build/test_parse.py on recorded replies.

Repaired (the question is kept; the repair is counted in the summary):
- `<think>...</think>` before the answer (reasoning models) is removed, and the JSON is
  taken from a ```json fence or from the outermost [...] / {...} of the text;
- trailing commas before ] or }; a {"questions": [...]} wrapper; a single object;
- category spelled out ("Goal and Purpose", "plot & narrative", "Temporal reasoning");
- options given as {"A": ..., "B": ...} or with "A. " / "(A)" labels inside the text;
- answer written as "(B)", "B.", "Option B", "<answer>B</answer>", or as the option's text.
Dropped whole reply: no JSON found, JSON that does not parse, the reply cut at max_tokens.
Dropped question: not an object, a missing or empty field, an unknown category, fewer than
2 or more than 10 options, empty or repeated options, an answer that is not one of the
options, reasoning that cites no clip time (MM:SS).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from harness.data.records import CATEGORIES

MIN_OPTIONS, MAX_OPTIONS = 2, 10
LETTERS = "ABCDEFGHIJ"
TIME_RE = re.compile(r"\b\d{1,2}:\d{2}\b")
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",(\s*[\]}])")
_LABEL_RE = re.compile(r"^\s*(?:\(([A-J])\)|([A-J])\s*[.):])\s+")
_ANSWER_LETTER_RE = re.compile(
    r"^\s*(?:<answer>\s*)?(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*)?"
    r"\(?([A-J])\)?\s*[.):]?\s*(?:</answer>)?\s*$", re.IGNORECASE)
_CATEGORY_WORDS = {
    "temporal": "temporal", "time": "temporal", "timing": "temporal", "order": "temporal",
    "goal": "goal", "purpose": "goal", "intent": "goal", "intention": "goal",
    "plot": "plot", "narrative": "plot", "story": "plot", "causal": "plot",
    "spatial": "spatial", "space": "spatial", "location": "spatial",
}


@dataclass
class Question:
    category: str  # one of records.CATEGORIES
    question: str
    options: list[str]  # texts without letters
    answer: int  # index into options
    reasoning: str
    repairs: list[str] = field(default_factory=list)

    @property
    def letter(self) -> str:
        return LETTERS[self.answer]


@dataclass(frozen=True)
class Drop:
    reason: str  # a short code, counted in the summary
    detail: str = ""
    index: int | None = None  # position of the question in the reply; None: whole reply


@dataclass
class ParseResult:
    questions: list[tuple[int, Question]]  # (position in the reply, question)
    drops: list[Drop]
    reply_repairs: list[str]  # repairs of the reply as a whole


def normalize(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed: for comparing texts."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def parse_reply(text: str, finish_reason: str = "stop") -> ParseResult:
    """Questions of one reply, each validated; see the module docstring for the rules."""
    repairs: list[str] = []
    items, why = _extract_items(text, repairs)
    if items is None:
        if finish_reason == "length":
            return ParseResult([], [Drop("truncated", f"reply cut at max_tokens ({why}); raise the reasoner's max tokens")], repairs)
        return ParseResult([], [Drop("malformed_json", why)], repairs)
    questions, drops = [], []
    for i, item in enumerate(items):
        q = parse_question(item)
        if isinstance(q, Drop):
            drops.append(Drop(q.reason, q.detail, i))
        else:
            questions.append((i, q))
    return ParseResult(questions, drops, repairs)


def _extract_items(text: str, repairs: list[str]) -> tuple[list[Any] | None, str]:
    body = text
    if "<think>" in body:
        body = _THINK_RE.sub("", body)
        if "<think>" in body:
            return None, "unterminated <think> block"
    fence = _FENCE_RE.search(body)
    if fence:
        body = fence.group(1)
    starts = [i for i in (body.find("["), body.find("{")) if i >= 0]
    if not starts:
        return None, "no JSON list or object in the reply"
    start = min(starts)
    end = body.rfind("]" if body[start] == "[" else "}")
    if end < start:
        return None, f"unclosed JSON {'list' if body[start] == '[' else 'object'}"
    blob = body[start:end + 1]
    try:
        data = json.loads(blob)
    except json.JSONDecodeError as err:
        fixed = _TRAILING_COMMA_RE.sub(r"\1", blob)
        try:
            data = json.loads(fixed)
        except json.JSONDecodeError:
            return None, f"invalid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        repairs.append("trailing_commas")
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        repairs.append("questions_wrapper")
        data = data["questions"]
    elif isinstance(data, dict):
        repairs.append("single_object")
        data = [data]
    if not isinstance(data, list):
        return None, f"JSON is a {type(data).__name__}, not a list of questions"
    return data, ""


def parse_question(item: Any) -> Question | Drop:
    """One question object -> Question (possibly repaired) or Drop with a reason."""
    if not isinstance(item, dict):
        return Drop("malformed_item", f"expected an object, got {type(item).__name__}")
    item = {str(k).strip().lower(): v for k, v in item.items()}
    repairs: list[str] = []
    for name in ("category", "question", "options", "answer", "reasoning"):
        v = item.get(name)
        if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, list | dict) and not v):
            return Drop(f"missing_{name}", f"field {name!r} missing or empty")
    for name in ("category", "question", "reasoning"):
        if not isinstance(item[name], str):
            return Drop(f"bad_{name}", f"{name!r} must be text, got {type(item[name]).__name__}")
    category = _category(item["category"], repairs)
    if category is None:
        return Drop("unknown_category", f"{item['category']!r} is none of {CATEGORIES}")
    options = _options(item["options"], repairs)
    if isinstance(options, Drop):
        return options
    answer = _answer(item["answer"], options, repairs)
    if isinstance(answer, Drop):
        return answer
    reasoning = item["reasoning"].strip()
    if not TIME_RE.search(reasoning):
        return Drop("reasoning_cites_no_time", "the reasoning cites no clip time (MM:SS)")
    return Question(category, " ".join(item["question"].split()), options, answer, reasoning, repairs)


def _category(raw: str, repairs: list[str]) -> str | None:
    text = raw.strip().lower()
    if text in CATEGORIES:
        return text
    hits = {_CATEGORY_WORDS[w] for w in normalize(text).split() if w in _CATEGORY_WORDS}
    if len(hits) == 1:
        repairs.append("category_spelling")
        return hits.pop()
    return None


def _options(raw: Any, repairs: list[str]) -> list[str] | Drop:
    if isinstance(raw, dict):
        keys = [str(k).strip().strip("().").upper() for k in raw]
        if keys != list(LETTERS[:len(keys)]):
            return Drop("bad_options", f"option keys {list(raw)} are not A, B, C, ...")
        raw = list(raw.values())
        repairs.append("options_dict")
    if not isinstance(raw, list) or not all(isinstance(o, str | int | float) for o in raw):
        return Drop("bad_options", "options must be a list of texts")
    options = [str(o).strip() for o in raw]
    if not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        return Drop("option_count", f"{len(options)} options; need {MIN_OPTIONS} to {MAX_OPTIONS}")
    labels = [_LABEL_RE.match(o) for o in options]
    if all(labels) and [m.group(1) or m.group(2) for m in labels] == list(LETTERS[:len(options)]):
        options = [o[m.end():].strip() for o, m in zip(options, labels, strict=True)]
        repairs.append("option_labels")
    if any(not o for o in options):
        return Drop("empty_option", "an option is empty")
    if len({normalize(o) for o in options}) < len(options):
        return Drop("duplicate_options", "two options say the same")
    return options


def _answer(raw: Any, options: list[str], repairs: list[str]) -> int | Drop:
    if not isinstance(raw, str):
        # 1 could mean A (1-based) or B (0-based): refuse to guess.
        return Drop("ambiguous_answer", f"answer {raw!r} is not a letter or an option's text")
    text = raw.strip()
    m = _ANSWER_LETTER_RE.match(text)
    if m:
        idx = LETTERS.index(m.group(1).upper())
        if text != m.group(1):
            repairs.append("answer_format")
        if idx >= len(options):
            return Drop("answer_not_in_options", f"answer {m.group(1)} but only {len(options)} options")
        return idx
    matches = [i for i, o in enumerate(options) if normalize(o) == normalize(text)]
    if len(matches) == 1:
        repairs.append("answer_as_text")
        return matches[0]
    return Drop("answer_not_in_options", f"answer {text[:80]!r} matches no option")
