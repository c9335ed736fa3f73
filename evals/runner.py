"""`harness eval`: run one benchmark adapter with a model, resumably, and write the results.

For each video (in the order its questions appear; a text benchmark's questions have none):
decode N frames (uniform, as lmms-eval
samples them; or at --fps with N as a cap), encode them once, render every question's
prompt (with subtitles: the cues covering those frames), and generate in batches. Each
batch's predictions are appended to `<out stem>.predictions.jsonl` at once, so a killed run
loses at most one batch; a rerun reads the file and only computes what is missing. Lines
written under another protocol (frames, subtitles, prompt, model, ...) stop the run rather
than being mixed in.

A missing or undecodable video skips its questions: counted (`missing_video`) and listed
with the reason in the results; such questions are not written, so a rerun retries them.
Accuracy is over the answered questions; unparsed answers count as wrong and are counted.
Open-answer tasks: every row records the judge that gave its verdict (`judged_by`: endpoint,
model, prompt, settings). A stored row whose judge failed, or whose verdict came from another
judge than this run's, is judged again from the stored response, without generating again
(counted: `rejudged`); the judge is therefore not part of the protocol key.

A line that cannot be read (a run killed mid-write can cut it anywhere, even inside a
multi-byte character) is skipped with its file:line, counted (`unreadable_lines`), and its
question computed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from evals.base import Benchmark, Item
from evals.extract import EXTRACTION_VERSION
from evals.model import HarnessVLM, VideoQuery
from evals.subtitles import read_srt, subtitle_block
from harness.data.video import VideoDecodeError, load_video
from harness.errors import HarnessError
from harness.model.interface import MediaEmbeds
from harness.trainer.videos import DiskEmbeds

log = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    frames: int
    subtitles: bool = False
    sample_fps: float | None = None
    progress: bool = True
    # Share of the benchmark's records an adapter may drop as unusable before the run
    # counts as failed (0: any dropped record fails it; the results are written either way).
    max_dropped_share: float = 0.0
    frame_sampler: str = "uniform"  # or "qwen" (harness.data.video.load_video)
    # a folder of the on-disk embedding cache (harness/trainer/videos.py): each video decoded
    # and encoded once across runs; RL runs with the same sampler share its entries
    embed_cache: str | None = None


class EvalIncomplete(HarnessError, RuntimeError):
    """The run scored nothing, or dropped more records than allowed; results were written."""


def _sampling_name(s: EvalSettings) -> str:
    if s.frame_sampler == "qwen":
        return "qwen-vl-utils (frames rounded to even)" if s.sample_fps is None else "qwen-vl-utils fps, frames as cap"
    return "uniform linspace (lmms-eval)" if s.sample_fps is None else "fps, frames as cap"


def predictions_path(out: Path) -> Path:
    return out.with_name(out.stem + ".predictions.jsonl")


def protocol_of(bench: Benchmark, model: HarnessVLM, s: EvalSettings) -> dict:
    p = {
        "task": bench.name, "task_version": bench.version,
        "prompt_hash": bench.prompt_hash(s.subtitles), "frames": s.frames,
        "frame_sampling": _sampling_name(s),
        "sample_fps": s.sample_fps, "subtitles": s.subtitles,
        "extraction_version": EXTRACTION_VERSION, **model.describe(),
    }
    judge = getattr(bench, "judge", None)
    if judge is not None:
        p["judge"] = judge.describe()
    return p


def protocol_key(protocol: dict) -> str:
    """What must match for earlier responses to be reused (not the engine or batch size; not
    the judge either: its verdicts are checked row by row, see `_rejudge`)."""
    keep = {k: v for k, v in protocol.items() if k not in ("engine", "batch_size", "judge")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def check_results_path(out: Path, where: str = "results file") -> None:
    """Refuse a results path the final write could not replace, before any work (else a whole
    evaluation would be computed and then fail at the rename)."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"{where} {out} is a folder; give the path of the results JSON file to write "
                         f"(e.g. {out / 'results.json'})")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(f"{where} {out}: {above} is a file, not a folder; give a path under a folder")


def load_items(bench: Benchmark, data: Path, s: EvalSettings) -> list[Item]:
    """The benchmark's questions, with the checks that need no model (run before it loads)."""
    if s.subtitles and not bench.supports_subtitles:
        raise ValueError(f"{bench.name} has no subtitle protocol; drop --subtitles")
    if bench.needs_judge and getattr(bench, "judge", None) is None:
        raise ValueError(f"{bench.name} is scored by an LLM judge: give --judge-url and --judge-model")
    items = bench.load(Path(data))
    if len({it.qid for it in items}) != len(items):
        raise ValueError(f"{bench.name}: question ids in {data} are not unique")
    return items


