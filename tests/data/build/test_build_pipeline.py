"""The whole build against the scripted OpenAI-compatible server (a protocol fixture with
well-formed canned replies, conftest.py): kept questions, records, summary, resume,
interruption and the command line."""

from __future__ import annotations

import _thread
import json
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.build.backends import OpenAIBackend
from harness.data.build.pipeline import build_dataset
from harness.data.records import read_jsonl

SPLITS = ("sft", "rl", "eval")


def _build(videos, out, server, reasoner=None, **kw):
    b = OpenAIBackend(server.url, retries=2, backoff=0.01)
    r = OpenAIBackend(reasoner.url, retries=2, backoff=0.01) if reasoner else b
    kw.setdefault("concurrency", 2)
    return build_dataset(videos, out, b, r, blind=b, progress=False, **kw)


def _records(out: Path) -> dict[str, list[dict]]:
    """Each split's records without the build metadata (names carry the server's port)."""
    return {s: [{k: v for k, v in r.to_dict().items() if k != "build"}
                for r in read_jsonl(out / f"{s}.jsonl", strict=True)] for s in SPLITS}


def test_build_keeps_well_formed_questions(build_videos, tmp_path, scripted):
    out = tmp_path / "out"
    s = _build(build_videos, out, scripted)
    # 6 videos x 3 clips; 6 replies of 6 questions; every kept question checked blind.
    assert dict(scripted.counts) == {"caption": 18, "reason": 6, "blind": 24}
    q = s["questions"]
    assert (q["generated"], q["parsed"], q["kept"]) == (36, 30, 18)
    assert q["dropped"] == {"answer_not_in_options": 6, "duplicate_question": 6,
                           "answerable_without_video": 6}
    assert q["repaired"] == {"category_spelling": 6}
    assert q["by_category"]["deduplicated"] == {"temporal": 6, "goal": 6, "plot": 6, "spatial": 6}
    # The canned answers are all A; the rebalance spreads them, the blind model (always
    # "A") then removes the ones that landed on A.
    assert s["answer_letters"] == {"before_rebalance": {"A": 24},
                                   "after_rebalance": {"A": 6, "B": 6, "C": 6, "D": 6},
                                   "kept": {"B": 6, "C": 6, "D": 6}}
    assert set(s["videos"]["skipped"]) == {"broken.mp4", "old.avi"}
    assert s["stages"]["caption"]["processed"] == 18 and s["stages"]["caption"]["failed"] == 0

    recs = _records(out)
    by_split = {sp: {r["video_id"] for r in rs} for sp, rs in recs.items()}
    assert sum(len(rs) for rs in recs.values()) == 18
    assert all(by_split.values())
    assert not (by_split["sft"] & by_split["rl"] or by_split["sft"] & by_split["eval"]
                or by_split["rl"] & by_split["eval"])
    assert {sp: s["splits"][sp]["questions"] for sp in SPLITS} == {sp: len(recs[sp]) for sp in SPLITS}
    for r in read_jsonl(out / "sft.jsonl", strict=True):
        assert (out / r.videos[0]).resolve().is_file()
        assert r.extra["build"]["prompts"] == {"caption": "caption_v1", "reason": "reason_v1",
                                              "blind": "blind_v1"}
        assert r.extra["build"]["reasoner"] == f"{scripted.url}#scripted"
        assert "[00:00-00:10]" in r.reasoning and r.answer_text != "A"

    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert Counter(d["reason"] for d in dropped) == Counter(q["dropped"])
    assert json.loads((out / "summary.json").read_text())["questions"] == q
    text = (out / "summary.txt").read_text()
    assert "skipped old.avi: AVI" in text and "30 parsed, 18 kept" in text
    examples = (out / "examples.md").read_text()
    assert examples.count("\n## ") == 3 and "**duplicate_question**" in examples


def test_rerun_repeats_nothing_and_gives_the_same_files(build_videos, tmp_path, scripted):
    out = tmp_path / "out"
    _build(build_videos, out, scripted)
    first = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    counts = dict(scripted.counts)
    s = _build(build_videos, out, scripted)
    assert dict(scripted.counts) == counts
    assert {n: st["cached"] for n, st in s["stages"].items()} == {"caption": 18, "reason": 6, "blind": 24}
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == first


def test_new_reasoner_redoes_only_the_reasoning(build_videos, tmp_path, scripted, make_scripted):
    out = tmp_path / "out"
    _build(build_videos, out, scripted)
    other = make_scripted()
    s = _build(build_videos, out, scripted, reasoner=other)
    assert dict(other.counts) == {"reason": 6}
    assert s["stages"]["caption"]["cached"] == 18 and s["stages"]["reason"]["processed"] == 6


def test_interrupt_and_rerun_loses_and_repeats_nothing(build_videos, tmp_path, scripted):
    out = tmp_path / "out"
    interrupt_at = {"caption": 7, "reason": 3}

    def ctrl_c(kind, n):
        if interrupt_at.get(kind) == n:
            _thread.interrupt_main()  # Ctrl-C, while this request is still being answered

    scripted.on_request = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        _build(build_videos, out, scripted)
    rows = (out / "work" / "captions.jsonl").read_text().splitlines()
    # Every caption the server answered is on disk, the interrupted request included.
    assert len(rows) == scripted.counts["caption"] >= 7
    assert scripted.counts["reason"] == 0

    with pytest.raises(KeyboardInterrupt):
        _build(build_videos, out, scripted)
    assert scripted.counts["caption"] == 18
    assert len((out / "work" / "questions.jsonl").read_text().splitlines()) == scripted.counts["reason"] >= 3

    s = _build(build_videos, out, scripted)
    # Over the three runs together, exactly one request per item: none repeated, none lost.
    assert dict(scripted.counts) == {"caption": 18, "reason": 6, "blind": 24}
    assert s["questions"]["kept"] == 18

    fresh = tmp_path / "fresh"
    scripted.on_request = None
    _build(build_videos, fresh, scripted)
    assert _records(fresh) == _records(out)


