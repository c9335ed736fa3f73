"""`build_dataset`: videos -> clips -> captions -> reasoning questions -> filters -> splits.

The LongVideo-Reason construction (docs/reference.md "Dataset"; paper section 3): long videos
are cut into short clips, a video VLM captions every clip, a strong reasoning LLM reads the
time-stamped captions of the whole video and writes questions in four reasoning categories
(temporal, goal and purpose, plot and narrative, spatial) with options, a chain of thought
that cites clip times, and the answer; the questions are filtered and split into CoT-SFT
and RL data. Deviations: the paper's filtering is described only in outline, so ours is
explicit and counted (parse.py, filters.py); we also hold out an eval split; the text-only
check is optional (`blind`).

Stages that call models (caption, reason, blind) record each item as it finishes under
`OUT/work/` and skip finished items on a rerun (state.py); parsing, filtering and writing
run again from those records every time (they are cheap and deterministic). Outputs in OUT:
  sft.jsonl rl.jsonl eval.jsonl   training records (harness.data.records), split by video
  dropped.jsonl                   every dropped video / reply / question with its reason
  summary.json, summary.txt       counts per stage and category, drop reasons, timings
  examples.md                     a few kept questions and one example per drop reason
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.build import prompts
from harness.data.build.backends import Backend, ChatRequest, clock
from harness.data.build.clips import ClipDecoder, plan_clips
from harness.data.build.filters import Candidate, blind_letter, dedupe, letter_counts, rebalance
from harness.data.build.parse import LETTERS, MAX_OPTIONS, MIN_OPTIONS, parse_reply
from harness.data.build.scan import VideoEntry, scan_videos
from harness.data.build.split import SPLITS, write_splits
from harness.data.build.state import Item, StageState, StageStats, input_sha, run_stage
from harness.data.records import CATEGORIES

log = logging.getLogger(__name__)
CATEGORY_NAMES = {"temporal": "temporal", "goal": "goal and purpose", "plot": "plot and narrative",
                  "spatial": "spatial"}


@dataclass
class Dropped:
    stage: str  # caption | reason | parse | dedupe | blind
    reason: str
    video_id: str
    problem_id: str | None = None
    detail: str = ""
    excerpt: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


def _workers(concurrency: int, backend: Backend) -> int:
    return min(concurrency, backend.max_concurrency or concurrency)


# Integer settings of `build_dataset` and their allowed ranges
INT_SETTINGS = {"frames_per_clip": (1, 256), "questions_per_video": (1, 64), "n_options": (MIN_OPTIONS, MAX_OPTIONS),
                "concurrency": (1, 1024), "caption_max_tokens": (1, 1_000_000), "reason_max_tokens": (1, 1_000_000)}


def check_settings(settings: dict[str, Any], names: dict[str, str] | None = None) -> None:
    """ValueError naming the first of `build_dataset`'s settings out of range; `names` maps a
    setting to what the caller calls it (the command line's flags)."""
    def name(key: str) -> str:
        return (names or {}).get(key, key)

    def finite(key: str) -> float:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{name(key)} must be a finite number, got {value!r}")
        return value

    if not finite("clip_seconds") > 0:
        raise ValueError(f"{name('clip_seconds')} must be > 0 seconds, got {settings['clip_seconds']!r}")
    if finite("reason_temperature") < 0:
        raise ValueError(f"{name('reason_temperature')} must be >= 0, got {settings['reason_temperature']!r}")
    for key, (lo, hi) in INT_SETTINGS.items():
        value = settings[key]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ValueError(f"{name(key)} must be an integer in [{lo}, {hi}], got {value!r}")


def caption_stage(videos: list[VideoEntry], captioner: Backend, state: StageState, *,
                  clip_seconds: float, frames_per_clip: int, max_tokens: int,
                  concurrency: int, progress: bool) -> tuple[StageStats, dict[str, list[dict]]]:
    """Caption every clip; returns the stats and, per video whose clips all have a caption,
    its clips in order as {"start", "end", "text", "finish_reason"}."""
    prompt = prompts.current("caption")
    decoder = ClipDecoder()
    items, plans = [], {}
    for v in videos:
        plans[v.video_id] = plan_clips(v.duration, clip_seconds)
        for clip in plans[v.video_id]:
            sha = input_sha(captioner.name, prompt.version, prompt.sha, v.fingerprint, clip.key,
                            frames_per_clip, max_tokens)
            system, user = prompt.render(n_frames=frames_per_clip, start=clock(clip.start), end=clock(clip.end))

            def prepare(v=v, clip=clip, system=system, user=user) -> ChatRequest:
                frames, times = decoder.frames(str(v.path), clip, frames_per_clip)
                return ChatRequest(system, user, max_tokens, 0.0, frames, times)

            items.append(Item(f"{v.video_id}@{clip.key}", sha, prepare))
    stats = run_stage("caption", items, lambda req: _reply(captioner, req), state,
                      concurrency=_workers(concurrency, captioner), progress=progress)
    done: dict[str, list[dict]] = {}
    by_key = {it.key: it.sha for it in items}
    for v in videos:
        rows = [state.get(f"{v.video_id}@{c.key}", by_key[f"{v.video_id}@{c.key}"]) for c in plans[v.video_id]]
        if all(r is not None for r in rows):
            done[v.video_id] = [{"start": c.start, "end": c.end, **r}
                                for c, r in zip(plans[v.video_id], rows, strict=True)]
    return stats, done


def _reply(backend: Backend, req: ChatRequest) -> dict[str, str]:
    reply = backend.chat(req)
    return {"text": reply.text, "finish_reason": reply.finish_reason}


def caption_lines(clips: list[dict]) -> tuple[str, int]:
    """The reasoner's view of a video: "[MM:SS-MM:SS] caption" per clip with a non-empty
    caption; returns (text, number of empty captions left out)."""
    lines = [f"[{clock(c['start'])}-{clock(c['end'])}] {' '.join(c['text'].split())}"
             for c in clips if c["text"].strip()]
    return "\n".join(lines), len(clips) - len(lines)


def category_plan(n: int) -> list[str]:
    """n categories cycling temporal, goal, plot, spatial: balanced within every 4."""
    return [CATEGORIES[i % len(CATEGORIES)] for i in range(n)]


def reason_stage(videos: list[VideoEntry], captions: dict[str, list[dict]], reasoner: Backend,
                 state: StageState, drops: list[Dropped], *, questions_per_video: int,
                 n_options: int, max_tokens: int, temperature: float, concurrency: int,
                 progress: bool) -> tuple[StageStats, dict[str, dict], dict[str, int]]:
    """Ask the reasoner for each video's questions; returns stats, {video_id: reply} for
    the videos answered (now or before), and counts of videos not asked and why."""
    prompt = prompts.current("reason")
    plan = category_plan(questions_per_video)
    plan_text = ", ".join(f"{i + 1}. {CATEGORY_NAMES[c]} ({c})" for i, c in enumerate(plan))
    slots = ", ".join('"..."' for _ in range(n_options))
    items, not_asked = [], Counter()
    for v in videos:
        if v.video_id not in captions:
            not_asked["captions_incomplete"] += 1  # some clip failed; a rerun retries it
            continue
        text, n_empty = caption_lines(captions[v.video_id])
        if not text:
            not_asked["no_captions"] += 1
            drops.append(Dropped("caption", "no_captions", v.video_id,
                                 detail=f"all {n_empty} clip captions are empty"))
            continue
        system, user = prompt.render(duration=clock(v.duration), captions=text,
                                     n_questions=questions_per_video, plan=plan_text,
                                     n_options=n_options, option_slots=slots)
        sha = input_sha(reasoner.name, prompt.version, prompt.sha, user, max_tokens, temperature)
        req = ChatRequest(system, user, max_tokens, temperature)
        items.append(Item(v.video_id, sha, lambda req=req: req))
    stats = run_stage("reason", items, lambda req: _reply(reasoner, req), state,
                      concurrency=_workers(concurrency, reasoner), progress=progress)
    replies = {it.key: state.get(it.key, it.sha) for it in items if state.is_done(it.key, it.sha)}
    return stats, replies, dict(not_asked)


def parse_stage(replies: dict[str, dict], drops: list[Dropped]) -> tuple[list[Candidate], Counter]:
    cands, repairs = [], Counter()
    for vid in sorted(replies):
        reply = replies[vid]
        res = parse_reply(reply["text"], reply["finish_reason"])
        repairs.update(res.reply_repairs)
        for d in res.drops:
            pid = None if d.index is None else f"{vid}-q{d.index + 1:02d}"
            drops.append(Dropped("parse", d.reason, vid, pid, d.detail,
                                 reply["text"][:300] if d.index is None else ""))
        for i, q in res.questions:
            repairs.update(q.repairs)
            cands.append(Candidate(f"{vid}-q{i + 1:02d}", vid, q))
    return cands, repairs


def blind_stage(cands: list[Candidate], blind: Backend, state: StageState, drops: list[Dropped],
                *, concurrency: int, progress: bool) -> tuple[StageStats, list[Candidate], int]:
    """Ask a text-only model each question without the video; drop those it gets right.
    Returns stats, the kept candidates and how many replies named no letter (kept)."""
    prompt = prompts.current("blind")
    items = []
    for c in cands:
        q = c.question
        problem = "\n".join([q.question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options)])
        system, user = prompt.render(problem=problem)
        sha = input_sha(blind.name, prompt.version, prompt.sha, user)
        req = ChatRequest(system, user, 16, 0.0)
        items.append(Item(c.problem_id, sha, lambda req=req: req))
    stats = run_stage("blind", items, lambda req: _reply(blind, req), state,
                      concurrency=_workers(concurrency, blind), progress=progress)
    kept, unparsed = [], 0
    for c, it in zip(cands, items, strict=True):
        reply = state.get(it.key, it.sha)
        if reply is None:
            # Unchecked questions stay out rather than slip in: the check is what was asked for.
            drops.append(Dropped("blind", "blind_check_failed", c.video_id, c.problem_id,
                                 stats.failed.get(it.key, "no reply")))
            continue
        letter = blind_letter(reply["text"], len(c.question.options))
        if letter is None:
            unparsed += 1
        if letter == c.question.letter:
            drops.append(Dropped("blind", "answerable_without_video", c.video_id, c.problem_id,
                                 f"a text-only model picked {letter} correctly"))
            continue
        kept.append(c)
    return stats, kept, unparsed