def run_eval(bench: Benchmark, model: HarnessVLM, data: Path, out: Path, s: EvalSettings,
             items: list[Item] | None = None) -> dict:
    """Evaluate `model` on `bench` (`items`: the questions `load_items` already read)."""
    out = Path(out)
    check_results_path(out)
    if items is None:
        items = load_items(bench, data, s)
    t = model.frames_per_unit
    if t > 1 and (s.sample_fps is not None or s.frames % t):
        raise ValueError(f"the model's video encoder pools {t} frames per unit: give --frames as a multiple "
                         f"of {t} and no --fps (fps sampling gives each video its own count)")
    protocol = protocol_of(bench, model, s)
    key = protocol_key(protocol)
    judge = protocol.get("judge")
    out.parent.mkdir(parents=True, exist_ok=True)
    pred_file = predictions_path(out)
    by_qid = {it.qid: it for it in items}
    done, unreadable = _read_done(pred_file, key, by_qid)
    reused = len(done)  # answered by an earlier run of this protocol (same weights, same settings)

    missing: list[dict] = []
    todo: dict[Path, list[Item]] = {}
    for it in items:
        if it.qid not in done:
            todo.setdefault(it.video, []).append(it)
    # Under torchrun (an SP group) every rank runs this loop in step, since encoding and
    # decoding are collective; rank 0 alone scores, writes and judges.
    main = model.sp_group is None or torch.distributed.get_rank(model.sp_group) == 0
    bar = tqdm(total=len(items), initial=len(done), desc=f"eval {bench.name}", unit="q",
               disable=not s.progress or not main)
    pending: list[tuple[Item, str, VideoQuery]] = []
    disk = (DiskEmbeds(s.embed_cache, model.model, {"num_frames": s.frames, "fps": s.sample_fps,
                                                    "frame_sampling": s.frame_sampler})
            if s.embed_cache and todo else None)
    with pred_file.open("a", encoding="utf-8") if main else contextlib.nullcontext() as f:
        if main and f.tell() and not _ends_with_newline(pred_file):
            f.write("\n")  # a run killed mid-line: its fragment stays alone on its line
        rejudged = _rejudge(done, bench, by_qid, judge, f) if main else 0
        for video, its in todo.items():
            try:
                # a text benchmark's items name no video (one group): text-only prompts
                embeds, indices, video_fps = (None, None, None) if bench.modality == "text" else _encoded(
                    video, s, model, disk)
            except VideoDecodeError as err:
                log.warning("skipping %d questions: %s", len(its), err)
                missing.append({"video": str(video), "reason": err.reason, "questions": [i.qid for i in its]})
                bar.update(len(its))
                continue
            for it in its:
                block = None
                if s.subtitles:
                    cues = read_srt(it.subtitle) if it.subtitle else None
                    block = subtitle_block(cues, indices, video_fps)
                text = bench.prompt(it, block)
                pending.append((it, text, VideoQuery(text, embeds)))
            while len(pending) >= model.batch_size:
                _flush(pending[: model.batch_size], bench, model, key, judge, f, done, bar)
                pending = pending[model.batch_size :]
        if pending:
            _flush(pending, bench, model, key, judge, f, done, bar)
    bar.close()
    if not main:
        return {}

    rows = [done[it.qid] for it in items if it.qid in done]
    results = {
        "task": bench.name,
        "scores": bench.aggregate(rows),
        "counts": {
            "questions": len(items), "answered": len(rows),
            "unparsed": sum(bool(r["unparsed"]) for r in rows),
            "missing_video": sum(len(m["questions"]) for m in missing),
            "no_subtitles": sum(not (it.subtitle and it.subtitle.is_file()) for it in items)
            if s.subtitles else None,
            "judge_errors": sum("judge_error" in r for r in rows),
            "bad_records": len(bench.dropped),
            "reused_predictions": reused,
            "rejudged": rejudged,
            "unreadable_lines": unreadable,
            "embed_cache_hits": None if disk is None else disk.cache.hits,
        },
        "dropped_records": bench.dropped[:200],
        "missing_videos": missing,
        "protocol": protocol,
        "protocol_key": key,
        "predictions": str(pred_file),
    }
    _write_results(out, results)
    _check_complete(bench, results, s.max_dropped_share, out)
    return results


def _encoded(video: Path, s: EvalSettings, model: HarnessVLM, disk: DiskEmbeds | None
             ) -> tuple[MediaEmbeds, np.ndarray, float]:
    """The video's embeddings, its sampled frames' indices and its fps (for subtitles): from
    the on-disk cache, or decoded, encoded (and stored)."""
    key = None if disk is None else disk.key(video)
    group = model.sp_group
    found = None if disk is None else disk.read(key, group)  # with a group, all ranks agree
    if found is not None:
        embeds, meta = found
        return embeds, np.asarray(meta["indices"], dtype=np.int64), float(meta["video_fps"])
    clip = load_video(video, s.frames, sample_fps=s.sample_fps, sampler=s.frame_sampler)
    embeds = model.encode(clip)
    if key is not None and (group is None or torch.distributed.get_rank(group) == 0):
        disk.write(key, embeds, clip)
    return embeds, clip.indices, clip.video_fps


