"""The first block of an RL step: draw prompts, encode their videos once (MR-SP), sample G
responses per prompt, score them, and with DAPO drop the groups whose rewards are all equal
and draw more prompts to refill (docs/design.md, one RL step)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.algos import advantages as adv_fns
from harness.algos.rewards import format_reward, safe_reward
from harness.config import AlgoConfig, RLConfig
from harness.data.dataset import Medium, QADataset, prompt_ids
from harness.data.records import Record
from harness.errors import HarnessError
from harness.model.interface import MediaEmbeds, PromptEmbeds, VideoLM
from harness.parallel.comm import chunk_bounds
from harness.parallel.groups import Layout
from harness.parallel.reduce import dp_max, dp_min, dp_sum, dp_summer
from harness.rollout.engine import RolloutEngine, SamplingConfig
from harness.trainer.run import Run
from harness.trainer.videos import StepVideoCache

MAX_REFILL_ROUNDS = 3  # DAPO: extra sampling rounds per step at most
log = logging.getLogger(__name__)


@dataclass
class PromptItem:
    record: Record
    media: list[Medium]  # a video's data is None when not decoded: the on-disk embedding cache has it
    input_ids: torch.Tensor  # [L] chat prompt with one placeholder per medium
    position: int  # in its round's global draw (all DP ranks): the key of its sampling randomness


@dataclass
class Sample:
    """One rollout: the prompt it answers and everything computed about it."""

    item: PromptItem
    tokens: torch.Tensor  # [R]
    engine_logp: torch.Tensor  # [R]
    text: str
    reward: float = 0.0
    accuracy: float = 0.0
    format: float = 0.0


@dataclass
class Collection:
    """One step's samples on this rank and what collecting them counted."""

    samples: list[Sample]
    fewest: int  # samples on the DP rank that has the fewest
    reward_errors: int  # this rank's
    last_reward_error: str | None
    dropped_groups: int  # this rank's
    passed_over: int  # drawn but unused because another DP rank refilled more (all ranks)


class NoUsableSamples(HarnessError, RuntimeError):
    """A step ended with no samples to learn from on some rank."""


class RewardBudgetExceeded(HarnessError, RuntimeError):
    """The reward function failed on more of the run's samples than algo.max_reward_error_fraction."""


def group_ids(samples: list[Sample]) -> torch.Tensor:
    """[N] the index of each sample's prompt among the step's prompts, in order of first use."""
    index: dict[int, int] = {}
    return torch.tensor([index.setdefault(id(s.item), len(index)) for s in samples], dtype=torch.long)


def item_media(videos: StepVideoCache, item: PromptItem, train: QADataset | None = None) -> list[MediaEmbeds]:
    """`train`: decodes a video should its on-disk entry have gone since it was drawn
    (the log-prob and update passes find every medium in the step's cache)."""
    out = []
    for i, medium in enumerate(item.media):
        load = None if train is None else functools.partial(_load, train, item.record, medium)
        out.append(videos.get_medium(f"{item.record.problem_id}#{i}", medium, load=load))
    return out


def _load(train: QADataset, record: Record, medium: Medium):
    return medium.data if train.load_medium(record, medium) else None


def prompt_embeds(model: VideoLM, videos: StepVideoCache, item: PromptItem,
                  train: QADataset | None = None) -> PromptEmbeds:
    return model.build_prompt(item.input_ids, item_media(videos, item, train))


