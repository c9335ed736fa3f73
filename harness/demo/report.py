"""The demo's report: `report.md` with the accuracy table (untrained / SFT / RL), the RL
reward curve (`reward_curve.png`) and the per-step time breakdown (`step_times.png`, MR-SP
beside the re-encoding baseline), from the runs' metrics.jsonl and the evaluation JSONs.
"""

from __future__ import annotations

from pathlib import Path

from harness.trainer.metrics import read_metrics

BLOCKS = ("data", "encode", "rollout", "reward", "advantage", "logprob", "update", "sync")
LABELS = {"untrained": "untrained (random init)", "sft": "CoT-SFT", "rl": "CoT-SFT + RL (MR-SP)"}


def write_report(out: Path, summary: dict) -> None:
    rl_rows = _step_rows(out / "rl")
    base_rows = _step_rows(out / "rl-baseline")
    _plot_rewards(rl_rows, out / "reward_curve.png")
    _plot_step_times(rl_rows, base_rows, out / "step_times.png")
    (out / "report.md").write_text(_markdown(summary, rl_rows, base_rows), encoding="utf-8")


def _step_rows(run: Path) -> list[dict]:
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "reward/mean" in r]
    return list({r["step"]: r for r in rows}.values())  # a rerun's rows replace older ones


def _mean_times(rows: list[dict]) -> dict[str, float]:
    """Mean seconds per block, without the first step (engine warm-up, first decodes)."""
    rows = rows[1:] or rows
    return {b: sum(r.get(f"time/{b}", 0.0) or 0.0 for r in rows) / len(rows) for b in BLOCKS}


