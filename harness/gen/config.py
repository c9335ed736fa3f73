"""`harness gen-rl` settings. Defaults follow Flow-GRPO's SD3 recipe (arXiv 2505.05470;
yifan123/flow_grpo config/grpo.py) where the anchors agree, with Long-RL's
(examples/config_diffusion.yaml) where ours follows theirs; docs/gen-rl.md lists both."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config import (
    ConfigError,
    OptimConfig,
    ParallelConfig,
    _non_negative,
    _one_of,
    _positive,
)
from harness.gen.models import KINDS, LORA_TARGETS, LoraSpec


@dataclass
class GenModelConfig:
    kind: str = "sd3"  # sd3 (image) | wan (video); must match a model.path's pipeline
    path: str | None = None  # a diffusers pipeline folder; None: a toy model of `size`
    size: str = "tiny"  # toy sizes: tiny | toy
    seed: int = 0  # the toy model's random weights, and a LoRA adapter's initial A matrices
    device: str = "auto"
    dtype: str = "float32"  # the transformer's weights (fp32 master weights)
    compute_dtype: str | None = None  # "bfloat16": autocast over fp32 weights
    activation_checkpointing: bool = False
    # > 0: train a LoRA adapter of this rank instead of the whole transformer (Flow-GRPO's
    # SD3 default: 32, alpha 64); the KL reference is then the base (the adapter off)
    lora_rank: int = 0
    lora_alpha: float | None = None  # None: 2 x lora_rank (Flow-GRPO's ratio)
    lora_targets: list[str] | None = None  # module names; None: models.LORA_TARGETS[kind]

    def lora(self) -> LoraSpec | None:
        if not self.lora_rank:
            return None
        alpha = 2.0 * self.lora_rank if self.lora_alpha is None else float(self.lora_alpha)
        targets = LORA_TARGETS[self.kind] if self.lora_targets is None else self.lora_targets
        return LoraSpec(self.lora_rank, alpha, tuple(targets))

    def check(self) -> None:
        _non_negative("model.lora_rank", self.lora_rank)
        if not self.lora_rank and (self.lora_alpha is not None or self.lora_targets is not None):
            raise ConfigError("model.lora_alpha / model.lora_targets need model.lora_rank > 0")
        if self.lora_alpha is not None:
            _positive("model.lora_alpha", self.lora_alpha)
        if self.lora_targets is not None and not self.lora_targets:
            raise ConfigError("model.lora_targets is empty: name the modules to adapt, or leave it unset "
                              "for the kind's defaults")
        _one_of("model.kind", self.kind, KINDS)
        _one_of("model.size", self.size, ("tiny", "toy"))
        _one_of("model.device", self.device, ("auto", "cpu", "cuda"))
        _one_of("model.dtype", self.dtype, ("float32", "bfloat16", "float16"))
        if self.compute_dtype is not None:
            _one_of("model.compute_dtype", self.compute_dtype, ("bfloat16", "float16"))


@dataclass
class GenDataConfig:
    dir: str = "runs/data/gen-toy"
    train: str = "train.jsonl"
    eval: str | None = "test.jsonl"  # held-out prompts, scored with the ODE sampler
    # > 0: write toy prompts of `synth_modality` into `dir` first when it has none
    synth_items: int = 0
    synth_modality: str = "gen-image"
    synth_seed: int = 0

    def check(self) -> None:
        _non_negative("data.synth_items", self.synth_items)
        _one_of("data.synth_modality", self.synth_modality, ("gen-image", "gen-video"))


@dataclass
class SampleConfig:
    num_steps: int = 10  # SDE sampling steps per rollout (Flow-GRPO / Long-RL SD3: 10)
    eval_num_steps: int = 40  # held-out scoring with the ODE sampler (Flow-GRPO: 40)
    guidance: float = 4.5  # classifier-free guidance; 1 = none (one pass, no negative prompt)
    negative_prompt: str = ""
    noise_level: float = 0.7  # the SDE's noise scale (Flow-GRPO: 0.7)
    height: int = 512
    width: int = 512
    frames: int = 1  # wan: 1 + 4k frames (the toy VAE: 1 + 2k)
    batch: int = 8  # samples per transformer batch in rollouts and held-out scoring

    def check(self) -> None:
        for key in ("num_steps", "eval_num_steps", "height", "width", "frames", "batch"):
            _positive(f"sample.{key}", getattr(self, key))
        if self.guidance < 1:
            raise ConfigError(f"sample.guidance must be >= 1 (1: no guidance), got {self.guidance}")
        _non_negative("sample.noise_level", self.noise_level)
        if self.noise_level == 0:
            raise ConfigError("sample.noise_level=0 is the ODE: its steps have no log-probability to train on")


@dataclass
class GenAlgoConfig:
    group_size: int = 24  # images per prompt (Flow-GRPO SD3: 24)
    clip_range: float = 1e-4  # PPO clip of the per-step ratio (Flow-GRPO SD3: 1e-4)
    adv_clip: float = 5.0
    global_std: bool = True  # advantages / the std of all the step's rewards (Flow-GRPO SD3), else the group's
    kl_coef: float = 0.04  # beta of the flow_grpo KL to the starting model (Flow-GRPO GenEval: 0.04)
    timestep_fraction: float = 0.99  # train the first int(num_steps * f) steps: 0.99 of 10 -> 9

    def check(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"algo.group_size must be >= 2 (advantages compare a prompt's samples), "
                              f"got {self.group_size}")
        _positive("algo.clip_range", self.clip_range)
        _positive("algo.adv_clip", self.adv_clip)
        _non_negative("algo.kl_coef", self.kl_coef)
        if not 0 < self.timestep_fraction <= 1:
            raise ConfigError(f"algo.timestep_fraction must be in (0, 1], got {self.timestep_fraction}")


@dataclass
class RewardConfig:
    name: str = "shape_match"  # shape_match | motion_match | brisque | clip_score | module:function
    model_path: str | None = None  # clip_score: a local CLIP / PickScore folder
    scale: float = 1.0  # clip_score: divide the logit by this (PickScore: 26)

    def check(self) -> None:
        _positive("reward.scale", self.scale)


@dataclass
class GenTrainConfig:
    prompts_per_step: int = 2  # over all DP ranks; each rank takes prompts_per_step / dp_size
    micro_batch: int = 4  # samples per training pass

    def check(self) -> None:
        _positive("train.prompts_per_step", self.prompts_per_step)
        _positive("train.micro_batch", self.micro_batch)


@dataclass
class GenRunConfig:
    out_dir: str = "runs/gen/run"
    seed: int = 0
    steps: int = 100
    log_every: int = 1
    save_every: int = 50
    keep_last: int = 2
    eval_every: int = 0  # 0: only at the end
    sample_grid: int = 4  # held-out prompts drawn into the before/after grid (0: none)
    tensorboard: bool = True
    progress: bool = True
    max_bad_steps: int = 3

    def check(self) -> None:
        for key in ("steps", "log_every", "save_every", "keep_last", "max_bad_steps"):
            _positive(f"run.{key}", getattr(self, key))
        _non_negative("run.eval_every", self.eval_every)
        _non_negative("run.sample_grid", self.sample_grid)


@dataclass
class GenRLConfig:
    model: GenModelConfig = field(default_factory=GenModelConfig)
    data: GenDataConfig = field(default_factory=GenDataConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    algo: GenAlgoConfig = field(default_factory=GenAlgoConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))
    train: GenTrainConfig = field(default_factory=GenTrainConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    run: GenRunConfig = field(default_factory=GenRunConfig)

    def check(self) -> None:
        p = self.parallel
        if p.sp_size != 1:
            raise ConfigError("parallel.sp_size must be 1 for gen-rl: a sample's latents are short; "
                              "scale out with parallel.dp_size")
        if self.train.prompts_per_step % p.dp_size:
            raise ConfigError(f"train.prompts_per_step={self.train.prompts_per_step} must divide over "
                              f"parallel.dp_size={p.dp_size}")
        if self.model.kind == "sd3" and self.sample.frames != 1:
            raise ConfigError("sample.frames is for video (model.kind=wan); sd3 makes images: set it to 1")
