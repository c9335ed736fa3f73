"""The training record: one JSON object per line, with the authors' fields plus a few of ours.

Authors' fields (NVlabs/Long-RL, LongVideo-Reason): `problem_id`, `data_type`, `videos`
(paths relative to the jsonl's directory), `problem` (question + options, one "A. ..." per
line), `problem_type`, `reasoning` (chain of thought, used by CoT-SFT; may be empty for RL-only
data) and `answer` (always wrapped: "<answer>B</answer>").
Ours, optional so the authors' files load too: `category` (temporal | goal | plot | spatial),
`options` (the option texts without letters), `video_id`, `duration` (seconds).
Unknown keys are kept in `extra`, not dropped, and written back.

The released LongVideo-Reason files (HF `LongVideo-Reason/longvideo-reason`, as read by
Long-RL `verl/utils/dataset.py` and `eval/eval.py`) differ from that schema and are read as
they are: `problem_id` an int (kept as its decimal string), `videos` one path string (a
list of one), `data_type` absent (video when a video is named), and `problem_type` holding
the reasoning category ("temporal", "goal", "plot", "spatial"; the generator's "general"
for uncategorised). For those, the problem type follows from the question itself: multiple
choice when it lists options ("A. ..." lines), else free-form, its key compared as text, as
the authors' reward (`examples/reward_function/r1v.py`) compares any answer.

`validate_record(d)` turns a dict into a `Record` or raises `RecordError` naming the record
and the field. `read_jsonl` yields valid records and skips bad lines with a logged warning
(path:line and why), counted in `skipped` if given; `strict=True` raises instead. A file
whose first lines are not JSON objects at all (a JSON array, a pretty-printed file, a video
given by mistake) is refused whole, in one line, instead of line by line.

The format allows several `videos` per record; the video recipes take one video per
question, so `video_recipe_problem` (their `usable` check) refuses the others when read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATA_TYPES = ("video", "image", "text", "audio", "video+audio")
# The media a record of each type needs, by field: video+audio is one video file whose own
# audio track is the audio (Qwen2.5-Omni's use_audio_in_video).
MEDIA_FIELDS = {"video": "videos", "image": "images", "audio": "audios", "video+audio": "videos", "text": None}
# The types the accuracy reward scores (`algos.rewards.accuracy_reward`); a record of any other
# type is refused when read rather than failing at its first reward or evaluation.
PROBLEM_TYPES = ("multiple choice", "numerical", "OCR", "free-form", "math")
CATEGORIES = ("temporal", "goal", "plot", "spatial")
ANSWER_RE = re.compile(r"^<answer>(.*)</answer>$", re.DOTALL)
# `problem_type` values of the released files that name a category, not a problem type
RELEASED_CATEGORIES = {
    "temporal": "temporal", "goal": "goal", "goal and purpose": "goal", "plot": "plot",
    "plot and narrative": "plot", "spatial": "spatial", "general": None,
}
OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[.)]\s+(\S.*?)\s*$")


def option_lines(problem: str) -> list[str]:
    """The option texts of a question's "A. ..." / "(B) ..." lines, by letter (a letter
    missing between A and the last one gives ""; lines in shuffled order are put in order);
    [] unless lines for both A and B are present."""
    found: dict[str, str] = {}
    for line in problem.splitlines():
        m = OPTION_LINE.match(line)
        if m and m.group(1) not in found:
            found[m.group(1)] = m.group(2)
    if not {"A", "B"} <= found.keys():
        return []
    return [found.get(chr(65 + i), "") for i in range(ord(max(found)) - 64)]


def option_letters_of(options: list[str]) -> str:
    """The letters of the options present ("" entries are gaps in the question's lines)."""
    return "".join(chr(65 + i) for i, text in enumerate(options) if text)


def lists_options(problem: str) -> bool:
    """Whether a question carries option lines (see `option_lines`)."""
    return bool(option_lines(problem))


def _released_form(d: Mapping[str, Any], default_id: str | None = None) -> dict[str, Any]:
    """The released LongVideo-Reason and EasyR1-style field types mapped onto the schema
    (see the module doc)."""
    d = dict(d)
    if d.get("problem_id") is None and default_id is not None:
        d["problem_id"] = default_id
    if isinstance(d.get("problem_id"), int) and not isinstance(d["problem_id"], bool):
        d["problem_id"] = str(d["problem_id"])
    for name in ("videos", "images", "audios"):
        if isinstance(d.get(name), str):
            d[name] = [d[name]]
    if d.get("data_type") is None:
        d["data_type"] = ("video" if d.get("videos") else "image" if d.get("images")
                          else "audio" if d.get("audios") else "text")
    answer = d.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = d["answer"] = str(answer)
    if isinstance(answer, str) and answer.strip() and "<answer>" not in answer:
        d["answer"] = f"<answer>{answer.strip()}</answer>"  # EasyR1's bare keys
    problem = d.get("problem")
    if d.get("problem_type") is None and isinstance(problem, str) and isinstance(answer, str):
        letter = re.fullmatch(r"\s*(?:<answer>)?\s*([A-Z])\s*(?:</answer>)?\s*", answer)
        d["problem_type"] = "multiple choice" if letter and lists_options(problem) else "math"
    label = d.get("problem_type")
    if isinstance(label, str) and label.strip().lower() in RELEASED_CATEGORIES:
        category = RELEASED_CATEGORIES[label.strip().lower()]
        if category is not None and d.get("category") is None:
            d["category"] = category
        problem = d.get("problem")
        d["problem_type"] = "multiple choice" if isinstance(problem, str) and lists_options(problem) else "free-form"
    return d


def answer_key(record: Mapping[str, Any]) -> str:
    """The answer key of a raw record without its tags: "<answer>B</answer>" -> "B"."""
    m = ANSWER_RE.match(record["answer"].strip())
    if not m:
        raise ValueError(f"record {record.get('problem_id')!r}: answer {record['answer']!r} "
                         "is not <answer>...</answer>")
    return m.group(1).strip()


class RecordError(ValueError):
    """A record that breaks the schema; says which record and which field."""

    def __init__(self, problem_id: Any, field_name: str, message: str, *, where: str = "") -> None:
        self.problem_id, self.field, self.reason = problem_id, field_name, message
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}record {problem_id!r}: field {field_name!r}: {message}")


