"""What SFT and RL share, so that the two recipes cannot drift apart: a run's setup, its
optimizer update with the one rule for non-finite updates, its end of step (save, eval, log)
and its end. A recipe reads

    run = open_run(cfg, resume)           # out_dir, data, model with its trainable parts
    ...                                   # recipe-only setup that needs the whole model
    run.start(resume)                     # strategy (sharding), optimizer, checkpoint, log
    for step in run.steps():
        ... passes; run.update(loss) once per optimizer update ...
        run.end_step(step, metrics)       # bad-step rule, lr schedule, save / eval / log
    return run.finish()

The rule for non-finite updates (both recipes): an update whose loss or gradient norm is
not finite is not applied (the gradients are dropped); a step with such an update is a bad
step, warned and not checkpointed, and `run.max_bad_steps` bad steps in a row stop the run;
the lr schedule advances with every step that applied an update.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from harness.config import ConfigError, RLConfig, SFTConfig, read_yaml, to_dict
from harness.data.dataset import EpochSampler, QADataset, SkipLedger
from harness.errors import HarnessError
from harness.gen.data import PromptSet
from harness.model.build import family_media_kinds
from harness.model.interface import VideoLM
from harness.parallel.groups import Layout, build_layout
from harness.parallel.strategy import Replicated, make_strategy
from harness.trainer.common import (
    barrier,
    build_model,
    build_optimizer,
    check_frame_counts,
    check_out_dir,
    prepare_data,
    save_step,
    seed_everything,
    start_or_resume,
)
from harness.trainer.evaluate import evaluate_run
from harness.trainer.metrics import MetricsLogger, StepTimer, peak_memory
from harness.trainer.videos import DiskEmbeds

log = logging.getLogger(__name__)


class TrainingDiverged(HarnessError, RuntimeError):
    """`run.max_bad_steps` steps in a row had an update with a non-finite loss or gradient."""


@dataclass
class Run:
    cfg: SFTConfig | RLConfig
    name: str  # "sft" or "rl", in messages and the progress bar
    layout: Layout
    strategy: Replicated
    model: VideoLM
    train: QADataset | PromptSet  # anything with `counters()`: the data's tallies for the metrics
    held_out: QADataset | None
    sampler: EpochSampler
    timer: StepTimer = field(default_factory=StepTimer)
    embeds: DiskEmbeds | None = None  # the on-disk embedding cache, which held-out evaluation reads too
    optimizer: object = None
    scheduler: object = None
    logger: MetricsLogger | None = None
    first_step: int = 0
    bad_steps: int = 0  # in a row
    _applied: int = 0  # updates of the current step, applied / skipped
    _skipped: int = 0

    @property
    def main(self) -> bool:
        return self.layout.rank == 0

    @property
    def out(self) -> Path:
        return Path(self.cfg.run.out_dir)

    def start(self, resume: bool) -> None:
        """Hold the model as the strategy says, build the optimizer, restore the latest
        checkpoint when resuming and open the metrics log."""
        self.strategy.prepare(self.model)
        self.optimizer, self.scheduler = build_optimizer(self.model, self.cfg.optim, self.strategy,
                                                         total_steps=self.cfg.run.steps)
        self.first_step, self.logger = start_or_resume(
            self.out, resume, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            sampler=self.sampler, tensorboard=self.cfg.run.tensorboard, layout=self.layout, strategy=self.strategy)

    def steps(self):
        """The steps still to run, with a progress bar on the main rank."""
        self._bar = tqdm(range(self.first_step, self.cfg.run.steps), desc=self.name, initial=self.first_step,
                         total=self.cfg.run.steps, disable=not (self.cfg.run.progress and self.main))
        return self._bar

    def update(self, loss: float) -> float:
        """One optimizer update from the gradients this rank's passes left (collective).
        `loss`: the update's loss over all ranks (the same number on every rank, so they
        all decide alike). Returns the gradient norm before clipping."""
        grad_norm = self.strategy.reduce_and_clip(self.model, self.cfg.optim.grad_clip)
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.optimizer.step()
            self._applied += 1
        else:
            self._skipped += 1
            log.warning("%s step: non-finite loss %s / gradient norm %s; update not applied", self.name, loss,
                        grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.strategy.after_step(self.model)
        # bf16 autocast (model.compute_dtype) keeps its casts of the weights until its region
        # ends, and the recipe runs inside one region: without this every later pass would
        # compute with the weights as they were before this update.
        torch.clear_autocast_cache()
        return grad_norm

    def end_step(self, step: int, metrics: dict[str, float], postfix: dict[str, str] | None = None) -> None:
        """The bad-step rule and the lr schedule, then save, evaluate and log as configured
        (collective: every rank calls it; the main rank writes)."""
        bad = self._skipped > 0
        if self._applied:
            self.scheduler.step()
        self._applied = self._skipped = 0
        self.bad_steps = self.bad_steps + 1 if bad else 0
        if self.bad_steps >= self.cfg.run.max_bad_steps:
            raise TrainingDiverged(f"{self.name}: {self.bad_steps} non-finite losses in a row at step {step + 1} "
                                   f"(diverged, or non-finite weights in model.path); stopping before more "
                                   f"are skipped (run.max_bad_steps={self.cfg.run.max_bad_steps})")
        run = self.cfg.run
        save_now = not bad and ((step + 1) % run.save_every == 0 or step + 1 == run.steps)
        gathered = self.strategy.gather_for_save(self.model, self.optimizer) if save_now else None  # collective
        metrics = {**metrics, "lr": self.scheduler.get_last_lr()[0],
                   **self.train.counters(),
                   **self.timer.pop(), **peak_memory()}
        if not self.main:  # weights are identical on every rank; the main rank evaluates, logs and saves
            return
        if self.held_out is not None and run.eval_every and (step + 1) % run.eval_every == 0:
            metrics.update(evaluate_run(self.model, self.held_out, run, self.embeds))
        if (step + 1) % run.log_every == 0:
            self.logger.log(step + 1, metrics)
        if postfix:
            self._bar.set_postfix(postfix)
        if gathered is not None:
            save_step(self.out, step + 1, gathered, scheduler=self.scheduler, sampler=self.sampler,
                      keep_last=run.keep_last)

    def finish(self) -> dict[str, float]:
        """Collective end: the main rank writes the final HF-format weights, then evaluates on
        the held-out split (if any) and logs it; every rank waits for it."""
        final: dict[str, float] = {}
        if self.first_step == self.cfg.run.steps and (self.out / "final").is_dir():
            # --resume of a finished run: its final weights and evaluation stand (evaluating
            # again would log a second final row)
            log.info("%s: %s already ran its %d steps; nothing to do", self.name, self.out, self.cfg.run.steps)
            if self.main:
                self.logger.close()
            return final
        weights = self.strategy.whole_model(self.model)  # collective
        if self.main:
            weights.save_pretrained(self.out / "final")  # first: a failing evaluation must not cost it
            if self.held_out is not None:
                final = evaluate_run(self.model, self.held_out, self.cfg.run, self.embeds)
                self.logger.log(self.cfg.run.steps, final)
            self.logger.close()
        barrier(self.layout)
        return final


def open_run(cfg: SFTConfig | RLConfig, resume: bool, name: str) -> Run:
    """Everything before the model is trained: the layout, the out_dir (checked before
    anything is written, and on resume against the run's saved config), the data
    (synthesised once if asked), the model with its trainable parts chosen and checked
    against the data."""
    layout = build_layout(cfg.parallel.dp_size, cfg.parallel.sp_size)
    if layout.rank == 0:
        prepare_out_dir(cfg, resume)
        prepare_data(cfg.data)  # one rank synthesises; the others wait, then find it
    barrier(layout)
    seed_everything(cfg.run.seed)
    root = prepare_data(cfg.data)
    d = cfg.data
    kinds = family_media_kinds(cfg.model.family)
    train = QADataset(root / d.train, d.num_frames, SkipLedger(d.max_skip_fraction), d.video_dir,
                      d.frame_sampling, d.fps, media_kinds=kinds, audio_in_video=d.audio_in_video)
    # Its own ledger: only the main rank evaluates, and the training ledger's tally must be
    # the same on every rank of a data-parallel group (SkipLedger).
    held_out = (QADataset(root / d.eval, d.num_frames, SkipLedger(d.max_skip_fraction),
                          d.eval_video_dir or d.video_dir, d.frame_sampling, d.fps, media_kinds=kinds,
                          audio_in_video=d.audio_in_video)
                if d.eval else None)
    model = build_model(cfg.model)
    check_frame_counts(model, d)
    model.set_trainable(vision=not cfg.train.freeze_vision, projector=not cfg.train.freeze_projector)
    return Run(cfg, name, layout, make_strategy(cfg.parallel.zero_stage, layout), model, train, held_out,
               EpochSampler(len(train), cfg.run.seed))


def prepare_out_dir(cfg, resume: bool) -> Path:
    """Main rank, before anything else is written: run.out_dir checked (a new run must not
    land on an earlier one; a resumed one must keep its settings), made, and the run's
    config recorded in it."""
    out = Path(cfg.run.out_dir)
    check_out_dir(out, resume)
    if resume:
        check_resume_config(out / "config.yaml", cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return out


# What a resumed run may change: how long it runs, how it logs, saves and evaluates, where
# its files now live, and how it is laid out over processes and which engine samples (the
# checkpoints move between layouts). Anything else would be silently ignored (the optimizer,
# the lr schedule and the data order come back from the checkpoint) or would make a
# different run under the same name.
RESUMABLE = ("run.steps", "run.log_every", "run.save_every", "run.eval_every", "run.keep_last", "run.progress",
             "run.tensorboard", "run.max_bad_steps", "run.eval_max_new_tokens", "run.eval_samples",
             "run.eval_temperature", "data.dir", "data.video_dir", "data.eval_video_dir", "data.eval",
             "data.max_skip_fraction", "model.device", "parallel.", "rollout.engine", "rollout.vllm_",
             "train.embed_cache_dir")


def check_resume_config(saved: Path, cfg: SFTConfig | RLConfig) -> None:
    """`--resume` with settings the checkpoint cannot honour is refused, naming each one
    with its saved and its new value (keys only one side knows are left alone: a run saved
    by another version of the harness)."""
    if not saved.is_file():
        return
    before = _flat(read_yaml(saved) or {})
    now = _flat(yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
    changed = [f"{k}: {before[k]!r} -> {now[k]!r}" for k in sorted(before.keys() & now.keys())
               if before[k] != now[k] and not k.startswith(RESUMABLE)]
    if changed:
        raise ConfigError(f"--resume: {saved.parent} was run with other settings, which its checkpoint "
                          f"cannot take: {'; '.join(changed)}. Resume with the saved ones, or start a new "
                          f"run.out_dir")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