def build_dataset(
    videos_dir: str | Path,
    out_dir: str | Path,
    captioner: Backend,
    reasoner: Backend,
    *,
    blind: Backend | None = None,
    clip_seconds: float = 10.0,
    frames_per_clip: int = 8,
    questions_per_video: int = 4,
    n_options: int = 4,
    fractions: tuple[float, float, float] = (0.3, 0.6, 0.1),
    seed: int = 0,
    concurrency: int = 4,
    caption_max_tokens: int = 256,
    reason_max_tokens: int = 4096,
    reason_temperature: float = 0.6,
    n_examples: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or continue) the whole build; returns the summary that summary.json holds."""
    check_settings({"clip_seconds": clip_seconds, "frames_per_clip": frames_per_clip,
                    "questions_per_video": questions_per_video, "n_options": n_options,
                    "concurrency": concurrency, "caption_max_tokens": caption_max_tokens,
                    "reason_max_tokens": reason_max_tokens, "reason_temperature": reason_temperature})
    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    drops: list[Dropped] = []
    stages: dict[str, StageStats] = {}

    scan = scan_videos(videos_dir, StageState(work / "scan.jsonl"), progress=progress)
    for rel, why in scan.skipped.items():
        log.warning("skipping video %s: %s", rel, why)
    stages["caption"], captions = caption_stage(
        scan.videos, captioner, StageState(work / "captions.jsonl"), clip_seconds=clip_seconds,
        frames_per_clip=frames_per_clip, max_tokens=caption_max_tokens,
        concurrency=concurrency, progress=progress)
    stages["reason"], replies, not_asked = reason_stage(
        scan.videos, captions, reasoner, StageState(work / "questions.jsonl"), drops,
        questions_per_video=questions_per_video, n_options=n_options, max_tokens=reason_max_tokens,
        temperature=reason_temperature, concurrency=concurrency, progress=progress)

    cands, repairs = parse_stage(replies, drops)
    n_generated = len(cands) + sum(1 for d in drops if d.stage == "parse" and d.problem_id)
    by_category = {"parsed": _categories(cands)}
    cands, dup = dedupe(cands)
    drops += [Dropped("dedupe", "duplicate_question", c.video_id, c.problem_id, why) for c, why in dup]
    letters_before = letter_counts(cands)
    rebalance(cands, seed)
    letters_rebalanced = letter_counts(cands)
    by_category["deduplicated"] = _categories(cands)
    blind_unparsed = None
    if blind is not None:
        stages["blind"], cands, blind_unparsed = blind_stage(
            cands, blind, StageState(work / "blind.jsonl"), drops, concurrency=concurrency,
            progress=progress)
    by_category["kept"] = _categories(cands)

    meta = {"captioner": captioner.name, "reasoner": reasoner.name,
            "blind_check": blind.name if blind else None, "clip_seconds": clip_seconds,
            "frames_per_clip": frames_per_clip,
            "prompts": _prompt_versions(blind)}
    splits = write_splits(cands, {v.video_id: v for v in scan.videos}, out_dir, fractions, seed, meta)

    summary = {
        "out_dir": str(out_dir),
        "videos": {"found": len(scan.videos) + len(scan.skipped), "usable": len(scan.videos),
                   "skipped": scan.skipped, "other_files_ignored": scan.ignored,
                   "clips": stages["caption"].total, "not_sent_to_reasoner": not_asked},
        "stages": {name: s.as_dict() for name, s in stages.items()},
        "questions": {
            "generated": n_generated, "parsed": sum(by_category["parsed"].values()),
            "kept": len(cands),
            "by_category": by_category,
            "dropped": dict(Counter(d.reason for d in drops)),  # no_captions: whole videos
            "repaired": dict(repairs),
            "blind_unparsed": blind_unparsed,
        },
        "answer_letters": {"before_rebalance": letters_before, "after_rebalance": letters_rebalanced,
                           "kept": letter_counts(cands)},
        "splits": splits,
        "build": meta,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_outputs(out_dir, summary, drops, n_examples)
    return summary


def _prompt_versions(blind: Backend | None) -> dict[str, str]:
    stages = ("caption", "reason", "blind") if blind is not None else ("caption", "reason")
    return {s: prompts.CURRENT[s] for s in stages}


def _categories(cands: list[Candidate]) -> dict[str, int]:
    counts = Counter(c.question.category for c in cands)
    return {c: counts[c] for c in CATEGORIES}


def _write_outputs(out_dir: Path, summary: dict, drops: list[Dropped], n_examples: int) -> None:
    with (out_dir / "dropped.jsonl").open("w", encoding="utf-8") as f:
        for d in drops:
            f.write(json.dumps(d.as_dict(), ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    (out_dir / "summary.txt").write_text(summary_text(summary) + "\n", encoding="utf-8")
    (out_dir / "examples.md").write_text(examples_markdown(out_dir, drops, n_examples), encoding="utf-8")


def summary_text(s: dict) -> str:
    v, q = s["videos"], s["questions"]
    lines = [f"dataset build in {s['out_dir']} ({s['seconds']:.1f} s)",
             f"videos: {v['usable']} usable of {v['found']} found, {len(v['skipped'])} skipped; "
             f"{v['clips']} clips"]
    lines += [f"  skipped {rel}: {why}" for rel, why in v["skipped"].items()]
    if v["not_sent_to_reasoner"]:
        lines.append(f"  videos not sent to the reasoner: {v['not_sent_to_reasoner']}")
    for name, st in s["stages"].items():
        lines.append(f"stage {name}: {st['total']} items, {st['cached']} done before, "
                     f"{st['processed']} now, {st['failed']} failed (rerun to retry), {st['seconds']} s")
    lines.append(f"questions: {q['generated']} generated, {q['parsed']} parsed, {q['kept']} kept")
    for step, counts in q["by_category"].items():
        lines.append(f"  {step}: " + ", ".join(f"{c} {n}" for c, n in counts.items()))
    if q["dropped"]:
        lines.append("  dropped: " + ", ".join(f"{r} {n}" for r, n in sorted(q["dropped"].items())))
    if q["repaired"]:
        lines.append("  repaired: " + ", ".join(f"{r} {n}" for r, n in sorted(q["repaired"].items())))
    a = s["answer_letters"]
    lines.append(f"answer letters: generated {a['before_rebalance']}, rebalanced "
                 f"{a['after_rebalance']}, kept {a['kept']}")
    lines.append("splits: " + ", ".join(f"{n} {s['splits'][n]['videos']} videos / "
                                        f"{s['splits'][n]['questions']} questions" for n in SPLITS))
    return "\n".join(lines)


def examples_markdown(out_dir: Path, drops: list[Dropped], n: int) -> str:
    parts = ["# Examples\n"]
    shown = 0
    for name in SPLITS:
        path = out_dir / f"{name}.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            if shown >= n:
                break
            r = json.loads(line)
            parts.append(f"## {r['problem_id']} ({name}, {r['category']})\n\n```\n{r['problem']}\n```\n\n"
                         f"Reasoning: {r['reasoning']}\n\nAnswer: {r['answer']}\n")
            shown += 1
    if not shown:
        parts.append("No question was kept.\n")
    parts.append("# One dropped item per reason\n")
    seen = set()
    for d in drops:
        if d.reason in seen:
            continue
        seen.add(d.reason)
        what = d.problem_id or d.video_id
        parts.append(f"- **{d.reason}** ({d.stage}, {what}): {d.detail}"
                     + (f"\n\n  ```\n  {d.excerpt[:300]!r}\n  ```" if d.excerpt else "") + "\n")
    return "\n".join(parts)