def collect(run: Run, engine: RolloutEngine, videos: StepVideoCache, accuracy_fn, step: int) -> Collection:
    """`train.prompts_per_step` prompts' samples on this rank (with DAPO: of informative
    groups, refilled for at most MAX_REFILL_ROUNDS more rounds). A DAPO refill is per rank;
    every DP rank draws the largest deficit, so the one shared data position advances alike
    everywhere (a rank needing fewer uses less and passes the rest over)."""
    cfg, timer = run.cfg, run.timer
    want, dapo = cfg.train.prompts_per_step, cfg.algo.dapo
    samples: list[Sample] = []
    kept = errors = dropped = passed_over = 0
    last_error = None
    draw = want
    for round_ in range(1 + (MAX_REFILL_ROUNDS if dapo else 0)):
        passed_over += draw - (want - kept)
        with timer.block("data"):
            items = _load_prompts(run, videos, draw, use=want - kept)
        if videos.reuse:  # MR-SP: each prompt's media encoded once, here, for the whole step
            with timer.block("encode"):
                for it in items:
                    item_media(videos, it, run.train)
        with timer.block("rollout"):
            new = _rollout(engine, run, videos, items, seed=_round_seed(cfg, step, round_))
        with timer.block("reward"):
            for s in new:
                err = _score(s, accuracy_fn, cfg.algo)
                errors, last_error = (errors + 1, err) if err is not None else (errors, last_error)
        if dapo and items:  # (none: this rank is full while another refills)
            new = [s for s, k in zip(new, _informative(new, cfg.algo).tolist(), strict=True) if k]
        prompts = len({id(s.item) for s in new})
        if dapo:
            dropped += len(items) - prompts
        samples += new
        kept += prompts
        if not dapo:
            break
        draw = int(dp_max([want - kept], run.layout)[0])
        if draw == 0:
            break  # every rank is full
    if dapo:
        passed_over = int(dp_sum([passed_over], run.layout)[0])
    fewest = int(dp_min([len(samples)], run.layout)[0])  # all ranks raise together
    if fewest == 0:
        where = "this rank" if run.layout.dp_group is None else "a data-parallel rank"
        why = (f"DAPO dropped every group in {1 + MAX_REFILL_ROUNDS} rounds: each group's rewards were all "
               f"equal (every answer right, or every one wrong, as from a policy that cannot answer yet); "
               f"start from a stronger policy (SFT), or set algo.dapo=false, or raise train.prompts_per_step"
               if dapo and dropped else
               "every prompt's media were unreadable (listed above); fix the files or raise "
               "train.prompts_per_step")
        raise NoUsableSamples(f"rl step {step + 1}: {where} has no usable samples: {why}")
    return Collection(samples, fewest, errors, last_error, dropped, passed_over)


class RewardBudget:
    """The reward function's failures over the run, every DP rank's: past
    `algo.max_reward_error_fraction` of the samples, all ranks stop together."""

    def __init__(self, cfg: RLConfig) -> None:
        self.fraction, self.name = cfg.algo.max_reward_error_fraction, cfg.algo.reward_fn or "the accuracy reward"
        self.failed = self.scored = 0
        self.step_errors = 0

    def check(self, batch: Collection, layout: Layout) -> None:
        errors, scored = (int(v) for v in dp_sum([batch.reward_errors, len(batch.samples)], layout))
        self.step_errors = errors
        self.failed, self.scored = self.failed + errors, self.scored + scored
        if self.failed > self.fraction * self.scored:
            raise RewardBudgetExceeded(
                f"the reward function failed on {self.failed} of {self.scored} samples so far "
                f"(> algo.max_reward_error_fraction={self.fraction}); last error: "
                f"{batch.last_reward_error or 'on another rank'} ({self.name})")


def _round_seed(cfg: RLConfig, step: int, round_: int) -> int:
    # Sampling randomness is a function of (run seed, step, round), so a resumed run draws
    # exactly what an uninterrupted one would; within a round each prompt's by its key.
    return (cfg.run.seed * 1_000_003 + step) * 8 + round_


