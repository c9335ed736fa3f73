"""YAML -> typed dataclasses, with `key.sub=value` overrides and validation before any heavy
work. The recipes take these objects; components below them take flat arguments.

`load_config(path, overrides, SFTConfig)` reads the YAML, applies overrides (values parsed as
YAML: `optim.lr=3e-4`, `data.num_frames=32`, `model.path=null`), checks every key exists and
every value has the declared type, then runs each section's `check()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from harness.algos.losses import AGG_MODES

MAX_FRAMES = 8192  # = harness.data.video.MAX_FRAMES (config stays free of the video stack's imports)

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config: names the file, the key and what is wrong."""


# --- sections ------------------------------------------------------------------------------

# The model families (harness/model/build.py): video LMs, text-only LMs
MODEL_FAMILIES = ("vila", "qwen2_5_vl", "qwen2", "qwen3", "qwen2_5_omni")


@dataclass
class ModelConfig:
    family: str = "vila"
    size: str = "tiny"  # named size for a fresh random model, when `path` is not given
    path: str | None = None  # a checkpoint folder (a real one, or an earlier stage's output)
    seed: int = 0
    dtype: str = "float32"  # the weights' storage dtype (for training: the master weights)
    # Mixed precision: with dtype float32, compute_dtype bfloat16 runs the model's math under
    # torch.autocast in bf16 while AdamW updates fp32 master weights. Needed for the authors'
    # lr 1e-6: an update that small is below half a bf16 ulp of most weights, so bf16-stored
    # weights would not move at all (tests/trainer/test_precision.py shows both).
    compute_dtype: str | None = None
    device: str = "auto"  # auto: cuda when available, else cpu
    # Recompute decoder (and vision) layer activations in backward instead of storing them:
    # training passes hold about one layer's activations instead of all (docs/parallel.md)
    activation_checkpointing: bool = False
    # qwen2_5_vl: video frame area bounds [min, max, total] in pixels (qwen-vl-utils'
    # VIDEO_MIN/MAX/TOTAL_PIXELS); null: the checkpoint's, else Qwen's defaults
    # [100352, 602112, 90316800]. Long-RL's setting is [100352, 100352, 90316800] (60 tokens
    # per 720p frame).
    video_pixels: tuple[int, int, int] | None = None

    def check(self) -> None:
        _one_of("model.family", self.family, MODEL_FAMILIES)
        if self.video_pixels is not None:
            if self.family != "qwen2_5_vl":
                raise ConfigError("model.video_pixels is for qwen2_5_vl (vila frames are the tower's fixed size)")
            lo, hi, total = self.video_pixels
            if not 0 < lo <= hi <= total:
                raise ConfigError(f"model.video_pixels must be [min, max, total] with 0 < min <= max <= total, "
                                  f"got {self.video_pixels}")
        _one_of("model.size", self.size, ("tiny", "toy", "small"))
        _one_of("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        if self.compute_dtype is not None:
            _one_of("model.compute_dtype", self.compute_dtype, ("bfloat16",))
            if self.dtype != "float32":
                raise ConfigError(f"model.compute_dtype={self.compute_dtype} needs model.dtype=float32 "
                                  f"(the fp32 master weights), got model.dtype={self.dtype}")
        _one_of("model.device", self.device, ("auto", "cpu", "cuda"))


@dataclass
class DataConfig:
    dir: str = "runs/toy/data"  # holds the jsonl splits; video paths are relative to it
    # ... unless the videos live elsewhere (the released LongVideo-Reason: `videos` paths
    # such as "longvila_videos/ID.mp4" relative to the folder the videos were unpacked in)
    video_dir: str | None = None
    # ... and the held-out split's, when they are apart (LongVideo-Reason ships its eval
    # videos separately); default: video_dir
    eval_video_dir: str | None = None
    # uniform: lmms-eval's linspace (truncated) over the video; qwen: Qwen's video pipeline
    # (qwen-vl-utils: num_frames rounded to even, linspace rounded), for Qwen2.5-VL parity
    frame_sampling: str = "uniform"
    train: str = "sft.jsonl"
    eval: str | None = "test.jsonl"
    num_frames: int = 16  # uniform sampling; the paper's default scales this to 512+
    # > 0: frames at this rate over the whole video (the paper's "configurable FPS"), with
    # num_frames as the cap (a longer video is sampled uniformly at num_frames): the sampler
    # `harness eval --fps` uses. null: always num_frames, spread uniformly.
    fps: float | None = None
    # SFT only: >0 draws each example's frame count uniformly from [min_frames, num_frames]
    # (seeded by run.seed, step and position, so a resumed run draws the same), so the model
    # learns to answer from however many frames it is given; 0: always num_frames.
    min_frames: int = 0
    # A split with more than this share of its lines malformed is refused; a run stops once
    # more than this share of the media decodes attempted (summed over data-parallel ranks) fail.
    max_skip_fraction: float = 0.1
    # When `dir` has no data yet, synthesise this many items there first (0: never): videos
    # (several questions each) or, for the other media, questions.
    synth_items: int = 0
    synth_seed: int = 0
    # What to synthesise: video | text | image | audio | video+audio (harness/data/synthetic/modalities.py)
    synth_modality: str = "video"
    # Every video record also brings its own audio track (read as data_type video+audio), as
    # Long-RL's `data.is_omni=true` does for Qwen2.5-Omni; needs a family that takes audio.
    audio_in_video: bool = False

    def check(self) -> None:
        _positive("data.num_frames", self.num_frames)
        if self.num_frames > MAX_FRAMES:
            raise ConfigError(f"data.num_frames must be <= {MAX_FRAMES} (the paper's longest input and the frame "
                              f"sampler's limit), got {self.num_frames}")
        if self.fps is not None:
            _positive("data.fps", self.fps)
        _non_negative("data.synth_items", self.synth_items)
        _one_of("data.synth_modality", self.synth_modality, ("video", "text", "image", "audio", "video+audio"))
        if not 0 <= self.min_frames <= self.num_frames:
            raise ConfigError(f"data.min_frames must be in [0, data.num_frames={self.num_frames}], got {self.min_frames}")
        if not 0.0 <= self.max_skip_fraction <= 1.0:
            raise ConfigError(f"data.max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        _one_of("data.frame_sampling", self.frame_sampling, ("uniform", "qwen"))


@dataclass
class OptimConfig:
    lr: float = 1e-6  # the authors' RL default; SFT configs set their own
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    # After warmup: constant (the authors' RL), or cosine decay to min_lr_ratio x lr at run.steps.
    schedule: str = "constant"
    min_lr_ratio: float = 0.1

    def check(self) -> None:
        _positive("optim.lr", self.lr)
        _non_negative("optim.weight_decay", self.weight_decay)
        # a clip <= 0 would turn the update into ascent (negative) or freeze it (zero)
        _positive("optim.grad_clip", self.grad_clip)
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"optim.betas[{i}] must be in [0, 1), got {beta}")
        _non_negative("optim.warmup_steps", self.warmup_steps)
        _one_of("optim.schedule", self.schedule, ("constant", "cosine"))
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class RunConfig:
    out_dir: str = "runs/toy/run"
    seed: int = 0
    steps: int = 100
    log_every: int = 1
    save_every: int = 50
    keep_last: int = 2
    eval_every: int = 0  # 0: only at the end
    eval_max_new_tokens: int = 160
    # > 0: also score this many answers per held-out question sampled at eval_temperature
    # (eval/sampled_accuracy; harness/trainer/evaluate.py).
    eval_samples: int = 0
    eval_temperature: float = 1.0
    tensorboard: bool = True
    progress: bool = True
    # A NaN/inf loss skips the step; this many in a row stops the run.
    max_bad_steps: int = 3

    def check(self) -> None:
        _positive("run.steps", self.steps)
        _positive("run.log_every", self.log_every)
        _positive("run.save_every", self.save_every)
        _positive("run.keep_last", self.keep_last)  # 0 would delete every checkpoint it writes
        _non_negative("run.eval_every", self.eval_every)
        _positive("run.eval_max_new_tokens", self.eval_max_new_tokens)
        _non_negative("run.eval_samples", self.eval_samples)
        _positive("run.eval_temperature", self.eval_temperature)
        _positive("run.max_bad_steps", self.max_bad_steps)


@dataclass
class SFTTrainConfig:
    batch_size: int = 4
    grad_accum: int = 1
    freeze_vision: bool = True
    freeze_projector: bool = False
    # True: a micro-batch's examples lie one after another in a single row with no padding
    # (attention keeps them apart; exact). False: one right-padded row per example.
    padding_free: bool = True

    def check(self) -> None:
        _positive("train.batch_size", self.batch_size)
        _positive("train.grad_accum", self.grad_accum)


@dataclass
class SFTConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    parallel: ParallelConfig = field(default_factory=lambda: ParallelConfig())
    run: RunConfig = field(default_factory=RunConfig)

    def check(self) -> None:
        if self.parallel.sp_size != 1:
            raise ConfigError(f"parallel.sp_size={self.parallel.sp_size}: SFT is data parallel only "
                              f"(sequence parallelism is implemented for RL)")


@dataclass
class RolloutConfig:
    # auto: vLLM where it is installed and can run the model (logged reason otherwise), else
    # the HF engine; vllm: vLLM or a clear error; hf: the trainer's own model.
    engine: str = "auto"
    n: int = 5  # responses per prompt (authors: 5; their video scripts use 8)
    temperature: float = 1.0
    top_p: float = 0.99
    max_new_tokens: int = 160
    # vLLM only (the harness sets vLLM's environment itself; nothing to export):
    vllm_kv_cache_gib: float | None = None  # KV cache space; None: 1 GiB on CPU, the fraction below on GPU
    vllm_gpu_memory_utilization: float = 0.6  # GPU share for weights + KV cache (authors: 0.6)
    vllm_tensor_parallel_size: int = 1  # GPUs per engine (authors: 2)
    vllm_max_model_len: int | None = None  # prompt + response; None: the model's max positions
    # GPU: release vLLM's weights and KV cache after each step's rollouts, for the log-prob
    # and update passes (vLLM sleep mode; woken by the weight sync). CPU: vLLM has no sleep
    # mode; the engine says so and keeps its memory.
    vllm_sleep: bool = True

    def check(self) -> None:
        _one_of("rollout.engine", self.engine, ("auto", "vllm", "hf"))
        if self.n < 2:
            raise ConfigError(f"rollout.n must be >= 2 for group advantages, got {self.n}")
        _positive("rollout.temperature", self.temperature)
        _positive("rollout.max_new_tokens", self.max_new_tokens)
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"rollout.top_p must be in (0, 1], got {self.top_p}")
        if self.vllm_kv_cache_gib is not None:
            _positive("rollout.vllm_kv_cache_gib", self.vllm_kv_cache_gib)
        if not 0.0 < self.vllm_gpu_memory_utilization <= 1.0:
            raise ConfigError(f"rollout.vllm_gpu_memory_utilization must be in (0, 1], "
                              f"got {self.vllm_gpu_memory_utilization}")
        _positive("rollout.vllm_tensor_parallel_size", self.vllm_tensor_parallel_size)
        if self.vllm_max_model_len is not None:
            _positive("rollout.vllm_max_model_len", self.vllm_max_model_len)


