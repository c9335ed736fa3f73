"""Setup shared by the recipes: seeding, data preparation, model loading, optimizer."""

from __future__ import annotations

import contextlib
import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from harness.config import DataConfig, ModelConfig, OptimConfig
from harness.data.dataset import EpochSampler
from harness.model.build import init_model, load_model
from harness.model.interface import VideoLM
from harness.model.qwen_vl import VIDEO_KEYS
from harness.parallel.groups import SINGLE_PROCESS, Layout
from harness.parallel.strategy import Replicated
from harness.trainer.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    latest_intact_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from harness.trainer.metrics import MetricsLogger

log = logging.getLogger(__name__)

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_data(cfg: DataConfig) -> Path:
    """The data folder, synthesised first when it has no training split and the config
    asks for synthetic data."""
    root = Path(cfg.dir)
    if not (root / cfg.train).exists():
        if cfg.synth_items <= 0:
            raise FileNotFoundError(
                f"{root / cfg.train} does not exist (set data.synth_items to synthesise toy data there)"
            )
        from harness.data.synthetic.modalities import synthesize_modality

        video = {"formats": ("harness", "videomme")} if cfg.synth_modality == "video" else {}
        synthesize_modality(root, cfg.synth_modality, cfg.synth_items, cfg.synth_seed, **video)
    return root


def check_frame_counts(model: VideoLM, data: DataConfig) -> None:
    """A video encoder that pools t frames into one unit (VILA's TSPVideoEncoder) needs
    every frame count to be a multiple of t: said before any video is decoded."""
    t = model.frames_per_unit
    if t > 1 and (data.num_frames % t or data.min_frames or data.fps):
        raise ValueError(f"the model's video encoder pools {t} frames per unit: data.num_frames must be a "
                         f"multiple of {t} (got {data.num_frames}), data.min_frames 0 (got {data.min_frames}) "
                         f"and data.fps null (got {data.fps}: a rate gives any count)")


def build_model(cfg: ModelConfig) -> VideoLM:
    dtype = getattr(torch, cfg.dtype)
    model = load_model(cfg.path, dtype=dtype) if cfg.path else init_model(cfg.family, cfg.size, seed=cfg.seed)
    if model.family != cfg.family:
        raise ValueError(f"model.path {cfg.path} holds a {model.family} model but model.family={cfg.family}")
    if cfg.video_pixels is not None:
        model.preprocess_cfg.update(zip(VIDEO_KEYS, map(int, cfg.video_pixels), strict=True))
    model.set_activation_checkpointing(cfg.activation_checkpointing)
    return model.to(device=resolve_device(cfg), dtype=dtype)


def resolve_device(cfg: ModelConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("model.device=cuda but torch sees no CUDA device (harness doctor tells why)")
    return cfg.device


def compute_precision(cfg: ModelConfig):
    """The context a recipe runs in: bf16 autocast over fp32 master weights when
    `model.compute_dtype` asks for it, else nothing (the weights' own dtype). The vLLM
    engine switches it off for itself: it holds its own copy of the weights in that dtype."""
    if cfg.compute_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(resolve_device(cfg), dtype=getattr(torch, cfg.compute_dtype))


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, strategy: Replicated | None = None,
                    total_steps: int | None = None):
    """AdamW over the trainable parameters as `strategy` holds them (default: whole, on this
    process; ZeRO-1 shards its state over the ranks, ZeRO-2/3 steps parameter shards) and
    the lr schedule (warmup, then constant or cosine)."""
    strategy = strategy or Replicated(SINGLE_PROCESS)
    opt = strategy.optimizer(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, total_steps))
    return opt, sched


def lr_factor(cfg: OptimConfig, step: int, total_steps: int | None) -> float:
    """The lr multiplier of optimizer step `step` (0-based): linear warmup over
    `warmup_steps`, then constant or a cosine from 1 down to `min_lr_ratio` at `total_steps`."""
    warm = max(cfg.warmup_steps, 0)
    if warm and step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    if total_steps is None:
        raise ValueError("optim.schedule=cosine needs the run's total number of steps")
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def check_out_dir(out: Path, resume: bool) -> None:
    """Before anything is written or built: a plain run into an out_dir that holds an
    earlier run would overwrite its config and mix two runs' logs. A start that failed
    before logging a step (an empty log, no checkpoint) is not a run to keep."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"run.out_dir {out} is a file; give a folder")
    metrics = out / "metrics.jsonl"
    if resume or not metrics.exists():
        return
    if metrics.stat().st_size == 0 and not list_checkpoints(out):
        log.info("%s holds only a failed start (empty log, no checkpoint); starting over", out)
        return
    raise FileExistsError(f"{out} holds an earlier run: pass --resume to continue it, or choose another run.out_dir")


def start_or_resume(out: Path, resume: bool, *, model: VideoLM, optimizer, scheduler,
                    sampler: EpochSampler, tensorboard: bool, layout: Layout, strategy: Replicated
                    ) -> tuple[int, MetricsLogger | None]:
    """Restore the latest checkpoint (weights, optimizer, RNG, data position) when resuming,
    and open the metrics log so that it reads as one uninterrupted run. Returns the
    number of steps already done and the logger (None on ranks other than the main one,
    which load the same checkpoint but write nothing). The main rank alone verifies the
    checkpoints' checksums (and sets damaged ones aside); the others then take the newest
    one left, so the files are read once and every rank picks the same."""
    main = layout.rank == 0
    ckpt = None
    if resume:
        had_checkpoints = bool(list_checkpoints(out))
        barrier(layout)  # every rank has listed before the main rank renames anything
        if main:
            latest_intact_checkpoint(out)
        barrier(layout)
        ckpt = latest_checkpoint(out)
    if ckpt is None:
        if resume and had_checkpoints:
            raise CheckpointError(f"--resume: every checkpoint under {out / 'checkpoints'} is damaged "
                                  f"(see the warnings above; set aside as *.damaged); rerun with --resume "
                                  f"to start afresh")
        if resume:
            # Killed (or failed) before its first checkpoint: nothing to restore, so start
            # afresh in the same out_dir; the log is reopened and cut back to step 0.
            log.warning("--resume: no checkpoint under %s yet; starting from step 0", out / "checkpoints")
            if not main:
                return 0, None
            logger = MetricsLogger(out, tensorboard=tensorboard, resume=True)
            logger.truncate_after(0)
            return 0, logger
        return 0, MetricsLogger(out, tensorboard=tensorboard) if main else None
    state = load_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, strategy=strategy)
    sampler.load_state(state["data_state"])
    if not main:
        return state["step"], None
    logger = MetricsLogger(out, tensorboard=tensorboard, resume=True)
    logger.truncate_after(state["step"])
    return state["step"], logger


def response_ids(tokenizer, text: str, end_of_turn: int) -> torch.Tensor:
    """Token ids of an assistant response, ending with the end-of-turn token."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([*ids, end_of_turn])  # [R]


def barrier(layout: Layout) -> None:
    if layout.world_size > 1:
        dist.barrier()


def save_step(out: Path, step: int, gathered: tuple[torch.nn.Module, object], *, scheduler,
              sampler: EpochSampler, keep_last: int) -> None:
    """Main rank: write the checkpoint of `step` from what `Strategy.gather_for_save` returned."""
    model, optimizer = gathered
    save_checkpoint(out, step, model=model, optimizer=optimizer, scheduler=scheduler, data_state=sampler.state(),
                    keep_last=keep_last)
