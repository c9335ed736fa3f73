"""`harness eval` end to end on a synthetic Video-MME layout with a tiny random model."""

import hashlib
import json
import shutil

import pytest

from evals.model import HarnessVLM, build_engine
from evals.runner import EvalSettings, predictions_path, run_eval
from evals.subtitles import NO_SUBTITLES, read_srt, subtitle_block
from evals.tasks import build_benchmark
from harness.cli import main
from harness.data.video import load_video


class CountingVLM(HarnessVLM):
    """The real model; counts the questions it is asked (to see what a resume recomputes)."""

    asked = 0

    def generate(self, queries):
        self.asked += len(queries)
        return super().generate(queries)


@pytest.fixture(scope="module")
def vlm(tiny_ckpt):
    return CountingVLM(tiny_ckpt, max_new_tokens=6, batch_size=4)


@pytest.fixture()
def mme_copy(mme_root, tmp_path):
    dst = tmp_path / "mme"
    shutil.copytree(mme_root, dst)
    return dst


def _rows(out):
    return [json.loads(line) for line in predictions_path(out).read_text().splitlines()]


def test_results_counts_protocol_and_resume(vlm, mme_copy, tmp_path):
    bench, out = build_benchmark("videomme"), tmp_path / "res" / "videomme.json"
    s = EvalSettings(frames=4, subtitles=True, progress=False)
    vlm.asked = 0
    res = run_eval(bench, vlm, mme_copy, out, s)
    assert json.loads(out.read_text()) == res
    c = res["counts"]
    assert (c["questions"], c["answered"], c["missing_video"], c["no_subtitles"]) == (12, 12, 0, 0)
    rows = _rows(out)
    assert len(rows) == 12 and vlm.asked == 12
    assert c["unparsed"] == sum(r["pred"] == "" for r in rows)
    assert res["scores"]["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 12)
    assert sum(g["n"] for g in res["scores"]["by_task_type"].values()) == 12
    assert set(res["scores"]) == {"accuracy", "by_duration", "by_domain", "by_task_type"}
    p = res["protocol"]
    assert (p["frames"], p["subtitles"], p["engine"], p["task_version"]) == (4, True, "hf", "videomme-v1")
    assert p["prompt_hash"] == bench.prompt_hash(True) and p["extraction_version"].startswith("mc-v1")
    assert p["model_path"].endswith("vila-tiny")

    # The prompt of each question holds exactly the cues covering its video's 4 frames.
    items = {i.qid: i for i in bench.load(mme_copy)}
    for row in rows[:4]:
        item = items[row["qid"]]
        clip = load_video(item.video, 4)
        block = subtitle_block(read_srt(item.subtitle), clip.indices, clip.video_fps)
        assert row["prompt_sha"] == hashlib.sha256(bench.prompt(item, block).encode()).hexdigest()[:16]

    # Resume: a half-written file is completed; nothing already written is recomputed.
    lines = predictions_path(out).read_text().splitlines(keepends=True)
    predictions_path(out).write_text("".join(lines[:5]) + lines[5][:20])  # killed mid-line
    vlm.asked = 0
    again = run_eval(bench, vlm, mme_copy, out, s)
    assert vlm.asked == 7 and again["scores"] == res["scores"]
    vlm.asked = 0
    run_eval(bench, vlm, mme_copy, out, s)
    assert vlm.asked == 0

    # Other protocol (no subtitles) into the same file: refused, not mixed.
    with pytest.raises(ValueError, match="another protocol"):
        run_eval(bench, vlm, mme_copy, out, EvalSettings(frames=4, progress=False))


def test_missing_and_corrupt_videos_are_skipped_and_listed(vlm, mme_copy, tmp_path):
    items = build_benchmark("videomme").load(mme_copy)
    videos = sorted({i.video for i in items})
    videos[0].unlink()
    videos[1].write_bytes(videos[1].read_bytes()[:300])  # truncated
    (mme_copy / "subtitle" / f"{videos[2].stem}.srt").unlink()
    out = tmp_path / "r.json"
    res = run_eval(build_benchmark("videomme"), vlm, mme_copy, out, EvalSettings(4, subtitles=True, progress=False))
    c = res["counts"]
    assert (c["questions"], c["answered"], c["missing_video"], c["no_subtitles"]) == (12, 4, 8, 4)
    assert sorted(m["video"] for m in res["missing_videos"]) == sorted(str(v) for v in videos[:2])
    assert all(len(m["questions"]) == 4 and m["reason"] for m in res["missing_videos"])
    items3 = [i for i in items if i.video == videos[2]]
    row = _rows(out)[0]
    assert row["prompt_sha"] == hashlib.sha256(
        build_benchmark("videomme").prompt(items3[0], NO_SUBTITLES).encode()).hexdigest()[:16]


def test_subtitles_refused_where_no_protocol(vlm, mme_root, tmp_path):
    with pytest.raises(ValueError, match="no subtitle protocol"):
        run_eval(build_benchmark("longvideo_reason"), vlm, mme_root.parent, tmp_path / "x.json",
                 EvalSettings(4, subtitles=True, progress=False))


def test_engine_choice(vlm):
    from harness.rollout.vllm_engine import vllm_unavailable_reason

    with pytest.raises(ValueError, match="engine must be one of"):
        build_engine(vlm.model, "tgi", 4)
    reason = vllm_unavailable_reason(vlm.model)  # tiny: head size 16, not run by vLLM on CPU
    if reason is None:
        pytest.skip("vLLM can run the tiny model here; the fallback path is not reachable")
    with pytest.raises(RuntimeError, match="engine 'vllm' is not available"):
        build_engine(vlm.model, "vllm", 4)
    engine, name = build_engine(vlm.model, "auto", 4)  # logged and recorded, never silent
    assert name == f"hf (fallback from vllm: {reason})" and type(engine).__name__ == "HFEngine"


def test_cli_single_task_and_all(tiny_ckpt, mme_root, tmp_path, capsys):
    out = tmp_path / "one.json"
    assert main(["eval", "--task", "videomme", "--data", str(mme_root), "--model", str(tiny_ckpt),
                 "--frames", "2", "--max-new-tokens", "4", "--out", str(out), "--no-progress"]) == 0
    assert "videomme: accuracy" in capsys.readouterr().out
    assert json.loads(out.read_text())["counts"]["answered"] == 12
    cfg = tmp_path / "all.yaml"
    cfg.write_text(
        f"frames: 2\nmax_new_tokens: 4\ntasks:\n"
        f"  - {{task: videomme, data: {mme_root}, subtitles: true}}\n"
        f"  - {{task: longvideo_reason, data: {mme_root.parent}}}\n")
    # --video-dir serves the task that takes it (longvideo_reason), not videomme
    assert main(["eval", "--task", "all", "--config", str(cfg), "--model", str(tiny_ckpt),
                 "--out", str(tmp_path / "all"), "--no-progress", "--video-dir", str(mme_root.parent)]) == 0
    sub = json.loads((tmp_path / "all" / "videomme_sub.json").read_text())
    lvr = json.loads((tmp_path / "all" / "longvideo_reason.json").read_text())
    assert sub["protocol"]["subtitles"] and sub["protocol"]["frames"] == 2
    assert set(lvr["scores"]["by_category"]) == {"temporal", "goal", "plot", "spatial"}
    assert main(["eval", "--task", "nope", "--data", str(mme_root), "--model", str(tiny_ckpt),
                 "--out", str(out)]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert main(["eval", "--task", "videomme", "--data", str(mme_root), "--model", str(tiny_ckpt),
                 "--out", str(out), "--video-dir", str(tmp_path)]) == 2
    assert "video_dir is for longvideo_reason" in capsys.readouterr().err


@pytest.mark.slow
def test_vllm_engine_gives_the_hf_answers(mme_root, tmp_path):
    """Greedy answers through vLLM (in-process, CPU here) equal the HF engine's (toy size:
    vLLM's CPU attention needs head size >= 32)."""
    from harness.model.build import init_model
    from harness.rollout.vllm_engine import vllm_unavailable_reason

    model = init_model("vila", "toy", seed=0)
    if (reason := vllm_unavailable_reason(model)) is not None:
        pytest.skip(reason)
    answers = {}
    for engine in ("hf", "vllm"):
        vlm = HarnessVLM(model, engine=engine, max_new_tokens=6, batch_size=4)
        out = tmp_path / f"{engine}.json"
        res = run_eval(build_benchmark("videomme"), vlm, mme_root, out, EvalSettings(2, progress=False))
        assert res["protocol"]["engine"] == engine
        answers[engine] = [r["response"] for r in _rows(out)]
    assert answers["vllm"] == answers["hf"]


def test_predictions_are_keyed_by_the_weights_not_the_path(tiny_ckpt, mme_copy, tmp_path, capsys):
    """`sft --resume` rewrites final/ in place: the same eval command must not report the old
    weights' predictions as the new model's. Same weights: every prediction reused, and said."""
    from harness.model.build import init_model

    ckpt = tmp_path / "final"
    shutil.copytree(tiny_ckpt, ckpt)
    out = tmp_path / "vm.json"
    argv = ["eval", "--task", "videomme", "--data", str(mme_copy), "--model", str(ckpt), "--frames", "2",
            "--max-new-tokens", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert main(argv) == 0 and json.loads(out.read_text())["counts"]["reused_predictions"] == 12
    shutil.rmtree(ckpt)
    init_model("vila", "tiny", seed=1).save_pretrained(ckpt)  # new weights at the same path
    capsys.readouterr()
    assert main(argv) == 2
    assert "other weights" in capsys.readouterr().err


def test_a_predictions_line_cut_inside_a_character_costs_that_line_only(tiny_ckpt, mme_copy, tmp_path, caplog):
    """A kill mid-write can cut a line inside a multi-byte character (predictions keep UTF-8
    as is): the rerun skips that line with file:line, counts it, and computes it again."""
    out = tmp_path / "vm.json"
    argv = ["eval", "--task", "videomme", "--data", str(mme_copy), "--model", str(tiny_ckpt), "--frames", "2",
            "--max-new-tokens", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    lines = predictions_path(out).read_bytes().splitlines(keepends=True)

    def cut(line: bytes) -> bytes:  # the line with a non-ASCII response, cut inside its "é"
        data = json.dumps({**json.loads(line), "response": "café"}, ensure_ascii=False).encode()
        return data[: data.index("é".encode()) + 1]

    # line 3: cut by an earlier kill (a rerun then starts a new line); the last line: cut now
    predictions_path(out).write_bytes(b"".join(lines[:2]) + cut(lines[2]) + b"\n" + b"".join(lines[3:-1])
                                      + cut(lines[-1]))
    caplog.set_level("WARNING", logger="evals.runner")
    assert main(argv) == 0
    c = json.loads(out.read_text())["counts"]
    assert (c["answered"], c["reused_predictions"], c["unreadable_lines"]) == (12, 10, 2)
    warned = [r.getMessage() for r in caplog.records if "unreadable line" in r.getMessage()]
    assert [w.split(": unreadable")[0] for w in warned] == [f"{predictions_path(out)}:3",
                                                           f"{predictions_path(out)}:12"]
    assert main(argv) == 0 and json.loads(out.read_text())["counts"]["reused_predictions"] == 12


@pytest.mark.parametrize("text,says", [
    ("- {task: videomme, data: DATA}\n", "the top level must be a mapping"),
    ("videomme\n", "the top level must be a mapping"),
    ("tasks:\n\t- {task: videomme, data: DATA}\n", "not valid YAML"),
    ("tasks: [{task: videomme, data: DATA}\n", "not valid YAML"),
    ("tasks: videomme\n", "tasks must be a list"),
    ("frames: 0\ntasks: [{task: videomme, data: DATA}]\n", "frames must be >= 1, got 0"),
    ("frames: many\ntasks: [{task: videomme, data: DATA}]\n", "frames must be a whole number, got 'many'"),
    ("tasks: [{task: videomme, data: DATA}, {task: videomme, data: DATA, frames: -2, out: o.json}]\n",
     "tasks[1].frames must be >= 1, got -2"),
    ("tasks: [{task: videomme, data: DATA}, {task: videomme, data: DATA}]\n", "as tasks[0] does"),
])
def test_an_eval_config_that_cannot_be_used_is_one_line(text, says, mme_root, tmp_path, capsys, no_model):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(text.replace("DATA", str(mme_root)))
    assert main(["eval", "--task", "all", "--config", str(cfg), "--model", str(tmp_path),
                 "--out", str(tmp_path / "all")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(cfg) in err and says in err, err


def test_every_task_name_is_checked_before_any_benchmark_runs(tiny_ckpt, mme_root, tmp_path, capsys, no_model):
    cfg = tmp_path / "all.yaml"
    cfg.write_text(f"frames: 2\nmax_new_tokens: 4\ntasks:\n  - {{task: videomme, data: {mme_root}}}\n"
                   f"  - {{task: longvideo_reason, data: {mme_root.parent}}}\n"
                   f"  - {{task: videome, data: {mme_root}}}\n")
    argv = ["eval", "--task", "all", "--config", str(cfg), "--model", str(tiny_ckpt), "--out", str(tmp_path / "all")]
    assert main(argv) == 2
    assert f"{cfg}: tasks[2]: unknown task 'videome' (did you mean 'videomme'?)" in capsys.readouterr().err
    # so is every task's data, before the model loads
    cfg.write_text(f"tasks:\n  - {{task: videomme, data: {mme_root}}}\n  - {{task: videomme, data: {tmp_path / 'no'}, "
                   f"out: {tmp_path / 'two.json'}}}\n")
    assert main(argv) == 2
    assert f"Video-MME folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "all").exists()


@pytest.mark.parametrize("flags,says", [
    (["--frames", "0"], "--frames must be >= 1, got 0"),
    (["--frames", "9000"], "--frames must be <= 8192, got 9000"),
    (["--fps", "0"], "--fps must be a number > 0 (frames per second), got 0.0"),
    (["--fps", "nan"], "--fps must be a number > 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--max-new-tokens", "-3"], "--max-new-tokens must be >= 1, got -3"),
    (["--max-dropped-share", "-1"], "--max-dropped-share must be in [0, 1], got -1.0"),
    (["--judge-url", "http://localhost:8000/v1"], "--judge-url needs --judge-model too"),
    (["--judge-model", "qwen"], "--judge-model needs --judge-url too"),
    (["--judge-url", "localhost:8000/v1", "--judge-model", "qwen"], "--judge-url must be an http:// or https://"),
    (["--frame-sampling", "qwen", "--frames", "1"], "--frame-sampling qwen takes at least 2 frames"),
    (["--subtitles", "--task", "longvideo_reason"], "longvideo_reason has no subtitle protocol; drop --subtitles"),
])
def test_bad_flags_are_named_before_the_model_loads(flags, says, tiny_ckpt, mme_root, tmp_path, capsys, no_model):
    out = tmp_path / "res" / "vm.json"
    assert main(["eval", "--task", "videomme", "--data", str(mme_root), "--model", str(tiny_ckpt),
                 "--out", str(out), *flags]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "res").exists()  # no empty predictions file left behind


def test_an_out_that_cannot_take_the_results_is_refused_first(tiny_ckpt, mme_root, tmp_path, capsys, no_model):
    folder = tmp_path / "outdir"
    folder.mkdir()
    argv = ["eval", "--task", "videomme", "--data", str(mme_root), "--model", str(tiny_ckpt), "--frames", "2"]
    assert main([*argv, "--out", str(folder)]) == 2
    assert f"--out {folder} is a folder; give the path of the results JSON file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir"]  # no outdir.tmp, no predictions
    (tmp_path / "afile").write_text("x")
    assert main([*argv, "--out", str(tmp_path / "afile" / "vm.json")]) == 2
    assert f"{tmp_path / 'afile'} is a file, not a folder" in capsys.readouterr().err
    cfg = tmp_path / "all.yaml"
    cfg.write_text(f"tasks: [{{task: videomme, data: {mme_root}}}]\n")
    assert main(["eval", "--task", "all", "--config", str(cfg), "--model", str(tiny_ckpt),
                 "--out", str(tmp_path / "afile")]) == 2
    assert f"--out {tmp_path / 'afile'} is a file; with --task all it is the folder" in capsys.readouterr().err
    cfg.write_text(f"tasks: [{{task: videomme, data: {mme_root}, out: {folder}}}]\n")
    assert main(["eval", "--task", "all", "--config", str(cfg), "--model", str(tiny_ckpt),
                 "--out", str(tmp_path / "all")]) == 2
    assert f"{cfg}: tasks[0] writes to {folder} is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["empty folder", "file"])
def test_a_model_that_is_not_a_checkpoint_folder_is_named(kind, mme_root, tmp_path, capsys):
    model = tmp_path / "m"
    model.mkdir() if kind == "empty folder" else model.write_text("weights?")
    assert main(["eval", "--task", "videomme", "--data", str(mme_root), "--model", str(model),
                 "--out", str(tmp_path / "vm.json")]) == 2
    err = capsys.readouterr().err
    assert f"--model {model} is {'an' if kind == 'empty folder' else 'a'} {kind}, not a model checkpoint folder" in err
    assert "llm/ + vision_tower/ + mm_projector/ for vila" in err
    assert not list(tmp_path.glob("vm*"))


def test_flags_that_the_chosen_mode_would_ignore_are_refused(mme_root, tmp_path, capsys, no_model):
    """--config with one task, or --subtitles with --task all, would be silently ignored."""
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"tasks:\n  - {{task: videomme, data: {mme_root}}}\n")
    assert main(["eval", "--task", "videomme", "--data", str(mme_root), "--config", str(cfg),
                 "--model", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    assert "lists tasks for --task all" in capsys.readouterr().err
    assert main(["eval", "--task", "all", "--config", str(cfg), "--subtitles", "--model", str(tmp_path),
                 "--out", str(tmp_path / "all")]) == 2
    assert "set `subtitles: true` on the config's entries" in capsys.readouterr().err
