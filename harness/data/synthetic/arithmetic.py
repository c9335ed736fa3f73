"""Arithmetic word problems with whole-number answers: text data a tiny model can learn from.

"Tom has 3 apples and buys 4 more. He gives away 2. How many apples does he have now?" Three
templates, each a chain of 1-3 operations (+, -, x, / on small whole numbers):

- story: one person's count changes ("buys 4 more", "gives away 2", "now has 2 times as many
  as before", "splits them into 3 equal groups, keeping one group");
- groups: "There are 3 boxes with 4 pencils in each box." then items added or taken out;
- compare: "Bo has 3 more marbles than Ann." and the question asks for Bo, or for both together.

Difficulty: `ArithmeticConfig(max_value, min_steps, max_steps)`: every number written in a
problem is at most max_value, every value along the way at most 4 x max_value, and each
problem takes min_steps..max_steps operations (DIFFICULTIES names three levels). Every answer
is a whole number >= 1.

Each problem comes with a short correct reasoning, one line per operation ("3 + 4 = 7."),
ending in "The answer is 7.", for CoT-SFT; the record's key is "<answer>7</answer>".
Problem i of a split is drawn from its own seed (seed, split, i), so a split is the same
whatever its size and on every machine (random.Random seeded by a string hashes it with
SHA-512, independent of PYTHONHASHSEED); repeated problem texts are skipped, within a split
and across the splits of `write_arithmetic_splits`, so a test question is never trained on.

`oracle(problem_text)` reads the problem text alone, sentence by sentence, and computes the
answer: it shares no code or state with the generator, so agreeing with every key shows the
question holds all it needs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.data.records import write_jsonl

PEOPLE = (("Tom", "he"), ("Ann", "she"), ("Ben", "he"), ("Mia", "she"), ("Sam", "he"),
          ("Lily", "she"), ("Max", "he"), ("Zoe", "she"))
ITEMS = ("apples", "pencils", "marbles", "stickers", "cookies", "books", "cards", "shells")
CONTAINERS = (("boxes", "box"), ("bags", "bag"), ("baskets", "basket"), ("packs", "pack"))
TEMPLATES = ("story", "groups", "compare")
DIFFICULTIES = {"easy": (10, 1, 1), "medium": (20, 1, 2), "hard": (50, 2, 3)}  # (max_value, min_steps, max_steps)
GROWTH = 4  # values along the way stay <= GROWTH * max_value
ATTEMPTS_PER_PROBLEM = 50  # draws per wanted problem before the space is declared too small


@dataclass(frozen=True)
class ArithmeticConfig:
    max_value: int = 10
    min_steps: int = 1
    max_steps: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.max_value, int) or self.max_value < 3:
            raise ValueError(f"max_value must be an integer >= 3, got {self.max_value!r}")
        if not 1 <= self.min_steps <= self.max_steps <= 3:
            raise ValueError(f"steps must satisfy 1 <= min_steps <= max_steps <= 3, got "
                             f"{self.min_steps}..{self.max_steps}")

    @classmethod
    def level(cls, name: str) -> ArithmeticConfig:
        if name not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty {name!r}; known: {', '.join(DIFFICULTIES)}")
        return cls(*DIFFICULTIES[name])


@dataclass(frozen=True)
class ArithmeticProblem:
    problem: str
    reasoning: str  # one line per operation, ending in "The answer is N."
    answer: int
    steps: int
    template: str


# ---------------------------------------------------------------- generation


class _Chain:
    """A count changed by operations: the sentences saying so and the reasoning lines."""

    def __init__(self, value: int) -> None:
        self.value, self.sentences, self.lines, self.steps = value, [], [], 0

    def apply(self, sentence: str, a: int, op: str, b: int) -> None:
        result = {"+": a + b, "-": a - b, "x": a * b, "/": a // b}[op]
        self.sentences.append(sentence)
        self.lines.append(f"{a} {op} {b} = {result}.")
        self.value, self.steps = result, self.steps + 1


def _operation(rng: random.Random, cfg: ArithmeticConfig, value: int, kinds: str) -> tuple[str, int]:
    """An operation on `value` among `kinds` ("+-x/") that keeps the count in 1..cap."""
    cap = GROWTH * cfg.max_value
    possible = []
    if "+" in kinds and value < cap:
        possible.append(("+", rng.randint(1, min(cfg.max_value, cap - value))))
    if "-" in kinds and value > 1:
        possible.append(("-", rng.randint(1, min(cfg.max_value, value - 1))))
    if "x" in kinds and value * 2 <= cap:
        possible.append(("x", rng.randint(2, min(3, cap // value))))
    divisors = [k for k in (2, 3, 4) if value % k == 0 and value > k]
    if "/" in kinds and divisors:
        possible.append(("/", rng.choice(divisors)))
    return rng.choice(possible)


def _story(rng: random.Random, cfg: ArithmeticConfig, steps: int) -> tuple[str, str, int]:
    name, he = rng.choice(PEOPLE)
    him = "him" if he == "he" else "her"
    item = rng.choice(ITEMS)
    friend = rng.choice([p for p, _ in PEOPLE if p != name])
    chain = _Chain(rng.randint(1, cfg.max_value))
    opening = f"{name} has {chain.value} {item}"
    lines = [f"{name} starts with {chain.value} {item}."]
    for i in range(steps):
        op, b = _operation(rng, cfg, chain.value, "+-x/")
        said = {
            "+": rng.choice([f"buys {b} more", f"finds {b} more", f"gets {b} more from {friend}"]),
            "-": rng.choice([f"gives away {b}", f"loses {b}", f"gives {b} to {friend}"]),
            "x": f"now has {b} times as many as before",
            "/": f"splits them into {b} equal groups, keeping one group",
        }[op]
        if op == "+" and rng.random() < 0.25:  # the giver as the subject
            sentence = f"{friend} gives {him} {b} more."
        elif i == 0 and op in "+-" and rng.random() < 0.5:  # "Tom has 3 apples and buys 4 more."
            opening, sentence = f"{opening} and {said}", ""
        else:
            sentence = f"{he.capitalize()} {said}."
        chain.apply(sentence, chain.value, op, b)
    sentences = [f"{opening}."] + [s for s in chain.sentences if s]
    question = f"How many {item} does {name} have now?"
    return " ".join([*sentences, question]), _reasoning(lines + chain.lines, chain.value), chain.value


def _groups(rng: random.Random, cfg: ArithmeticConfig, steps: int) -> tuple[str, str, int]:
    plural, single = rng.choice(CONTAINERS)
    item = rng.choice(ITEMS)
    per = rng.randint(2, cfg.max_value)
    count = rng.randint(2, max(2, min(cfg.max_value, GROWTH * cfg.max_value // per)))
    chain = _Chain(count)
    chain.apply(f"There are {count} {plural} with {per} {item} in each {single}.", count, "x", per)
    for _ in range(steps - 1):
        op, b = _operation(rng, cfg, chain.value, "+-")
        said = f"{b} more {item} are added." if op == "+" else f"{b} {item} are taken out."
        chain.apply(said, chain.value, op, b)
    question = f"How many {item} are there now?" if steps > 1 else f"How many {item} are there in all?"
    return " ".join([*chain.sentences, question]), _reasoning(chain.lines, chain.value), chain.value


def _compare(rng: random.Random, cfg: ArithmeticConfig, steps: int) -> tuple[str, str, int]:
    (first, _), (second, _) = rng.sample(PEOPLE, 2)
    item = rng.choice(ITEMS)
    a = rng.randint(2, cfg.max_value)
    more = rng.random() < 0.5
    b = rng.randint(1, cfg.max_value if more else a - 1)
    other = a + b if more else a - b
    relation = f"{b} more {item} than {first}" if more else f"{b} fewer {item} than {first}"
    lines = [f"{second} has {a} {'+' if more else '-'} {b} = {other}."]
    sentences = [f"{first} has {a} {item}.", f"{second} has {relation}."]
    if steps == 1:
        return " ".join([*sentences, f"How many {item} does {second} have?"]), _reasoning(lines, other), other
    lines.append(f"Together: {a} + {other} = {a + other}.")
    question = f"How many {item} do {first} and {second} have together?"
    return " ".join([*sentences, question]), _reasoning(lines, a + other), a + other


_TEMPLATE_FNS = {"story": _story, "groups": _groups, "compare": _compare}
_TEMPLATE_STEPS = {"story": (1, 2, 3), "groups": (1, 2, 3), "compare": (1, 2)}


def _reasoning(lines: list[str], answer: int) -> str:
    return " ".join([*lines, f"The answer is {answer}."])


def make_problem(rng: random.Random, cfg: ArithmeticConfig) -> ArithmeticProblem:
    """One problem drawn from `rng` at the difficulty `cfg`."""
    steps = rng.randint(cfg.min_steps, cfg.max_steps)
    template = rng.choice([t for t in TEMPLATES if steps in _TEMPLATE_STEPS[t]])
    problem, reasoning, answer = _TEMPLATE_FNS[template](rng, cfg, steps)
    return ArithmeticProblem(problem, reasoning, answer, steps, template)


def generate(n: int, seed: int, cfg: ArithmeticConfig | None = None, *, split: str = "train",
             exclude: Collection[str] = ()) -> list[ArithmeticProblem]:
    """`n` problems with distinct texts, none in `exclude`; problem i is drawn from the seed
    (seed, split, i), so the first k of n are the k problems asked for alone."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    cfg = cfg or ArithmeticConfig()
    seen, out = set(exclude), []
    for problem in _draws(seed, split, cfg, limit=ATTEMPTS_PER_PROBLEM * n + 100):
        if len(out) == n:
            break
        if problem.problem not in seen:
            seen.add(problem.problem)
            out.append(problem)
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct problems of {n} at {cfg}: raise max_value or the steps")
    return out