@dataclass
class Record:
    problem_id: str
    data_type: str
    videos: list[str]  # the data_type's media paths live in videos / images / audios
    problem: str
    problem_type: str
    answer: str  # "<answer>B</answer>"
    reasoning: str = ""
    category: str | None = None
    options: list[str] | None = None
    video_id: str | None = None
    duration: float | None = None
    images: list[str] | None = None
    audios: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def media_paths(self) -> list[str]:
        """The paths of the record's media (its data_type's field; [] for text)."""
        name = MEDIA_FIELDS[self.data_type]
        return list(getattr(self, name) or []) if name else []

    @property
    def answer_text(self) -> str:
        """The answer without its <answer> tags, e.g. "B"."""
        return ANSWER_RE.match(self.answer).group(1).strip()

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        return {**d, **self.extra}


_KNOWN = {f.name for f in fields(Record)} - {"extra"}


def validate_record(d: Mapping[str, Any], default_id: str | None = None) -> Record:
    """Check a raw record and return it as a `Record`; RecordError on the first problem.
    `default_id`: the problem_id of a record that has none (EasyR1's files name none)."""
    if not isinstance(d, Mapping):
        raise RecordError(None, "<record>", f"expected a JSON object, got {type(d).__name__}")
    d = _released_form(d, default_id)
    pid = d.get("problem_id")

    def need(name: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
        if name not in d or d[name] is None:
            if required:
                raise RecordError(pid, name, "missing")
            return None
        if not isinstance(d[name], kind) or isinstance(d[name], bool):
            raise RecordError(pid, name, f"expected {getattr(kind, '__name__', kind)}, got {type(d[name]).__name__}")
        return d[name]

    if not isinstance(pid, str) or not pid.strip():
        raise RecordError(pid, "problem_id", "must be a non-empty string")
    data_type = need("data_type", str)
    if data_type not in DATA_TYPES:
        raise RecordError(pid, "data_type", f"must be one of {DATA_TYPES}, got {data_type!r}")
    media = {}
    for name in ("videos", "images", "audios"):
        needed = MEDIA_FIELDS[data_type] == name
        media[name] = need(name, list, required=needed) or []
        if needed and not media[name]:
            raise RecordError(pid, name, f"a {data_type} record needs at least one path in {name}")
        if not all(isinstance(v, str) and v for v in media[name]):
            raise RecordError(pid, name, "every entry must be a non-empty path string")
    videos = media["videos"]
    problem = need("problem", str)
    if not problem.strip():
        raise RecordError(pid, "problem", "empty")
    problem_type = need("problem_type", str)
    if problem_type not in PROBLEM_TYPES:
        raise RecordError(pid, "problem_type", f"must be one of {PROBLEM_TYPES}, got {problem_type!r}")
    answer = need("answer", str)
    m = ANSWER_RE.match(answer.strip())
    if not m or not m.group(1).strip():
        raise RecordError(pid, "answer", f"must look like <answer>B</answer>, got {answer!r}")
    reasoning = need("reasoning", str, required=False) or ""
    category = need("category", str, required=False)
    if category is not None and category not in CATEGORIES:
        raise RecordError(pid, "category", f"must be one of {CATEGORIES}, got {category!r}")
    options = need("options", list, required=False)
    if options is not None and not (len(options) >= 2 and all(isinstance(o, str) and o for o in options)):
        raise RecordError(pid, "options", "must be a list of at least 2 non-empty strings")
    video_id = need("video_id", str, required=False)
    duration = need("duration", (int, float), required=False)
    if duration is not None and not duration >= 0:
        raise RecordError(pid, "duration", f"must be >= 0 seconds, got {duration!r}")

    if problem_type == "numerical":
        from harness.algos.rewards import extract_numbers  # the reward's own reading of a number

        if len(set(extract_numbers(m.group(1)))) != 1:
            raise RecordError(pid, "answer", f"a {problem_type} key must hold exactly one number, got {answer!r}")
    if problem_type == "multiple choice":
        letter = m.group(1).strip()
        if not re.fullmatch(r"[A-Z]", letter):
            raise RecordError(pid, "answer", f"multiple choice answer must be one letter, got {letter!r}")
        if options is not None:
            if ord(letter) - ord("A") >= len(options):
                raise RecordError(pid, "answer", f"letter {letter} but only {len(options)} options")
            lines = set(problem.splitlines())
            for i, opt in enumerate(options):
                if f"{chr(ord('A') + i)}. {opt}" not in lines:
                    raise RecordError(pid, "problem", f"option line '{chr(ord('A') + i)}. {opt}' not found")
        else:  # the options are the question's own lines: the key must name one of them
            listed = option_lines(problem)
            if listed and (ord(letter) - ord("A") >= len(listed) or not listed[ord(letter) - ord("A")]):
                raise RecordError(pid, "answer", f"letter {letter} is not among the question's options "
                                                 f"{option_letters_of(listed)}")

    return Record(
        problem_id=pid, data_type=data_type, videos=list(videos), problem=problem,
        images=media["images"] or None, audios=media["audios"] or None,
        problem_type=problem_type, answer=answer.strip(), reasoning=reasoning, category=category,
        options=list(options) if options is not None else None, video_id=video_id,
        duration=float(duration) if duration is not None else None,
        extra={k: v for k, v in d.items() if k not in _KNOWN},
    )


@dataclass
class SkippedLine:
    path: str
    line: int  # 1-based
    reason: str


# `usable(rec)`: None when the caller can use a valid record, else (field, why not)
Usable = Callable[[Record], tuple[str, str] | None]
# The opening lines that must all fail as JSON objects before a file is refused as not JSON Lines
NOT_JSONL_LINES = 3
LISTED_LINES = 50  # refused lines named one by one in the log, per file (all are counted and kept)
# RecordError fields of a line that is no JSON object at all (not UTF-8, not JSON, or another JSON value)
_NOT_AN_OBJECT = ("<bytes>", "<json>", "<record>")


# The media kinds a record of each type puts in its prompt (per path for images).
TYPE_MEDIA = {"text": (), "image": ("image",), "video": ("video",), "audio": ("audio",),
              "video+audio": ("video", "audio")}


def record_media_kinds(rec: Record) -> list[str]:
    """The media of a record's prompt, in order: one per image path, else its type's."""
    if rec.data_type == "image":
        return ["image"] * len(rec.images or [])
    return list(TYPE_MEDIA[rec.data_type])


def media_problem(media_kinds: tuple[str, ...]) -> Usable:
    """`usable` for the recipes of a model taking `media_kinds`: a record needing another
    medium is refused when read (counted with the malformed lines), as is one naming several
    videos or audio files (the recipes take one per question; only the first would be seen)."""

    def problem(rec: Record) -> tuple[str, str] | None:
        missing = sorted(set(record_media_kinds(rec)) - set(media_kinds))
        if missing:
            takes = ", ".join(media_kinds) or "text only"
            return "data_type", f"a {rec.data_type} record needs {'+'.join(missing)} input; this model takes {takes}"
        for name in ("videos", "audios"):
            paths = getattr(rec, name) or []
            if len(paths) > 1:
                return name, (f"{len(paths)} {name}: the recipes take one per question; "
                              f"give each its own record")
        return None

    return problem


def video_recipe_problem(rec: Record) -> tuple[str, str] | None:
    """`media_problem` of a video-only model."""
    if rec.data_type != "video":
        return "data_type", f"a {rec.data_type} record: the video recipes read video records only"
    return media_problem(("video",))(rec)


def read_jsonl(path: str | Path, *, strict: bool = False, skipped: list[SkippedLine] | None = None,
               usable: Usable | None = None) -> Iterator[Record]:
    """The valid records of a jsonl file (see `read_jsonl_lines`)."""
    return (rec for _, rec in read_jsonl_lines(path, strict=strict, skipped=skipped, usable=usable))


def read_jsonl_lines(path: str | Path, *, strict: bool = False, skipped: list[SkippedLine] | None = None,
                     usable: Usable | None = None) -> Iterator[tuple[str, Record]]:
    """Yield (the line as written, its record) for the valid records of a jsonl file, so a
    caller can copy lines unchanged; blank lines are ignored. `usable(rec)` says
    why a valid record cannot be used by the caller, as (field, reason) (None: it can); such
    a line is skipped and counted like a malformed one, so validation and use agree. A UTF-8
    byte-order mark at the start is ignored; an undecodable byte skips its line, named with
    its number.

    A line that is not JSON, breaks the schema, or repeats an earlier problem_id is skipped
    with one warning and appended to `skipped`; with strict=True it raises RecordError instead
    (the message has path:line). A file whose first NOT_JSONL_LINES non-blank lines (or all
    of them, when it has fewer) are no JSON objects raises ValueError saying it is not JSON
    Lines, with nothing listed line by line. A missing file raises FileNotFoundError.
    """
    path = Path(path)
    seen: dict[str, int] = {}
    opening: list[tuple[int, bytes, RecordError]] = []  # refused non-objects before the first JSON object
    in_opening = True
    n_bad = n_lines = 0

    def refuse(lineno: int, err: RecordError) -> None:
        nonlocal n_bad
        n_bad += 1
        # each refused line is listed up to a cap (all of them are in `skipped` and counted)
        if n_bad <= LISTED_LINES:
            log.warning("%s:%d: skipped: %s", path, lineno, err)
        elif n_bad == LISTED_LINES + 1:
            log.warning("%s: more lines skipped; the count follows at the end", path)
        if skipped is not None:
            skipped.append(SkippedLine(str(path), lineno, str(err)))

    def end_opening() -> None:  # the file is JSON Lines after all: the held-back lines are refused as usual
        nonlocal in_opening
        in_opening = False
        for held_line, _, held_err in opening:
            refuse(held_line, held_err)
        opening.clear()

    with path.open("rb") as f:
        for lineno, data in enumerate(f, start=1):
            if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]  # a UTF-8 byte-order mark, as some editors write
            if not data.strip():
                continue
            n_lines += 1
            try:
                line, rec = _line_record(data, seen, usable, default_id=f"{path.stem}-{lineno}")
            except RecordError as err:
                if strict:
                    raise RecordError(err.problem_id, err.field, err.reason, where=f"{path}:{lineno}") from None
                if in_opening and err.field in _NOT_AN_OBJECT:
                    # Held back: a file that never starts with an object is refused whole.
                    opening.append((lineno, data, err))
                    if len(opening) == NOT_JSONL_LINES:
                        raise _not_json_lines(path, opening) from None
                    continue
                end_opening()
                refuse(lineno, err)
                continue
            end_opening()
            seen[rec.problem_id] = lineno
            yield line.rstrip("\r\n"), rec
    if opening:  # the whole file (fewer lines than NOT_JSONL_LINES) held no JSON object
        raise _not_json_lines(path, opening)
    if n_bad:
        log.warning("%s: skipped %d of %d records", path, n_bad, n_lines)


