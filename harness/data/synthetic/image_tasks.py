"""Synthetic image questions whose answers are in the pixels, written as real PNG files.

The world is the video basic level's (scene.LEVELS["basic"]) as still images: one flat
object of one of four colours (red, green, blue, yellow) and three shapes (square, circle,
triangle) on black, inside one quadrant of a 2x2 grid. Each image is `size` x `size`
(default 32, small enough for a toy Qwen2.5-VL with tight pixel bounds); the object's side
is 30-45 % of the image's and its place inside its quadrant is drawn at random, so there
are thousands of distinct images (needed for disjoint splits) while the quadrant stays
unambiguous (the object never crosses the centre lines).

Kinds. Every answer is a word, as at the video basic level (questions.py): problem_type
"free-form", the key "<answer>red</answer>", and `options` listing the kind's whole answer
space in a fixed order (kept for the oracle and for scoring, never shown in the prompt).
- single image, no "<image>" marker in `problem` (the loader puts the image first):
  colour_of ("What colour is the object?": red | green | blue | yellow),
  shape_of ("What shape is the object?": square | circle | triangle),
  region_of ("Where in the image is the object?": top left | top right | bottom left |
  bottom right; category "spatial", as questions.BASIC_KINDS has it).
- image pairs (data_type "image" with two paths; `problem` starts "First image: <image>\n
  Second image: <image>\n", EasyR1's markers in place, so each image carries its label):
  same_colour ("Do the two images show objects of the same colour?": yes | no; shapes and
  places are independent, so only colour decides);
  which_has ("Which image shows the red object, the first or the second?": first | second;
  the other image's object has another colour);
  moved ("Did the object move between the first and the second image? If it did, where
  to?": no | one of the four regions; the same object in both; "no" shows the identical
  image twice, a move puts it in another quadrant; category "spatial").
  All three are one perception per image plus a comparison a toy model can learn: colour
  against colour, a colour word against two colours, a quadrant against a quadrant.

Balance. The answer of the j-th item of a kind is drawn from shuffled blocks of its answer
space (like dataset._answer_index for letters), so over a split every answer of a kind is
as frequent as the others (exactly, for a multiple of the space's size per kind); the
other attributes are uniform at random.

Files and records. `write_image_split` writes `images/<id>.png` (pairs: `<id>-1.png`,
`<id>-2.png`) and a jsonl of training records (harness.data.records: problem_id, data_type
"image", images (paths relative to the jsonl's folder), problem, problem_type, answer,
reasoning (one short correct sentence for CoT-SFT: "The object is red, so the answer is
red."), options, category where it has one) plus `task` (the kind). Item i has kind
kinds[i % len(kinds)]; the j-th item of a kind comes from its own random stream (seed,
split, kind, j, attempt), so a split is a function of its arguments, PNG bytes included.
An item whose (image bytes, question) was already drawn, in this split or in `exclude`, is
drawn again (next attempt, same answer), so `write_image_splits` gives splits with no
question on identical images in two of them.

Oracle. `oracle_answer(record, root)` decodes the PNG file(s) with `load_image` and finds
the object as the pixels that differ from the background (the image's most frequent
colour): its colour is the scene colour nearest the mean of those pixels, its shape follows
from how it fills its bounding box (full: square; lower half much heavier than the upper:
triangle; else circle), its quadrant from its centroid. It shares no state with the
generator, so agreeing with every key shows the files hold the answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.data.image import load_image
from harness.data.records import answer_key as answer_text
from harness.data.records import read_jsonl, write_jsonl
from harness.data.synthetic.render import BACKGROUND, shape_mask
from harness.data.synthetic.scene import COLOURS, LEVELS, SHAPES

PALETTE: tuple[str, ...] = LEVELS["basic"].colours  # red, green, blue, yellow
REGIONS: tuple[str, ...] = LEVELS["basic"].regions  # row-major 2x2: top left, top right, bottom left, bottom right
SINGLE_KINDS = ("colour_of", "shape_of", "region_of")
PAIR_KINDS = ("same_colour", "which_has", "moved")
IMAGE_KINDS = SINGLE_KINDS + PAIR_KINDS
ANSWER_SPACES: dict[str, tuple[str, ...]] = {
    "colour_of": PALETTE, "shape_of": SHAPES, "region_of": REGIONS,
    "same_colour": ("yes", "no"), "which_has": ("first", "second"), "moved": ("no", *REGIONS),
}
CATEGORIES = {"region_of": "spatial", "moved": "spatial"}  # the others have no LongVideo-Reason category
SINGLE_TEXT = {"colour_of": "What colour is the object?", "shape_of": "What shape is the object?",
               "region_of": "Where in the image is the object?"}
PAIR_PREFIX = "First image: <image>\nSecond image: <image>\n"  # EasyR1 markers, one per image, in place
ORDINALS = ("first", "second")

DEFAULT_SIZE = 32
MIN_SIZE = 16  # below it a small circle and a square have the same pixels
SIDE_RANGE = (0.30, 0.45)  # object side / image side; 0.45 < 0.5 keeps it inside its quadrant
MIN_SIDE = 5  # pixels: the smallest side whose circle still has cut corners
ATTEMPTS = 200  # draws per item before its (image, question) space is declared exhausted
# spawn keys of the per-item random streams: fixed per kind, so adding a kind moves no other
_KIND_KEYS = {"colour_of": 1, "shape_of": 2, "region_of": 3, "same_colour": 4, "which_has": 5, "moved": 6}

# The oracle: a pixel is the object's when its RGB is this far (L1) from the background;
# the scene colours are all >= 255 away from black, and PNG is lossless.
FOREGROUND_L1 = 96
SQUARE_FILL = 0.95  # share of the bounding box a square fills (a circle fills ~0.79, a triangle ~0.5)
TRIANGLE_RATIO = 0.75  # upper half / lower half of the box: ~1/3 for a triangle, 1 for a circle


@dataclass(frozen=True)
class Placed:
    """One object as drawn: its box is [y0, y0 + side) x [x0, x0 + side) in pixels."""

    colour: str
    shape: str
    region: str
    x0: int
    y0: int
    side: int


@dataclass(frozen=True, eq=False)
class ImageTask:
    """One generated question and the image(s) that answer it.

    images: one or two uint8 [size, size, 3] RGB arrays. `problem` is the question as the
    model sees it (pairs: with the "<image>" markers); `answer` is the answer word;
    `objects` are what was drawn, kept for tests, never read by the oracle.
    """

    kind: str
    images: tuple[np.ndarray, ...]
    problem: str
    answer: str
    reasoning: str
    objects: tuple[Placed, ...]

    @property
    def options(self) -> tuple[str, ...]:
        return ANSWER_SPACES[self.kind]


# ----------------------------------------------------------------------------- drawing


def side_bounds(size: int) -> tuple[int, int]:
    """Smallest and largest object side (pixels) for `size` x `size` images."""
    lo = max(MIN_SIDE, round(SIDE_RANGE[0] * size))
    hi = min(size // 2, max(lo, round(SIDE_RANGE[1] * size)))
    return lo, hi


def quadrant_span(region: str, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((y_start, y_end), (x_start, x_end)) pixel ranges of a quadrant, ends exclusive."""
    row, col = divmod(REGIONS.index(region), 2)
    half = size // 2
    spans = ((0, half), (half, size))
    return spans[row], spans[col]


