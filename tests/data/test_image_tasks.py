"""Tests for harness.data.synthetic.image_tasks: the oracle answers every generated question
from the PNG files alone (and is fooled by no tampered key or swapped image), the records
are valid and balanced, the writer is deterministic, splits share no question on identical
images, and the training loader reads and decodes the split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.data.dataset import QADataset, SkipLedger, prompt_content
from harness.data.image import load_image
from harness.data.records import validate_record
from harness.data.synthetic import image_tasks as it
from harness.data.synthetic.render import shape_mask

# a multiple of every answer space's size (4, 3, 4, 2, 2, 5): each answer of a kind equally often
PER_KIND = 60


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image_split")
    return it.write_image_split(out, PER_KIND * len(it.IMAGE_KINDS), seed=0)


# ----------------------------------------------------------------------------- oracle


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("seed", range(4))
def test_oracle_answers_every_record(tmp_path: Path, size: int, seed: int) -> None:
    path = it.write_image_split(tmp_path, 10 * len(it.IMAGE_KINDS), seed, size=size)
    for rec in read_records(path):
        assert it.oracle_answer(rec, tmp_path) == it.answer_text(rec), rec["problem_id"]
    assert it.oracle_accuracy(path) == 1.0


@pytest.mark.parametrize("kind", it.IMAGE_KINDS)
def test_oracle_answers_every_record_of_each_kind(split: Path, kind: str) -> None:
    records = [r for r in read_records(split) if r["task"] == kind]
    assert len(records) == PER_KIND
    for rec in records:
        assert it.oracle_answer(rec, split.parent) == it.answer_text(rec), rec["problem_id"]


@pytest.mark.parametrize("size", [16, 17, 24, 32, 33, 48, 64, 128])
def test_every_shape_at_every_drawn_side_is_recognised(size: int) -> None:
    """The shape rule holds at every side the writer may draw, not only the sampled ones."""
    lo, hi = it.side_bounds(size)
    assert it.MIN_SIDE <= lo <= hi <= size // 2
    for side in range(lo, hi + 1):
        for shape in it.SHAPES:
            assert it.mask_shape(shape_mask(shape, side)) == shape, (size, side, shape)


def test_every_object_in_every_place_is_found() -> None:
    """Colour, shape and quadrant are read back for each combination at the corners of its
    quadrant (the places nearest the centre lines and the edges)."""
    size = 32
    lo, hi = it.side_bounds(size)
    for colour in it.PALETTE:
        for shape in it.SHAPES:
            for region in it.REGIONS:
                (ya, yb), (xa, xb) = it.quadrant_span(region, size)
                for side in (lo, hi):
                    for y0 in (ya, yb - side):
                        for x0 in (xa, xb - side):
                            ob = it.Placed(colour, shape, region, x0, y0, side)
                            assert it.find_object(it.draw([ob], size)) == it.Seen(colour, shape, region), ob


def test_oracle_disagrees_with_a_tampered_key(split: Path) -> None:
    records = read_records(split)
    tampered = []
    for rec in records:
        wrong = next(o for o in rec["options"] if o != it.answer_text(rec))
        tampered.append({**rec, "answer": f"<answer>{wrong}</answer>"})
        assert it.oracle_answer(tampered[-1], split.parent) != it.answer_text(tampered[-1]), rec["problem_id"]
    path = split.parent / "tampered.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tampered), encoding="utf-8")
    assert it.oracle_accuracy(path) == 0.0


def test_oracle_follows_the_images_not_the_key(split: Path, tmp_path: Path) -> None:
    """Swapping a which_has pair's images flips the oracle's answer; a colour_of image
    replaced by another colour's gives that colour: it reads the files."""
    (tmp_path / "images").mkdir()
    pair = next(r for r in read_records(split) if r["task"] == "which_has")
    first, second = pair["images"]
    (tmp_path / first).write_bytes((split.parent / second).read_bytes())
    (tmp_path / second).write_bytes((split.parent / first).read_bytes())
    flipped = {"first": "second", "second": "first"}[it.answer_text(pair)]
    assert it.oracle_answer(pair, tmp_path) == flipped

    singles = [r for r in read_records(split) if r["task"] == "colour_of"]
    a, b = next((x, y) for x in singles for y in singles if it.answer_text(x) != it.answer_text(y))
    (tmp_path / a["images"][0]).write_bytes((split.parent / b["images"][0]).read_bytes())
    assert it.oracle_answer(a, tmp_path) == it.answer_text(b) != it.answer_text(a)


