"""Arithmetic word problems: the text alone gives the answer (oracle), the reasoning is right
and scores 1 under the math reward, records are valid, splits are deterministic and
disjoint, and the difficulty knob bounds numbers and steps."""

from __future__ import annotations

import re

import pytest

from harness.algos.math_reward import math_accuracy
from harness.data.records import read_jsonl, validate_record
from harness.data.synthetic import arithmetic as ar
from harness.data.synthetic.arithmetic import (
    DIFFICULTIES,
    ArithmeticConfig,
    generate,
    oracle,
    to_record,
    write_arithmetic_split,
    write_arithmetic_splits,
)

LEVELS = [ArithmeticConfig.level(name) for name in DIFFICULTIES] + [ArithmeticConfig(10, 1, 3)]


@pytest.mark.parametrize("cfg", LEVELS, ids=str)
@pytest.mark.parametrize("seed", range(5))
def test_oracle_reads_the_answer_from_the_text(cfg, seed):
    for p in generate(200, seed, cfg):
        assert oracle(p.problem) == p.answer, p.problem


@pytest.mark.parametrize("cfg", LEVELS, ids=str)
def test_difficulty_bounds_numbers_steps_and_values(cfg):
    problems = generate(300, 0, cfg)
    assert {p.steps for p in problems} == set(range(cfg.min_steps, cfg.max_steps + 1))
    for p in problems:
        assert all(1 <= int(n) <= cfg.max_value for n in re.findall(r"\d+", p.problem)), p.problem
        assert 1 <= p.answer <= ar.GROWTH * cfg.max_value
        assert p.template in ar.TEMPLATES


def test_all_templates_and_operations_occur():
    problems = generate(600, 1, ArithmeticConfig(12, 1, 3))
    assert {p.template for p in problems} == set(ar.TEMPLATES)
    ops = {op for p in problems for op in re.findall(r"\d+ ([-+x/]) \d+ =", p.reasoning)}
    assert ops == {"+", "-", "x", "/"}
    assert any(" and " in p.problem.split(".")[0] for p in problems)  # "Tom has 3 apples and buys 4 more."


@pytest.mark.parametrize("seed", range(3))
def test_reasoning_lines_are_correct_and_end_in_the_answer(seed):
    for p in generate(200, seed, ArithmeticConfig(20, 1, 3)):
        steps = re.findall(r"(\d+) ([-+x/]) (\d+) = (\d+)\.", p.reasoning)
        assert len(steps) == p.steps
        for a, op, b, c in steps:
            a, b, c = int(a), int(b), int(c)
            assert c == {"+": a + b, "-": a - b, "x": a * b, "/": a // b}[op] and (op != "/" or a % b == 0)
        assert int(steps[-1][3]) == p.answer
        assert p.reasoning.endswith(f"The answer is {p.answer}.")


@pytest.mark.parametrize("seed", range(3))
def test_sft_target_scores_one_under_the_math_reward(seed):
    for i, p in enumerate(generate(100, seed)):
        record = validate_record(to_record(p, f"p{i}"))
        target = f"<think>{record.reasoning}</think>{record.answer}"  # harness.data.dataset.sft_target
        assert math_accuracy(target, record.answer) == 1.0
        assert math_accuracy(record.reasoning, record.answer) == 1.0  # its last number too
        assert math_accuracy(f"<think>{record.reasoning}</think><answer>{p.answer + 1}</answer>",
                             record.answer) == 0.0


def test_written_records_are_valid_and_in_the_schema(tmp_path):
    path = write_arithmetic_split(tmp_path, 50, seed=3, split="sft")
    assert path == tmp_path / "sft.jsonl"
    records = list(read_jsonl(path, strict=True))
    assert len(records) == 50 and len({r.problem_id for r in records}) == 50
    r = records[0]
    assert r.problem_id == "arith-sft-000000" and r.data_type == "text" and r.problem_type == "numerical"
    assert re.fullmatch(r"<answer>\d+</answer>", r.answer) and r.reasoning and r.problem.endswith("?")
    assert set(r.extra) == {"steps", "template"}
    assert all(oracle(rec.problem) == int(rec.answer_text) for rec in records)


def test_deterministic_per_seed_and_independent_of_size(tmp_path):
    a = write_arithmetic_split(tmp_path / "a", 40, seed=7).read_bytes()
    b = write_arithmetic_split(tmp_path / "b", 40, seed=7).read_bytes()
    c = write_arithmetic_split(tmp_path / "c", 40, seed=8).read_bytes()
    assert a == b and a != c
    assert generate(10, 7) == generate(40, 7)[:10]


def test_problems_are_distinct_and_splits_disjoint(tmp_path):
    paths = write_arithmetic_splits(tmp_path, {"sft": 300, "rl": 300, "test": 100}, seed=0,
                                    cfg=ArithmeticConfig(5, 1, 1))
    texts = {s: [r.problem for r in read_jsonl(p, strict=True)] for s, p in paths.items()}
    assert all(len(set(t)) == len(t) for t in texts.values())
    assert not set(texts["test"]) & (set(texts["sft"]) | set(texts["rl"]))
    assert not set(texts["sft"]) & set(texts["rl"])


def test_too_small_a_space_is_refused(monkeypatch):
    same = ar.ArithmeticProblem("Tom has 1 apples. How many apples does Tom have now?", "The answer is 1.",
                                1, 1, "story")
    monkeypatch.setattr(ar, "make_problem", lambda rng, cfg: same)
    with pytest.raises(ValueError, match="distinct problems"):
        generate(2, 0)


@pytest.mark.parametrize("kwargs", [dict(max_value=2), dict(min_steps=0), dict(min_steps=3, max_steps=2),
                                    dict(max_steps=4), dict(max_value=5.0)])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        ArithmeticConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown difficulty"):
        ArithmeticConfig.level("impossible")


@pytest.mark.parametrize(("text", "answer"), [
    ("Tom has 3 apples and buys 4 more. How many apples does Tom have now?", 7),
    ("Ann has 9 cards. Ben gives her 2 more. She splits them into 11 equal groups, keeping one group. "
     "How many cards does Ann have now?", 1),
    ("There are 3 boxes with 4 pencils in each box. 5 pencils are taken out. How many pencils are there now?", 7),
    ("Mia has 6 books. Sam has 2 fewer books than Mia. How many books do Mia and Sam have together?", 10),
])
def test_oracle_on_hand_written_problems(text, answer):
    assert oracle(text) == answer


@pytest.mark.parametrize("text", ["Tom has 3 apples. He sings. How many apples does Tom have now?",
                                  "Tom has 3 apples.", "How many apples does Tom have now?",
                                  "Tom has 3 apples. How many pears grow on Mars?"])
def test_oracle_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError):
        oracle(text)