def place(rng: np.random.Generator, size: int, colour: str | None = None, shape: str | None = None,
          region: str | None = None, side: int | None = None) -> Placed:
    """An object with the given attributes, the others drawn at random; its box lies wholly
    inside its quadrant. Every draw is made whatever is given, so one attribute fixed by the
    caller does not shift the stream of the others."""
    lo, hi = side_bounds(size)
    drawn_colour = PALETTE[int(rng.integers(len(PALETTE)))]
    drawn_shape = SHAPES[int(rng.integers(len(SHAPES)))]
    drawn_region = REGIONS[int(rng.integers(len(REGIONS)))]
    drawn_side = int(rng.integers(lo, hi + 1))
    colour, shape = colour or drawn_colour, shape or drawn_shape
    region, side = region or drawn_region, side or drawn_side
    (ya, yb), (xa, xb) = quadrant_span(region, size)
    y0, x0 = int(rng.integers(ya, yb - side + 1)), int(rng.integers(xa, xb - side + 1))
    return Placed(colour, shape, region, x0, y0, side)


def draw(objects: Sequence[Placed], size: int) -> np.ndarray:
    """uint8 [size, size, 3] RGB: the objects' shapes in their colours on the background."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for ob in objects:
        patch = img[ob.y0:ob.y0 + ob.side, ob.x0:ob.x0 + ob.side]  # [side, side, 3] view
        patch[shape_mask(ob.shape, ob.side)] = COLOURS[ob.colour]
    return img


def png_bytes(img: np.ndarray) -> bytes:
    """The PNG encoding of uint8 [H, W, 3] RGB (no timestamp or other varying chunk)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- tasks


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def make_single_task(rng: np.random.Generator, size: int, kind: str, answer: str) -> ImageTask:
    """colour_of / shape_of / region_of: one object whose asked attribute is `answer`."""
    attribute = {"colour_of": "colour", "shape_of": "shape", "region_of": "region"}[kind]
    ob = place(rng, size, **{attribute: answer})
    said = {"colour_of": answer, "shape_of": f"{_article(answer)} {answer}", "region_of": f"in the {answer}"}[kind]
    reasoning = f"The object is {said}, so the answer is {answer}."
    return ImageTask(kind, (draw([ob], size),), SINGLE_TEXT[kind], answer, reasoning, (ob,))