def plot_reward_curve(rows: list[dict], path: Path, xlabel: str, ylabel: str) -> None:
    """A run's reward/mean per step, as the media and generation demos' reports show it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([r["step"] for r in rows], [r["reward/mean"] for r in rows])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_rewards(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r["reward/mean"] for r in rows], marker="o", label="reward/mean (0.9 acc + 0.1 format)")
    ax.plot(steps, [r["reward/accuracy"] for r in rows], marker="s", label="reward/accuracy")
    ax.set_xlabel("RL step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylim(0, 1.05)
    ax.set_title("GRPO on the basic level (rollouts of the training prompts)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_step_times(rl: list[dict], base: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    steps = [r["step"] for r in rl]
    means = {"MR-SP\n(cached)": _mean_times(rl), "baseline\n(re-encode)": _mean_times(base) if base else None}
    bottom = [0.0] * len(rl)
    bottom2 = [0.0] * len(means)
    for b in BLOCKS:
        vals = [r.get(f"time/{b}", 0.0) or 0.0 for r in rl]
        ax1.bar(steps, vals, bottom=bottom, label=b)
        bottom = [x + v for x, v in zip(bottom, vals, strict=True)]
        vals2 = [m[b] if m else 0.0 for m in means.values()]
        ax2.bar(list(means), vals2, bottom=bottom2)
        bottom2 = [x + v for x, v in zip(bottom2, vals2, strict=True)]
    ax1.set_xlabel("RL step")
    ax1.xaxis.get_major_locator().set_params(integer=True)
    ax1.set_ylabel("seconds")
    ax1.set_title("MR-SP step time by block")
    ax1.legend(fontsize=7, ncol=4)
    ax2.set_title("mean per step (from step 2)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rl_verdict(res: dict) -> str:
    sft, rl = res["sft"]["heldout"], res["rl"]["heldout"]
    delta = 100 * (rl["accuracy"] - sft["accuracy"])
    se = 100 * (max(sft["accuracy"] * (1 - sft["accuracy"]), 0.01) / sft["questions"]) ** 0.5
    if abs(delta) <= 2 * se:
        what = "within the noise of the held-out set"
    elif delta > 0:
        what = "an RL gain beyond the held-out set's noise"
    else:
        what = ("an RL loss beyond the held-out set's noise: this short toy RL run does not reproduce "
                "the paper's RL-over-SFT gain")
    return (f"On the held-out questions RL moved accuracy from {100 * sft['accuracy']:.1f}% (SFT) to "
            f"{100 * rl['accuracy']:.1f}% ({delta:+.1f} points; one standard error is about {se:.1f}): {what}.")


def _teacher(s: dict) -> str:
    confusions = s.get("teacher_confusion") or []
    if not confusions:
        return "a perfect teacher"
    return ("an imperfect teacher that misnames colours (" + ", ".join(confusions) + ": TRUE=SAID:RATE per "
            "video, as model-written CoT data carry perception mistakes); RL's reward and the held-out "
            "questions use the truth, so RL has those mistakes to correct")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _markdown(summary: dict, rl: list[dict], base: list[dict]) -> str:
    s, res = summary["settings"], summary["results"]
    layout = (f"{s['procs']} processes (gloo), dp_size=1 x sp_size={s['procs']}" if s["procs"] > 1
              else "1 process")
    lines = [
        "# Demo report: CoT-SFT then RL with MR-SP, toy vila model on CPU",
        "",
        f"Time to build everything: **{sum(summary['built_seconds'].values()) / 60:.1f} min** (seconds per "
        f"stage: " + ", ".join(f"{k} {v}" for k, v in summary["built_seconds"].items()) + "); the run that "
        f"wrote this report took {summary['wall_seconds']:.0f} s"
        + (f", reusing {', '.join(k for k, v in summary['stages'].items() if v == 'reused')}."
           if "reused" in summary["stages"].values() else "."),
        "",
        f"Data: {s['basic_videos']} synthetic videos of the *basic* level (one object on screen for a "
        f"quarter of the video; what colour / shape / where, answered with the word), split sft / rl / "
        f"test by video; {s['frames']} frames per video. Model: toy vila (SigLIP-style tower + projector + "
        f"4-layer Qwen2 LLM), random init. SFT: {s['sft_steps']} steps x batch {s['sft_batch']}, cosine lr "
        f"(configs/sft/toy-basic.yaml), on reasoning from {_teacher(s)}. RL: GRPO, {s['rl_steps']} steps x {s['rl_prompts']} prompts x "
        f"n={s['rl_n']} (configs/rl/toy-basic.yaml) on {layout}, rollouts on {s['engine']}; each prompt's "
        f"video encoded once per step, split over the SP ranks, and reused by every rollout and "
        f"log-prob pass.",
        "",
        "## Accuracy",
        "",
        f"| model | held-out, basic level ({res['rl']['heldout']['questions']} q, free-form) | format rate "
        f"| Video-MME layout, no subtitles ({res['rl']['videomme']['questions']} q) | with subtitles |",
        "|---|---|---|---|---|",
    ]
    for name in ("untrained", "sft", "rl"):
        r = res[name]
        lines.append(
            f"| {LABELS[name]} | {_pct(r['heldout']['accuracy'])} | {_pct(r['heldout']['format_rate'])} "
            f"| {_pct(r['videomme']['accuracy'])} (unparsed {r['videomme']['unparsed']}) "
            f"| {_pct(r['videomme_sub']['accuracy'])} (unparsed {r['videomme_sub']['unparsed']}) |")
    lines += [
        "",
        "Held-out: greedy answers to the test split's first questions (colour / shape / where of the one "
        "object), scored by the accuracy reward (harness.trainer.evaluate). A model that guesses a valid "
        "word without looking gets about 1/4 per question kind; the format rate is the share of answers "
        "in the `<think>...</think><answer>...</answer>` form.",
        "",
        "**The Video-MME columns are at or below chance, by design of the demo, and say nothing about "
        "learning.** "
        "They are multiple-choice questions (4 options: chance 25%) on the harder *default* synthetic "
        "level, written in the official Video-MME layout (parquet, videos, subtitle .srt), and scored "
        "with the community's protocol (evals/videomme.py: prompt, uniform frames, only the subtitle cues "
        "covering the sampled frames, the official answer extraction, unparsed answers count as wrong). "
        "A toy model trained from scratch on the basic level has never seen a multiple-choice question, "
        "answers with a word instead of a letter (hence the unparsed counts), and the harder levels stay "
        "at chance for toy models anyway (reproduce/LOG.md). The columns are here to run that protocol "
        "end to end, with and without subtitles; their breakdowns (duration, domain, task type) are in "
        "`eval/*-videomme*.json`.",
        "",
        "## RL reward",
        "",
        "![reward curve](reward_curve.png)",
        "",
        "Mean reward and accuracy of the rollouts at each step (temperature 1.0, the training prompts; "
        f"{s['rl_prompts']} prompts a step, so the curve is noisy). " + _rl_verdict(res),
        "",
        "## Step time",
        "",
        "![step times](step_times.png)",
        "",
    ]
    if rl:
        m = _mean_times(rl)
        lines += ["| seconds per step (mean from step 2) | " + " | ".join(BLOCKS) + " | total |",
                  "|---|" + "---|" * (len(BLOCKS) + 1)]
        for label, rows in (("MR-SP (cached video embeddings)", rl), ("baseline (re-encode every pass)", base)):
            if rows:
                m = _mean_times(rows)
                lines.append(f"| {label}, {len(rows)} steps | " + " | ".join(f"{m[b]:.2f}" for b in BLOCKS)
                             + f" | {sum(m.values()):.2f} |")
        diffs = [r["rollout/logp_diff_max"] for r in rl if r.get("rollout/logp_diff_max") is not None]
        lines += [
            "",
            "The baseline has no `encode` block: it encodes the video inside every rollout, log-prob and "
            "update pass instead (its other blocks grow by that). The toy video is 16 frames of 64x64, so "
            "encoding is a small share of a step here; with thousands of frames it dominates, which is "
            "what MR-SP's cache removes (perf/README.md). The machine's 2 cores were shared with other "
            "work while this ran: timings are indicative.",
            "",
            f"Rollout vs trainer log-probs of the sampled tokens (`rollout/logp_diff_max`): largest "
            f"{max(diffs):.1e} over the run." if diffs else "",
        ]
    lines += [
        "",
        "Files: `sft/`, `rl/`, `rl-baseline/` (config.yaml, metrics.jsonl, checkpoints, final/), "
        "`eval/` (per model: held-out and Video-MME results and predictions), `demo.json` (this summary).",
        "",
    ]
    return "\n".join(lines)