@dataclass
class AlgoConfig:
    # grpo | drgrpo (no std scaling; pair with loss_agg seq-mean-token-sum-norm) | rloo |
    # reinforce_pp (REINFORCE++: batch-whitened returns, no group baseline)
    advantage: str = "grpo"
    clip_low: float = 0.2
    clip_high: float = 0.3
    dual_clip: float | None = 3.0
    # token-mean (authors, DAPO) | seq-mean-token-mean (original GRPO) | seq-mean-token-sum |
    # seq-mean-token-sum-norm (Dr.GRPO: divided by the constant rollout.max_new_tokens)
    loss_agg: str = "token-mean"
    kl_coef: float = 1e-2
    kl_kind: str = "low_var_kl"
    # False: KL to the reference as a loss term (authors). True: as a reward penalty, each
    # sample's reward minus kl_coef x its summed per-token KL (old policy vs reference) before
    # advantages (verl's apply_kl_penalty; per token for reinforce_pp), and no KL loss term.
    kl_in_reward: bool = False
    dapo: bool = False  # drop groups that carry no learning signal and refill the batch
    # Which groups DAPO drops. distinct: those whose rewards are all equal (zero advantages).
    # mean_band: the authors' rule, keeping a group when dapo_band[0] < mean reward <
    # dapo_band[1] (it also keeps all-equal groups at a mean inside the band, e.g. 0.9).
    dapo_filter: str = "distinct"
    dapo_band: tuple[float, float] = (0.01, 0.99)
    acc_weight: float = 0.9
    format_weight: float = 0.1
    reward_fn: str | None = None  # "module:function" replacing the accuracy reward
    # A reward function that raises (or returns no number) scores the sample 0; past this
    # share of the run's samples the run stops instead of training without a signal.
    max_reward_error_fraction: float = 0.1

    def check(self) -> None:
        _one_of("algo.advantage", self.advantage, ("grpo", "drgrpo", "rloo", "reinforce_pp"))
        _one_of("algo.loss_agg", self.loss_agg, AGG_MODES)
        _one_of("algo.dapo_filter", self.dapo_filter, ("distinct", "mean_band"))
        if not self.dapo_band[0] < self.dapo_band[1]:
            raise ConfigError(f"algo.dapo_band must be [low, high] with low < high, got {list(self.dapo_band)}")
        if self.kl_in_reward and self.kl_coef == 0:
            raise ConfigError("algo.kl_in_reward with algo.kl_coef 0 penalises nothing; set kl_coef > 0 or "
                              "kl_in_reward false")
        _one_of("algo.kl_kind", self.kl_kind, ("k1", "k2", "k3", "low_var_kl", "abs"))
        _non_negative("algo.kl_coef", self.kl_coef)
        if not 0.0 <= self.max_reward_error_fraction <= 1.0:
            raise ConfigError(f"algo.max_reward_error_fraction must be in [0, 1], got {self.max_reward_error_fraction}")
        _non_negative("algo.clip_low", self.clip_low)
        _non_negative("algo.clip_high", self.clip_high)
        if self.clip_low >= 1.0:
            raise ConfigError(f"algo.clip_low must be < 1 (the ratio's lower bound is 1 - clip_low), got {self.clip_low}")
        if self.dual_clip is not None and not (math.isfinite(self.dual_clip) and self.dual_clip > 1.0):
            raise ConfigError(f"algo.dual_clip must be a finite number > 1 or null, got {self.dual_clip}")
        _non_negative("algo.acc_weight", self.acc_weight)
        _non_negative("algo.format_weight", self.format_weight)
        if self.acc_weight + self.format_weight == 0:
            raise ConfigError("algo.acc_weight and algo.format_weight are both 0: every reward would be 0")