def _other_colour(rng: np.random.Generator, colour: str) -> str:
    rest = [c for c in PALETTE if c != colour]
    return rest[int(rng.integers(len(rest)))]


def _pair(kind: str, size: int, first: Placed, second: Placed, question: str, answer: str,
          reasoning: str) -> ImageTask:
    return ImageTask(kind, (draw([first], size), draw([second], size)), PAIR_PREFIX + question,
                     answer, reasoning, (first, second))


def make_same_colour_task(rng: np.random.Generator, size: int, answer: str) -> ImageTask:
    """Two objects, shapes and places independent; the same colour iff `answer` is "yes"."""
    first = place(rng, size)
    colour = first.colour if answer == "yes" else _other_colour(rng, first.colour)
    second = place(rng, size, colour=colour)
    if answer == "yes":
        reasoning = f"Both objects are {colour}, so the answer is yes."
    else:
        reasoning = f"The first object is {first.colour} and the second is {colour}, so the answer is no."
    return _pair("same_colour", size, first, second,
                 "Do the two images show objects of the same colour?", answer, reasoning)


def make_which_has_task(rng: np.random.Generator, size: int, answer: str) -> ImageTask:
    """The asked colour in the `answer` image ("first" / "second"), another in the other."""
    asked = PALETTE[int(rng.integers(len(PALETTE)))]
    colours = [_other_colour(rng, asked)] * 2
    colours[ORDINALS.index(answer)] = asked
    first, second = place(rng, size, colour=colours[0]), place(rng, size, colour=colours[1])
    reasoning = (f"The first object is {first.colour} and the second is {second.colour}, "
                 f"so the answer is {answer}.")
    return _pair("which_has", size, first, second,
                 f"Which image shows the {asked} object, the first or the second?", answer, reasoning)


def make_moved_task(rng: np.random.Generator, size: int, answer: str) -> ImageTask:
    """One object shown twice: unchanged ("no") or moved into the `answer` quadrant."""
    if answer == "no":
        first = second = place(rng, size)
        reasoning = f"The object is in the {first.region} in both images, so the answer is no."
    else:
        start = [r for r in REGIONS if r != answer][int(rng.integers(len(REGIONS) - 1))]
        first = place(rng, size, region=start)
        second = place(rng, size, first.colour, first.shape, answer, first.side)
        reasoning = (f"The object is in the {start} in the first image and in the {answer} in the "
                     f"second, so the answer is {answer}.")
    return _pair("moved", size, first, second,
                 "Did the object move between the first and the second image? If it did, where to?",
                 answer, reasoning)


def make_task(rng: np.random.Generator, size: int, kind: str, answer: str) -> ImageTask:
    if answer not in ANSWER_SPACES[kind]:
        raise ValueError(f"{kind}: {answer!r} is not one of {ANSWER_SPACES[kind]}")
    if kind in SINGLE_KINDS:
        return make_single_task(rng, size, kind, answer)
    maker = {"same_colour": make_same_colour_task, "which_has": make_which_has_task,
             "moved": make_moved_task}[kind]
    return maker(rng, size, answer)


def _split_key(split: str) -> int:
    """A stable integer for a split name (Python's hash() varies per process)."""
    return int.from_bytes(hashlib.sha256(split.encode("utf-8")).digest()[:8], "big")


def _seed_sequence(seed: int, split: str, *spawn_key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, _split_key(split)], spawn_key=spawn_key)