def _line_record(data: bytes, seen: dict[str, int], usable: Usable | None,
                 default_id: str | None = None) -> tuple[str, Record]:
    """One line's text and record; RecordError (without the place) when it is refused."""
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(None, "<bytes>", f"not UTF-8 (byte {data[err.start]:#04x} at column "
                                           f"{err.start + 1})") from None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise RecordError(None, "<json>", f"not valid JSON ({err.msg} at column {err.colno})") from None
    rec = validate_record(raw, default_id)
    if rec.problem_id in seen:
        raise RecordError(rec.problem_id, "problem_id", f"duplicate of line {seen[rec.problem_id]}")
    problem = usable(rec) if usable is not None else None
    if problem is not None:
        raise RecordError(rec.problem_id, *problem)
    return line, rec


def _not_json_lines(path: Path, opening: list[tuple[int, bytes, RecordError]]) -> ValueError:
    lineno, data, err = opening[0]
    first = data.lstrip()[:1]
    if first == b"[":
        fix = f"a JSON array? write one record per line, e.g. jq -c '.[]' {path} > records.jsonl"
    elif first == b"{":
        fix = f"a pretty-printed file? write each record on one line, e.g. jq -c . {path} > records.jsonl"
    else:
        fix = "give the records file (.jsonl)"
    return ValueError(f"{path} is not JSON Lines (one JSON object per line): line {lineno}: {err.reason}; {fix}")


def write_jsonl(path: str | Path, records: Iterable[Record | Mapping[str, Any]]) -> int:
    """Validate and write records, one per line (written to a temporary file, then renamed,
    so readers never see half a file). Returns how many were written; raises RecordError on
    the first invalid record or repeated problem_id, leaving `path` untouched."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ids: set[str] = set()
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for r in records:
                rec = validate_record(r.to_dict() if isinstance(r, Record) else r)
                if rec.problem_id in ids:
                    raise RecordError(rec.problem_id, "problem_id", "duplicate")
                ids.add(rec.problem_id)
                f.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(ids)