def _draws(seed: int, split: str, cfg: ArithmeticConfig, limit: int) -> Iterator[ArithmeticProblem]:
    for i in range(limit):
        yield make_problem(random.Random(f"arithmetic/{seed}/{split}/{i}"), cfg)


# ---------------------------------------------------------------- records and files


def to_record(problem: ArithmeticProblem, problem_id: str) -> dict:
    """The training record (harness/data/records.py) of a problem; `steps` and `template`
    travel as extra fields."""
    return {
        "problem_id": problem_id, "data_type": "text", "problem": problem.problem,
        "problem_type": "numerical", "answer": f"<answer>{problem.answer}</answer>",
        "reasoning": problem.reasoning, "steps": problem.steps, "template": problem.template,
    }


def write_arithmetic_split(out_dir: str | Path, n: int, seed: int, cfg: ArithmeticConfig | None = None, *,
                           split: str = "train", exclude: Collection[str] = ()) -> Path:
    """Write `out_dir/{split}.jsonl`: `n` problems (ids "arith-{split}-{i:06d}"), validated by
    records.write_jsonl (atomic). Problems whose text is in `exclude` are skipped."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = generate(n, seed, cfg, split=split, exclude=exclude)
    path = out_dir / f"{split}.jsonl"
    write_jsonl(path, (to_record(p, f"arith-{split}-{i:06d}") for i, p in enumerate(problems)))
    return path


def write_arithmetic_splits(out_dir: str | Path, sizes: Mapping[str, int], seed: int,
                            cfg: ArithmeticConfig | None = None) -> dict[str, Path]:
    """One file per split (e.g. {"sft": 2000, "rl": 2000, "test": 300}), in the given order,
    no problem text in two splits."""
    written: dict[str, Path] = {}
    taken: set[str] = set()
    for split, n in sizes.items():
        written[split] = write_arithmetic_split(out_dir, n, seed, cfg, split=split, exclude=taken)
        taken.update(_problems_of(written[split]))
    return written


def _problems_of(path: Path) -> list[str]:
    from harness.data.records import read_jsonl

    return [rec.problem for rec in read_jsonl(path, strict=True)]


# ---------------------------------------------------------------- the oracle

_NAME = r"([A-Z][a-z]+)"
_HAS = re.compile(rf"^{_NAME} has (\d+) (\w+)$")
_HAS_RELATIVE = re.compile(rf"^{_NAME} has (\d+) (more|fewer) \w+ than {_NAME}$")
_GROUPS = re.compile(r"^there are (\d+) \w+ with (\d+) \w+ in each \w+$")
_GIVEN = re.compile(rf"^{_NAME} gives (?:him|her) (\d+) more$")
_CLAUSES = (  # what a clause about the current count does to it: (pattern, op)
    (re.compile(r"^(?:buys|finds) (\d+) more$"), "+"),
    (re.compile(r"^gets (\d+) more from [A-Z][a-z]+$"), "+"),
    (re.compile(r"^(\d+) more \w+ are added$"), "+"),
    (re.compile(r"^(?:gives away|loses) (\d+)$"), "-"),
    (re.compile(r"^gives (\d+) to [A-Z][a-z]+$"), "-"),
    (re.compile(r"^(\d+) \w+ are taken out$"), "-"),
    (re.compile(r"^now has (\d+) times as many as before$"), "x"),
    (re.compile(r"^splits them into (\d+) equal groups, keeping one group$"), "/"),
)
_ASK_ONE = re.compile(rf"^how many \w+ does {_NAME} have(?: now)?$")
_ASK_BOTH = re.compile(rf"^how many \w+ do {_NAME} and {_NAME} have together$")
_ASK_ALL = re.compile(r"^how many \w+ are there(?: now| in all)?$")


class _Reader:
    """The counts a problem's sentences establish: per person, and the pile ("there are")."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.subject: str | None = None  # whose count a pronoun or a bare clause changes

    def statement(self, clause: str) -> None:
        if m := _HAS.match(clause):
            self.counts[m[1]], self.subject = int(m[2]), m[1]
        elif m := _HAS_RELATIVE.match(clause):
            base = self.count(m[4])
            self.counts[m[1]] = base + int(m[2]) if m[3] == "more" else base - int(m[2])
        elif m := _GROUPS.match(clause[:1].lower() + clause[1:]):
            self.counts["there"], self.subject = int(m[1]) * int(m[2]), "there"
        elif m := _GIVEN.match(clause):
            self._change("+", int(m[2]))
        else:
            self._clause(re.sub(r"^(?:he|she) ", "", clause[:1].lower() + clause[1:]))

    def _clause(self, clause: str) -> None:
        for pattern, op in _CLAUSES:
            if m := pattern.match(clause):
                self._change(op, int(m[1]))
                return
        raise ValueError(f"cannot read {clause!r}")

    def _change(self, op: str, b: int) -> None:
        if self.subject is None:
            raise ValueError("a change before anyone has anything")
        a = self.count(self.subject)
        self.counts[self.subject] = {"+": a + b, "-": a - b, "x": a * b, "/": a // b}[op]

    def count(self, who: str) -> int:
        if who not in self.counts:
            raise ValueError(f"nothing said about how many {who!r} has")
        return self.counts[who]

    def question(self, sentence: str) -> int:
        s = sentence[:1].lower() + sentence[1:]
        if m := _ASK_ONE.match(s):
            return self.count(m[1])
        if m := _ASK_BOTH.match(s):
            return self.count(m[1]) + self.count(m[2])
        if _ASK_ALL.match(s):
            return self.count("there")
        raise ValueError(f"cannot read the question {sentence!r}")


def oracle(problem_text: str) -> int:
    """The answer computed from the problem text alone; ValueError for a sentence it cannot
    read. Statements end in ".", the question (last) in "?"; a statement may join two clauses
    with " and " ("Tom has 3 apples and buys 4 more")."""
    sentences = re.findall(r"[^.?]+[.?]", problem_text.strip())
    if not sentences or not sentences[-1].endswith("?"):
        raise ValueError(f"no question at the end of {problem_text!r}")
    reader = _Reader()
    for sentence in sentences[:-1]:
        for clause in sentence.rstrip(".").strip().split(" and "):
            reader.statement(clause.strip())
    return reader.question(sentences[-1].rstrip("?").strip())