def test_oracle_refuses_an_empty_image_and_a_wrong_image_count(split: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no object"):
        it.find_object(np.zeros((32, 32, 3), np.uint8))
    rec = next(r for r in read_records(split) if r["task"] == "moved")
    with pytest.raises(ValueError, match="needs 2 image"):
        it.oracle_answer({**rec, "images": rec["images"][:1]}, split.parent)


# ----------------------------------------------------------------------------- records


def test_records_are_valid(split: Path) -> None:
    for raw in read_records(split):
        rec = validate_record(raw)
        kind = raw["task"]
        pair = kind in it.PAIR_KINDS
        assert rec.data_type == "image" and rec.problem_type == "free-form"
        assert len(rec.images) == (2 if pair else 1)
        assert rec.problem.count("<image>") == (2 if pair else 0)
        assert rec.options == list(it.ANSWER_SPACES[kind]) and rec.answer_text in rec.options
        assert rec.reasoning.endswith(f", so the answer is {rec.answer_text}.")
        assert rec.category == it.CATEGORIES.get(kind)
        for p in rec.images:
            assert load_image(split.parent / p).shape == (it.DEFAULT_SIZE, it.DEFAULT_SIZE, 3)


def test_answers_are_balanced(split: Path) -> None:
    by_kind: dict[str, Counter] = {k: Counter() for k in it.IMAGE_KINDS}
    for rec in read_records(split):
        by_kind[rec["task"]][it.answer_text(rec)] += 1
    for kind, counts in by_kind.items():
        space = it.ANSWER_SPACES[kind]
        assert counts == Counter({a: PER_KIND // len(space) for a in space}), kind


def test_pair_objects_follow_their_kind() -> None:
    """same_colour varies shape and place freely; moved keeps the object and, when it moves,
    changes quadrant; which_has's other image shows another colour."""
    for j in range(40):
        for kind in it.PAIR_KINDS:
            answer = it.balanced_answer(3, "train", kind, j)
            first, second = it.make_task(it.item_rng(3, "train", kind, j), 32, kind, answer).objects
            if kind == "moved":
                assert (first.colour, first.shape, first.side) == (second.colour, second.shape, second.side)
                assert (first == second) if answer == "no" else (second.region == answer != first.region)
            elif kind == "which_has":
                assert first.colour != second.colour
            else:
                assert (first.colour == second.colour) == (answer == "yes")


# ----------------------------------------------------------------------------- files


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = it.write_image_split(tmp_path / "a", 24, seed=5)
    b = it.write_image_split(tmp_path / "b", 24, seed=5)
    c = it.write_image_split(tmp_path / "c", 24, seed=6)
    assert _files(a.parent) == _files(b.parent)
    assert _files(a.parent) != _files(c.parent)


def test_first_items_do_not_depend_on_n(tmp_path: Path) -> None:
    short = read_records(it.write_image_split(tmp_path / "s", 12, seed=1))
    long = read_records(it.write_image_split(tmp_path / "l", 36, seed=1))
    assert long[:12] == short
    for rec in short:
        for p in rec["images"]:
            assert (tmp_path / "s" / p).read_bytes() == (tmp_path / "l" / p).read_bytes()


def test_splits_share_no_question_on_identical_images(tmp_path: Path) -> None:
    paths = it.write_image_splits(tmp_path, {"sft": 120, "rl": 120, "test": 60}, seed=0)
    assert [p.name for p in paths.values()] == ["sft.jsonl", "rl.jsonl", "test.jsonl"]
    keys = {name: it.split_keys(p) for name, p in paths.items()}
    assert [len(k) for k in keys.values()] == [120, 120, 60]  # no repeat within a split either
    assert not (keys["sft"] & keys["rl"]) and not (keys["sft"] & keys["test"]) and not (keys["rl"] & keys["test"])
    for p in paths.values():
        assert it.oracle_accuracy(p) == 1.0


def test_excluded_items_are_redrawn_with_their_answer(tmp_path: Path) -> None:
    """The same split and seed again, excluding the first write: every item collides on its
    first attempt and is redrawn, with the same (balanced) answer."""
    first = it.write_image_split(tmp_path / "a", 36, seed=2, size=16)
    again = it.write_image_split(tmp_path / "b", 36, seed=2, size=16, exclude=it.split_keys(first))
    assert not it.split_keys(first) & it.split_keys(again)
    assert [it.answer_text(r) for r in read_records(first)] == [it.answer_text(r) for r in read_records(again)]
    assert it.oracle_accuracy(again) == 1.0


@pytest.mark.parametrize("bad", [
    {"n": 0}, {"seed": -1}, {"kinds": ("colour_of", "colour_of")}, {"kinds": ("count",)},
    {"kinds": "colour_of"}, {"size": 8}, {"size": 32.0},
])
def test_bad_arguments_are_refused(tmp_path: Path, bad: dict) -> None:
    args = {"n": 6, "seed": 0, "kinds": it.IMAGE_KINDS, "size": 32, **bad}
    with pytest.raises(ValueError):
        it.write_image_split(tmp_path, **args)


# ----------------------------------------------------------------------------- loader


def test_dataset_reads_the_split_and_decodes_every_image(split: Path) -> None:
    ds = QADataset(split, num_frames=1, ledger=SkipLedger(0.0), media_kinds=("image", "video"))
    assert len(ds) == PER_KIND * len(it.IMAGE_KINDS) and ds.malformed == 0
    for rec in ds.records:
        media = ds.media(rec)
        assert [m.kind for m in media] == ["image"] * len(rec.images)
        for medium in media:
            assert ds.load_medium(rec, medium)
            assert medium.data.shape == (it.DEFAULT_SIZE, it.DEFAULT_SIZE, 3) and medium.data.dtype == np.uint8
    assert ds.ledger.decodes == [0, sum(len(r.images) for r in ds.records)]


def test_prompt_content_places_the_images(split: Path) -> None:
    ds = QADataset(split, num_frames=1, ledger=SkipLedger(0.0), media_kinds=("image", "video"))
    for rec in ds.records:
        content, kinds = prompt_content(rec)
        if rec.extra["task"] in it.SINGLE_KINDS:  # no marker: the image goes before the question
            assert isinstance(content, str) and "<image>" not in content and kinds == ["image"]
            assert content.startswith(rec.problem)
            continue
        assert kinds == []
        assert [item["type"] for item in content] == ["text", "image", "text", "image", "text"]
        assert content[0]["text"] == "First image: " and content[2]["text"] == "\nSecond image: "
        assert content[4]["text"].startswith(rec.problem.split("<image>")[-1])