def test_cli_build_and_failure_exit_codes(build_videos, tmp_path, scripted, capsys):
    out = tmp_path / "out"
    args = ["data", "build", "--videos", str(build_videos), "--out", str(out),
            "--captioner", scripted.url, "--reasoner", f"{scripted.url}#scripted",
            "--clip-seconds", "15", "--frames-per-clip", "2", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "videos: 6 usable of 8 found, 2 skipped; 12 clips" in printed
    assert "splits: sft" in printed
    assert main(args) == 0
    assert "stage caption: 12 items, 12 done before, 0 now" in capsys.readouterr().out

    scripted.fail_first = 10_000  # the server only answers 503 from now on
    down = ["data", "build", "--videos", str(build_videos), "--out", str(tmp_path / "out2"),
            "--captioner", scripted.url, "--reasoner", scripted.url, "--retries", "0",
            "--no-progress", "--concurrency", "1"]
    assert main(down) == 1
    err = capsys.readouterr().err
    assert "items in a row failed" in err and "rerun the same command" in err

    assert main(args + ["--split", "0.5,0.6,0.1"]) == 2
    assert "--split must be three fractions" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--videos", "NOVIDS", "does not exist; give the folder that holds the videos"),
    ("--clip-seconds", "-1", "--clip-seconds must be > 0"),
    ("--clip-seconds", "inf", "--clip-seconds must be a finite number"),
    ("--options", "1", "--options must be an integer in [2, 10]"),
    ("--concurrency", "0", "--concurrency must be an integer in [1, 1024]"),
    ("--frames-per-clip", "0", "--frames-per-clip must be an integer"),
    ("--reason-max-tokens", "0", "--reason-max-tokens must be an integer"),
    ("--reason-temperature", "nan", "--reason-temperature must be a finite number"),
    ("--timeout", "0", "--timeout must be a finite number of seconds > 0"),
    ("--retries", "-1", "--retries must be >= 0"),
])
def test_cli_checks_every_argument_before_opening_a_backend(build_videos, tmp_path, capsys, monkeypatch,
                                                            flag, value, message):
    """Was: the servers were contacted first (about 15 s of retries when down), and the bad
    values and the missing folder were never reported."""
    import harness.data.build.backends as backends

    def opened(spec, **kw):
        raise AssertionError(f"backend {spec} opened before the arguments were checked")

    monkeypatch.setattr(backends, "open_backend", opened)
    args = {"--videos": str(build_videos), "--out": str(tmp_path / "out"), "--captioner": "http://127.0.0.1:9/v1",
            "--reasoner": "http://127.0.0.1:9/v1", "--no-progress": None}
    args[flag] = str(tmp_path / "novids") if value == "NOVIDS" else value
    argv = ["data", "build", *[x for k, v in args.items() for x in (k, v) if x is not None]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_names_kept_work_only_where_there_is_some(build_videos, tmp_path, capsys):
    """Was: "finished items are kept in OUT/work" when the first server could not be reached
    and no such folder had been made."""
    out = tmp_path / "out"
    argv = ["data", "build", "--videos", str(build_videos), "--out", str(out), "--captioner", "http://127.0.0.1:9/v1",
            "--reasoner", "http://127.0.0.1:9/v1", "--retries", "0", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:9" in err and "no item was finished yet" in err and "kept in" not in err
    assert not (out / "work").exists()


def test_cli_build_that_keeps_no_question_fails(build_videos, tmp_path, scripted, capsys):
    """Was: exit 0 with three empty splits. Now what was built is written and the exit is 1."""
    scripted.reason_reply = lambda text: "I cannot write questions about these captions."
    out = tmp_path / "out"
    argv = ["data", "build", "--videos", str(build_videos), "--out", str(out), "--captioner", scripted.url,
            "--reasoner", scripted.url, "--clip-seconds", "15", "--frames-per-clip", "2", "--no-progress"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "0 kept" in captured.out
    assert "no question was kept" in captured.err and "dropped.jsonl" in captured.err
    assert json.loads((out / "summary.json").read_text())["questions"]["kept"] == 0
    assert (out / "dropped.jsonl").read_text()  # each video's reply, dropped with its reason


def test_cli_build_names_links_that_lead_nowhere(build_videos, tmp_path, scripted, capsys):
    """Was: a symlink loop or a broken link among the videos was passed over without a word."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v.mp4").write_bytes(next(build_videos.glob("day1/*.mp4")).read_bytes())
    (videos / "loop.mp4").symlink_to(videos / "loop.mp4")
    (videos / "gone.mp4").symlink_to(tmp_path / "moved_away.mp4")
    argv = ["data", "build", "--videos", str(videos), "--out", str(tmp_path / "out"), "--captioner", scripted.url,
            "--reasoner", scripted.url, "--clip-seconds", "15", "--frames-per-clip", "2", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "videos: 1 usable of 3 found, 2 skipped" in printed
    assert "skipped loop.mp4: a symlink loop" in printed
    assert "skipped gone.mp4: a broken symlink" in printed and "moved_away.mp4" in printed