def _load_prompts(run: Run, videos: StepVideoCache, draw: int, use: int) -> list[PromptItem]:
    """This DP rank's share of `draw` prompts per rank, of which it loads the first `use`
    (a video the on-disk embedding cache holds is not decoded). Every rank draws the same
    global list from an identically seeded sampler, so the data position is one state for all
    ranks; prompts drawn but not used are passed over."""
    layout, train = run.layout, run.train
    items = []
    drawn = run.sampler.take(draw * layout.dp_size)
    first = layout.dp_rank * draw
    for position, i in enumerate(drawn[first : first + use], start=first):
        rec = train.records[i]
        media = train.media(rec)
        if all(_on_disk(videos, m) or train.load_medium(rec, m) for m in media):
            items.append(PromptItem(rec, media, prompt_ids(run.model, rec, media), position))
    train.ledger.check(reduce=dp_summer(layout))  # collective: every rank judges the global share
    return items


def _on_disk(videos: StepVideoCache, medium: Medium) -> bool:
    """A video the on-disk embedding cache holds is not decoded."""
    return medium.kind == "video" and videos.disk is not None and videos.disk.has(videos.disk.key(medium.path))


def _rollout(engine: RolloutEngine, run: Run, videos: StepVideoCache, items: list[PromptItem],
             seed: int) -> list[Sample]:
    """G responses per prompt. Under SP every rank of the group samples a contiguous share of
    the group's prompts with its own engine and the shares are gathered in order, so every
    rank trains on the same samples; each prompt's randomness is keyed by its place in the
    global draw, so the split changes nothing that is sampled."""
    model, layout, r = run.model, run.layout, run.cfg.rollout
    lo, hi = chunk_bounds(len(items), layout.sp_size, layout.sp_rank)
    mine = items[lo:hi]
    outs = []
    if mine:
        with torch.no_grad():
            # The baseline's n one-sample prompts take the cached run's row keys (key x n +
            # sample), so both sample alike.
            if videos.reuse:  # one prompt (one encoding) per item, n samples each
                prompts = [prompt_embeds(model, videos, it, run.train) for it in mine]
                keys, per_prompt = tuple(it.position for it in mine), r.n
            else:  # baseline: every rollout encodes the video again
                prompts = [prompt_embeds(model, videos, it, run.train) for it in mine for _ in range(r.n)]
                keys, per_prompt = tuple(it.position * r.n + s for it in mine for s in range(r.n)), 1
            sampling = SamplingConfig(n=per_prompt, temperature=r.temperature, top_p=r.top_p,
                                      max_new_tokens=r.max_new_tokens, seed=seed, prompt_keys=keys)
            outs = [(lo + o.prompt_index // (r.n // per_prompt), o) for o in engine.generate(prompts, sampling)]
    if layout.sp_group is not None:  # every rank's share, in rank order (= item order)
        shares: list = [None] * layout.sp_size
        dist.all_gather_object(shares, outs, group=layout.sp_group)
        outs = [pair for share in shares for pair in share]
    return [Sample(items[k], o.token_ids, o.logprobs, model.tokenizer.decode(o.token_ids, skip_special_tokens=True))
            for k, o in outs]


def _score(sample: Sample, accuracy_fn, algo: AlgoConfig) -> str | None:
    """Fill the sample's reward; returns the reward function's error (reward 0) or None."""
    record = sample.item.record
    acc, err = safe_reward(accuracy_fn, sample.text, record.answer, record.problem_type)
    sample.accuracy = float(acc)
    sample.format = format_reward(sample.text)
    sample.reward = algo.acc_weight * sample.accuracy + algo.format_weight * sample.format
    if err is not None:
        log.warning("reward function failed on %s: %s", record.problem_id, err)
        sample.reward = 0.0
    return err


def _informative(samples: list[Sample], algo: AlgoConfig) -> torch.Tensor:
    """[N] bool: the samples of the groups DAPO keeps (`algo.dapo_filter`)."""
    rewards, groups = torch.tensor([s.reward for s in samples]), group_ids(samples)  # [N], [N]
    if algo.dapo_filter == "mean_band":
        return adv_fns.mean_band_keep_mask(rewards, groups, *algo.dapo_band)
    return adv_fns.dapo_keep_mask(rewards, groups)