@dataclass
class RLTrainConfig:
    prompts_per_step: int = 4
    mini_batches: int = 1  # policy updates per step (the batch is split into this many)
    micro_batch: int = 8  # sequences per forward/backward
    cache_video_embeds: bool = True  # False: the non-MR-SP baseline (re-encode every pass)
    # True: a prompt's responses in one micro-batch share one copy of its [prompt | video]
    # prefix in every log-prob and update pass (exact; docs/parallel.md). micro_batch a
    # multiple of rollout.n gives one prefix per prompt. False: one row per response.
    shared_prefix: bool = True
    # True: a micro-batch's sequences lie one after another in a single row with no padding
    # (attention keeps them apart; exact). False: one right-padded row per prompt group.
    padding_free: bool = True
    freeze_vision: bool = True
    freeze_projector: bool = True
    # A folder for the on-disk embedding cache (content-keyed, shareable between runs and with
    # `harness eval --embed-cache`): each video is decoded and encoded once across epochs and
    # runs. Needs the frozen encoder and the step cache above. null: encode every step.
    embed_cache_dir: str | None = None

    def check(self) -> None:
        _positive("train.prompts_per_step", self.prompts_per_step)
        _positive("train.mini_batches", self.mini_batches)
        _positive("train.micro_batch", self.micro_batch)
        if self.embed_cache_dir is not None:
            if not self.cache_video_embeds:
                raise ConfigError("train.embed_cache_dir needs train.cache_video_embeds=true (false is the "
                                  "baseline that encodes every pass again)")
            if not (self.freeze_vision and self.freeze_projector):
                raise ConfigError("train.embed_cache_dir needs train.freeze_vision and train.freeze_projector "
                                  "true: a trained encoder's embeddings change every step")