def _check_complete(bench: Benchmark, results: dict, max_share: float, out: Path) -> None:
    c = results["counts"]
    read = c["questions"] + c["bad_records"]
    reasons = [f"  {d['where']}: {d['reason']}" for d in bench.dropped[:10]]
    reasons += [f"  {m['video']}: {m['reason']}" for m in results["missing_videos"][:10]]
    if c["answered"] == 0:
        raise EvalIncomplete(f"{bench.name}: scored no question of {read} records (results in {out}):\n"
                             + "\n".join(reasons or ["  the benchmark holds no questions"]))
    if read and c["bad_records"] / read > max_share:
        raise EvalIncomplete(
            f"{bench.name}: dropped {c['bad_records']} of {read} records (> {max_share:.0%} allowed, "
            f"--max-dropped-share; results in {out}):\n" + "\n".join(reasons))


def _write_results(out: Path, results: dict) -> None:
    """Write through a temporary file so a reader never sees half a results file; a failed
    write leaves no stray temporary behind."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
        os.replace(tmp, out)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _scored(bench: Benchmark, item: Item, response: str, judge: dict | None) -> dict:
    """The benchmark's verdict on a response, stamped with the judge that gave it (if any)."""
    verdict = bench.score(item, response)
    return verdict if judge is None else {**verdict, "judged_by": judge}


def _flush(batch, bench, model, key, judge, f, done, bar) -> None:
    """Answer `batch`; with a file (rank 0) score, write and keep each row."""
    responses = model.generate([q for _, _, q in batch])
    if f is None:
        return
    for (it, text, _), response in zip(batch, responses, strict=True):
        row = {
            "qid": it.qid, "protocol_key": key, "video": str(it.video), "answer": it.answer,
            "fields": it.fields, "prompt_sha": hashlib.sha256(text.encode()).hexdigest()[:16],
            "response": response, **_scored(bench, it, response, judge),
        }
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        done[it.qid] = row
    f.flush()
    bar.update(len(batch))


def _read_done(path: Path, key: str, by_qid: dict[str, Item]) -> tuple[dict[str, dict], int]:
    """Predictions already written for this protocol (the newest line of a question wins),
    and how many lines could not be read (skipped and logged: their questions are redone)."""
    done: dict[str, dict] = {}
    unreadable = 0
    if not path.exists():
        return done, unreadable
    # Bytes, not text: a kill mid-write can cut a line inside a multi-byte character, which
    # must cost that line only, not every later run.
    with path.open("rb") as f:
        for n, data in enumerate(f, start=1):
            if not data.strip():
                continue
            try:
                row = json.loads(data.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError(f"a JSON {type(row).__name__}, not an object")
            except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                unreadable += 1
                log.warning("%s:%d: unreadable line (%s; a run killed mid-write?); its question is "
                            "computed again", path, n, err)
                continue
            if row.get("protocol_key") != key:
                raise ValueError(
                    f"{path} holds predictions of another protocol or other weights (line {n}: "
                    f"{row.get('protocol_key')} != {key}); use another --out or delete it"
                )
            if row.get("qid") in by_qid:
                done[row["qid"]] = row
    return done, unreadable


# What a verdict adds to a row (Benchmark.score and _scored): replaced when judged again.
VERDICT_KEYS = ("pred", "correct", "unparsed", "judge_error", "judge_score", "judged_by")


def _rejudge(done: dict[str, dict], bench: Benchmark, by_qid: dict[str, Item], judge: dict | None, f) -> int:
    """Judge stored responses again: those whose judge failed, and those another judge (model,
    endpoint or its settings) gave a verdict, so no verdict is reported under a judge that did
    not give it. Each new row is appended at once (the newest line of a question wins when the
    file is read) and replaces the old one in `done`; returns how many were judged again."""
    if judge is None:
        return 0
    stale = [qid for qid, row in done.items() if "judge_error" in row or row.get("judged_by") != judge]
    if stale:
        log.info("%s: judging %d stored responses again (the judge failed on them or another judge "
                 "gave their verdicts)", bench.name, len(stale))
    for qid in stale:
        kept = {k: v for k, v in done[qid].items() if k not in VERDICT_KEYS}
        row = {**kept, **_scored(bench, by_qid[qid], kept["response"], judge)}
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        done[qid] = row
    return len(stale)