def balanced_answer(seed: int, split: str, kind: str, j: int) -> str:
    """The answer of the j-th item of `kind`: blocks of the answer space, each shuffled."""
    space = ANSWER_SPACES[kind]
    block = np.random.default_rng(_seed_sequence(seed, split, _KIND_KEYS[kind], 0, j // len(space)))
    return space[int(block.permutation(len(space))[j % len(space)])]


def item_rng(seed: int, split: str, kind: str, j: int, attempt: int = 0) -> np.random.Generator:
    """The random stream of attempt `attempt` at the j-th item of `kind` in `split`."""
    return np.random.default_rng(_seed_sequence(seed, split, _KIND_KEYS[kind], 1, j, attempt))


# ----------------------------------------------------------------------------- files


ItemKey = tuple[tuple[str, ...], str]  # (sha256 of each image's PNG bytes, problem)


def item_key(pngs: Sequence[bytes], problem: str) -> ItemKey:
    return tuple(hashlib.sha256(b).hexdigest() for b in pngs), problem


def split_keys(jsonl: str | Path) -> set[ItemKey]:
    """The (image bytes, question) keys of a written split, read back from its files."""
    path = Path(jsonl)
    return {item_key([(path.parent / p).read_bytes() for p in rec.images or []], rec.problem)
            for rec in read_jsonl(path, strict=True)}


def _write_bytes(path: Path, data: bytes) -> None:
    """Temporary name, then rename: a crash leaves no truncated file under the final name."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _record(task: ImageTask, pid: str, rels: list[str]) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "problem_id": pid, "data_type": "image", "images": rels, "problem": task.problem,
        "problem_type": "free-form", "answer": f"<answer>{task.answer}</answer>",
        "reasoning": task.reasoning, "options": list(task.options),
    }
    if task.kind in CATEGORIES:
        rec["category"] = CATEGORIES[task.kind]
    rec["task"] = task.kind
    return rec


def _check_split_args(n: object, seed: object, kinds: Sequence[str], size: object) -> None:
    def is_int(x: object) -> bool:
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if not is_int(n) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if (isinstance(kinds, str) or not kinds or any(k not in IMAGE_KINDS for k in kinds)
            or len(set(kinds)) != len(kinds)):
        raise ValueError(f"kinds must be distinct names from {IMAGE_KINDS}, got {kinds!r}")
    if not is_int(size) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer >= {MIN_SIZE} (pixels per side), got {size!r}")


def _draw_new(seed: int, split: str, kind: str, j: int, size: int,
              taken: set[ItemKey]) -> tuple[ImageTask, list[bytes], ItemKey]:
    """The j-th item of `kind`: the first attempt whose (image bytes, question) is not taken."""
    answer = balanced_answer(seed, split, kind, j)
    for attempt in range(ATTEMPTS):
        task = make_task(item_rng(seed, split, kind, j, attempt), size, kind, answer)
        pngs = [png_bytes(img) for img in task.images]
        key = item_key(pngs, task.problem)
        if key not in taken:
            return task, pngs, key
    raise ValueError(f"{kind} item {j} of split {split!r}: no new image in {ATTEMPTS} draws at size {size}; "
                     "use a larger size or fewer items")


def write_image_split(out_dir: str | Path, n: int, seed: int, kinds: Sequence[str] = IMAGE_KINDS,
                      size: int = DEFAULT_SIZE, filename: str = "image.jsonl", *, split: str = "train",
                      exclude: Collection[ItemKey] = ()) -> Path:
    """n image questions (kinds in turn) as `out_dir/images/<id>.png` and `out_dir/<filename>`
    (ids "img-{split}-{kind}-{i:05d}"; validated by records.write_jsonl); returns the jsonl's
    path. No (image bytes, question) repeats within the split or comes from `exclude`."""
    _check_split_args(n, seed, kinds, size)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    taken, records = set(exclude), []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        task, pngs, key = _draw_new(seed, split, kind, i // len(kinds), size, taken)
        taken.add(key)
        pid = f"img-{split}-{kind}-{i:05d}"
        names = [f"{pid}.png"] if len(pngs) == 1 else [f"{pid}-{k + 1}.png" for k in range(len(pngs))]
        for name, data in zip(names, pngs, strict=True):
            _write_bytes(out / "images" / name, data)
        records.append(_record(task, pid, [f"images/{name}" for name in names]))
    path = out / filename
    write_jsonl(path, records)
    return path


def write_image_splits(out_dir: str | Path, sizes: Mapping[str, int], seed: int,
                       kinds: Sequence[str] = IMAGE_KINDS, size: int = DEFAULT_SIZE) -> dict[str, Path]:
    """One `out_dir/{split}.jsonl` per split (e.g. {"sft": 2000, "rl": 2000, "test": 300}),
    in the given order, images under one `out_dir/images/`; no (image bytes, question) in
    two splits."""
    written: dict[str, Path] = {}
    taken: set[ItemKey] = set()
    for split, n in sizes.items():
        written[split] = write_image_split(out_dir, n, seed, kinds, size, f"{split}.jsonl",
                                           split=split, exclude=taken)
        taken |= split_keys(written[split])
    return written


# ----------------------------------------------------------------------------- oracle


@dataclass(frozen=True)
class Seen:
    """What the oracle reads off one image."""

    colour: str
    shape: str
    region: str


def _background(img: np.ndarray) -> np.ndarray:
    """int [3]: the most frequent colour of uint8 [H, W, 3] (the object covers < 1/4)."""
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)  # [K, 3], [K]
    return colours[int(np.argmax(counts))].astype(np.int64)


def object_mask(img: np.ndarray) -> np.ndarray:
    """bool [H, W]: the pixels that differ from the background."""
    return np.abs(img.astype(np.int64) - _background(img)).sum(axis=-1) > FOREGROUND_L1


def nearest_colour(rgb: np.ndarray) -> str:
    """The scene colour name nearest (squared RGB distance) float [3] `rgb`."""
    return min(COLOURS, key=lambda c: float(np.sum((np.array(COLOURS[c], dtype=np.float64) - rgb) ** 2)))


def mask_shape(mask: np.ndarray) -> str:
    """square | circle | triangle, from how a bool [H, W] mask fills its bounding box."""
    ys, xs = np.nonzero(mask)
    box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]  # [h, w]
    if box.mean() >= SQUARE_FILL:
        return "square"
    half = box.shape[0] // 2
    upper, lower = box[:half].sum(), box[box.shape[0] - half:].sum()  # the middle row of an odd box in neither
    return "triangle" if upper < TRIANGLE_RATIO * lower else "circle"


def find_object(img: np.ndarray) -> Seen:
    """The colour, shape and quadrant of the one object in uint8 [H, W, 3]; ValueError when
    the image shows nothing but background."""
    mask = object_mask(img)  # [H, W]
    if not mask.any():
        raise ValueError("no object: every pixel is background")
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    row, col = int(ys.mean() >= height / 2), int(xs.mean() >= width / 2)
    colour = nearest_colour(img[mask].astype(np.float64).mean(axis=0))
    return Seen(colour, mask_shape(mask), REGIONS[row * 2 + col])


def _asked_colour(problem: str) -> str:
    m = re.search(r"Which image shows the (\w+) object", problem)
    if not m:
        raise ValueError(f"not a which_has question: {problem!r}")
    return m.group(1)


def _pair_answer(kind: str, first: Seen, second: Seen, problem: str) -> str:
    if kind == "same_colour":
        return "yes" if first.colour == second.colour else "no"
    if kind == "which_has":
        holders = [o for o, s in zip(ORDINALS, (first, second), strict=True) if s.colour == _asked_colour(problem)]
        if len(holders) != 1:
            raise ValueError(f"{len(holders)} images show the {_asked_colour(problem)} object, not one")
        return holders[0]
    if kind == "moved":
        return "no" if first.region == second.region else second.region
    raise ValueError(f"unknown pair task {kind!r}")


def oracle_answer(record: Mapping[str, Any], root: str | Path) -> str:
    """The answer word recovered from the record's PNG file(s) alone (and, for which_has,
    the colour its question names); `root` is the folder the record's paths are relative to."""
    kind = record["task"]
    seen = [find_object(load_image(Path(root) / p)) for p in record["images"]]
    wanted = 1 if kind in SINGLE_KINDS else 2
    if len(seen) != wanted:
        raise ValueError(f"record {record.get('problem_id')!r}: {kind} needs {wanted} image(s), got {len(seen)}")
    if kind in SINGLE_KINDS:
        return getattr(seen[0], {"colour_of": "colour", "shape_of": "shape", "region_of": "region"}[kind])
    return _pair_answer(kind, seen[0], seen[1], record["problem"])


def oracle_accuracy(jsonl: str | Path) -> float:
    """Share of a split's records whose key the oracle recovers from the files."""
    path = Path(jsonl)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    right = sum(oracle_answer(r, path.parent) == answer_text(r) for r in records)
    return right / len(records) if records else math.nan