@dataclass
class ParallelConfig:
    """DP x SP layout; launch with `torchrun --nproc_per_node dp*sp -m harness rl ...`."""

    dp_size: int = 1
    sp_size: int = 1
    # Sharding over all dp_size * sp_size ranks. 0: none (replicated AdamW). 1: optimizer
    # state (ZeRO-1, torch's ZeroRedundancyOptimizer). 2: gradients + optimizer state, full
    # parameters on every rank (ZeRO-2). 3: parameters too, while the policy update runs
    # (ZeRO-3). 2 and 3 use FSDP2; see harness/parallel/sharding.py.
    zero_stage: int = 0

    def check(self) -> None:
        _positive("parallel.dp_size", self.dp_size)
        _positive("parallel.sp_size", self.sp_size)
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"parallel.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.zero_stage >= 2 and self.dp_size * self.sp_size < 2:
            raise ConfigError(f"parallel.zero_stage={self.zero_stage} shards over the dp_size * sp_size "
                              "processes and needs at least 2 (use zero_stage 0 on one process)")


@dataclass
class RLConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(train="rl.jsonl"))
    optim: OptimConfig = field(default_factory=OptimConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: RLTrainConfig = field(default_factory=RLTrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def check(self) -> None:
        if self.train.cache_video_embeds and not (self.train.freeze_vision and self.train.freeze_projector):
            raise ConfigError("train.cache_video_embeds needs a frozen vision tower and projector "
                              "(cached embeddings would be stale after an update)")
        if self.parallel.sp_size > 1 and self.algo.loss_agg == "seq-mean-token-mean":
            raise ConfigError("algo.loss_agg=seq-mean-token-mean needs whole sequences on one rank; "
                              "use token-mean or seq-mean-token-sum with parallel.sp_size > 1")
        batch = self.train.prompts_per_step * self.rollout.n
        if batch % self.train.mini_batches:
            raise ConfigError(
                f"train.prompts_per_step * rollout.n = {batch} must divide into "
                f"train.mini_batches = {self.train.mini_batches}"
            )


# --- loading -------------------------------------------------------------------------------


def load_config(path: str | Path | None, overrides: list[str], schema: type[T]) -> T:
    """Build `schema` from a YAML file (or defaults when path is None) plus overrides."""
    where = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"config {path} is not a file (a YAML file is expected, e.g. configs/rl/toy-cpu.yaml)")
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{where}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for item in overrides:
        if "=" not in item:  # e.g. a config file given without --config
            hint = f"; to read it as the config give --config {item}" if item.endswith((".yaml", ".yml")) else ""
            raise ConfigError(f"{item!r} is not a key=value override{hint}")
        _check_override_key(schema, item)  # a typo on the command line is not the file's
        apply_override(data, item)
    cfg = from_dict(schema, data, where)
    check_all(cfg)
    return cfg


def _check_override_key(schema: type, item: str) -> None:
    key = item.partition("=")[0].strip()
    node: Any = schema
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"command line: {'.'.join(parts[:i])} is not a section (override {item!r})")
        fields = {f.name for f in dataclasses.fields(node)}
        if part not in fields:
            close = difflib.get_close_matches(part, fields, n=1)
            prefix = ".".join(parts[:i] + [""])
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"command line: unknown key '{key}'{hint}")
        node = typing.get_type_hints(node)[part]
    if dataclasses.is_dataclass(node):
        some = dataclasses.fields(node)[0].name
        raise ConfigError(f"command line: {key} is a section, not a setting; give one of its keys, "
                          f"e.g. {key}.{some}=...")


def apply_override(data: dict[str, Any], item: str) -> None:
    """`a.b.c=value` -> data["a"]["b"]["c"] = yaml.safe_load(value)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    *parents, leaf = key.strip().split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {p!r} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"command line: the value of {item!r} is not valid YAML ({_yaml_problem(err)}); "
                          f"quote it, e.g. '{key.strip()}=[0.9, 0.99]'") from err


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently: a repeated `run:` section would drop every setting of the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in one "
                                  f"section; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A YAML file's content; a syntax error or a repeated key is a ConfigError naming the
    file and line."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (safe loader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    what = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else what


def from_dict(schema: type[T], data: dict[str, Any], where: str, prefix: str = "") -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(schema)
    names = {f.name for f in dataclasses.fields(schema)}
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{hint}")
    kwargs = {}
    for name in names & data.keys():
        kwargs[name] = _coerce(hints[name], data[name], where, f"{prefix}{name}")
    return schema(**kwargs)


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, key + ".")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(opt, value, where, key)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {key} = {value!r} is not a valid {tp}")
    if tp is Any:
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_coerce(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return {_coerce(kt, k, where, key): _coerce(vt, v, where, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: {key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, where, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-6" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is str and type(value) is str and (key.endswith("_dir") or key.rsplit(".", 1)[-1] in ("dir", "path")):
        return os.path.expanduser(value)  # a shell would have expanded ~; a literal "~" folder invites rm -rf ~
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{where}: {key} must be {getattr(tp, '__name__', tp)}, got {value!r}")


def check_all(cfg: Any) -> None:
    """Run `check()` on every section (and on the whole config) that defines one."""
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if dataclasses.is_dataclass(section) and hasattr(section, "check"):
            section.check()
    model, data = getattr(cfg, "model", None), getattr(cfg, "data", None)
    if isinstance(model, ModelConfig) and isinstance(data, DataConfig) and data.audio_in_video \
            and model.family != "qwen2_5_omni":
        raise ConfigError(f"data.audio_in_video needs a family that takes audio (qwen2_5_omni), "
                          f"got model.family={model.family}")
    if hasattr(cfg, "check"):
        cfg.check()


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r}; choose one of {allowed}")


def _positive(key: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{key} must be a finite number > 0, got {value}")


def _non_negative(key: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{key} must be a finite number >= 0, got {value}")
