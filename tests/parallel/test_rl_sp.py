"""Full RL steps under MR-SP on 2 processes (gloo) give the single-process parameters."""

import math

import pytest
import torch

from harness.config import RLConfig, load_config
from harness.model.build import init_model, load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from tests.helpers import tiny_overrides
from tests.parallel import workers
from tests.parallel.launch import run_distributed


def _overrides(data, out, family, **extra):
    base = {
        "model.path": None, "model.family": family, "model.size": "tiny", "run.steps": 2, "run.save_every": 2,
        "data.eval": None, "rollout.n": 3, "rollout.max_new_tokens": 6, "train.prompts_per_step": 2,
        "train.micro_batch": 2, "train.mini_batches": 2, "optim.lr": 1e-3,
        "algo.reward_fn": "tests.trainer.reward_fns:by_length",
    }
    base.update(extra)
    return tiny_overrides(str(data), str(out), **base)


@pytest.mark.distributed
@pytest.mark.parametrize("family", ["vila", "qwen2_5_vl"])
def test_sp2_rl_steps_equal_single_process(toy_data, tmp_path, family):
    """SP 2 with the shared-prefix passes and padding-free rows (the defaults) against one
    process with one right-padded row per response."""
    single_cfg = _overrides(toy_data, tmp_path / "single", family, **{"train.shared_prefix": False,
                                                                      "train.padding_free": False})
    train_rl(load_config("configs/rl/toy-cpu.yaml", single_cfg, RLConfig))
    single = load_model(tmp_path / "single" / "final").state_dict()
    overrides = _overrides(toy_data, tmp_path / "sp2", family, **{"parallel.sp_size": 2})
    sp2 = run_distributed(workers.rl_run, 2, overrides)[0]
    init = init_model(family, "tiny", seed=0).state_dict()
    assert max(float((single[k] - init[k]).abs().max()) for k in single) > 0  # the steps trained
    worst = max(float((sp2[k] - single[k]).abs().max()) for k in single)
    assert worst < 2e-5, worst
    # the logged loss, KL, entropy are the group's, as one process logs them (not rank 0's share)
    rows = {name: [r for r in read_metrics(tmp_path / name / "metrics.jsonl") if "loss" in r]
            for name in ("single", "sp2")}
    for a, b in zip(rows["single"], rows["sp2"], strict=True):
        # grad_norm too: AdamW and clipping cancel a gradient off by a constant factor, so
        # equal weights alone would not catch a sum that should be a mean
        for key in ("loss", "entropy", "kl", "pg/clip_frac", "pg/approx_kl", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (key, a[key], b[key])


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_dp2_samples_and_trains_as_one_process(toy_data, tmp_path):
    """Each prompt's sampling is keyed by its place in the step's global draw: 2 DP ranks of
    1 prompt each (replicated, and with ZeRO-3) sample what one process with both prompts
    samples, and end with its weights (rank 1 once reused rank 0's random stream)."""
    single_cfg = _overrides(toy_data, tmp_path / "single", "vila", **{"train.mini_batches": 1})
    train_rl(load_config("configs/rl/toy-cpu.yaml", single_cfg, RLConfig))
    single = load_model(tmp_path / "single" / "final").state_dict()
    init = init_model("vila", "tiny", seed=0).state_dict()
    assert max(float((single[k] - init[k]).abs().max()) for k in single) > 0
    for name, extra in (("dp2", {}), ("dp2z3", {"parallel.zero_stage": 3})):
        dp = run_distributed(workers.rl_run, 2, _overrides(
            toy_data, tmp_path / name, "vila", **{"parallel.dp_size": 2, "train.prompts_per_step": 1,
                                                 "train.mini_batches": 1, **extra}))[0]
        worst = max(float((dp[k] - single[k]).abs().max()) for k in single)
        assert worst < 2e-5, (name, worst)
        for a, b in zip(*(read_metrics(tmp_path / run / "metrics.jsonl") for run in ("single", name)), strict=True):
            if "grad_norm" not in a:
                continue
            # the pre-clip norm sees a gradient off by a constant factor; the rest are the
            # whole step's, not rank 0's half (sums of every rank's samples)
            for key in ("grad_norm", "loss", "reward/mean", "reward/std", "reward/mixed_groups",
                        "response/length_mean", "response/length_max", "data/prompts", "media/encoder_calls"):
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), (name, key, a[key], b[key])


@pytest.mark.distributed
def test_zero1_with_dp2_matches_replicated_optimizer_and_resumes(toy_data, tmp_path):
    """DP=2 with the optimizer state sharded (ZeRO-1) gives the same parameters as DP=2
    with replicated AdamW; 2 steps + resume + 2 steps equal 4 straight."""
    common = {"parallel.dp_size": 2, "train.prompts_per_step": 1, "rollout.n": 3, "train.mini_batches": 1}
    plain = run_distributed(workers.rl_run, 2, _overrides(toy_data, tmp_path / "plain", "vila",
                                                          **common, **{"run.steps": 4}))[0]
    zero_first = _overrides(toy_data, tmp_path / "zero", "vila", **common,
                            **{"parallel.zero_stage": 1, "run.steps": 2})
    zero_second = _overrides(toy_data, tmp_path / "zero", "vila", **common,
                             **{"parallel.zero_stage": 1, "run.steps": 4})
    zero = run_distributed(workers.rl_run_resume, 2, zero_first, zero_second)[0]
    worst = max(float((zero[k] - plain[k]).abs().max()) for k in plain)
    assert worst < 1e-5, worst
    moved = max(float((plain[k] - load_model_init()[k]).abs().max()) for k in plain)
    assert moved > 0  # the steps did train


def load_model_init():
    return init_model("vila", "tiny", seed=0).state_dict()


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_dapo_with_dp2_keeps_one_data_position_and_resumes_under_zero2(toy_data, tmp_path):
    """DAPO on 2 DP ranks: questions keyed "A" give uniform rewards, so each rank drops and
    refills its own groups, in some step a different number on each rank (`data/passed_over`
    > 0: prompts one rank drew but did not need). Every rank must draw alike, because a
    resumed run gives every rank rank 0's data position: 4 straight steps with replicated
    AdamW equal 2 + resume + 2 with ZeRO-2 (per-rank draws fail here). Ranks ending a step
    with different numbers of groups under ZeRO-2 are covered by
    test_zero2_dp2_with_uneven_samples_per_rank_equals_replicated."""
    common = {"parallel.dp_size": 2, "train.prompts_per_step": 2, "rollout.n": 3, "train.mini_batches": 1,
              "algo.dapo": True, "algo.kl_coef": 0.0, "rollout.engine": "hf",
              "algo.reward_fn": "tests.trainer.reward_fns:uniform_for_answer_a"}
    plain = run_distributed(workers.rl_run, 2, _overrides(toy_data, tmp_path / "plain", "vila",
                                                          **common, **{"run.steps": 4}))[0]
    zero = {**common, "parallel.zero_stage": 2}
    first = _overrides(toy_data, tmp_path / "z2", "vila", **zero, **{"run.steps": 2})
    second = _overrides(toy_data, tmp_path / "z2", "vila", **zero, **{"run.steps": 4})
    resumed = run_distributed(workers.rl_run_resume, 2, first, second)[0]
    worst = max(float((resumed[k] - plain[k]).abs().max()) for k in plain)
    assert worst < 1e-5, worst
    from harness.trainer.metrics import read_metrics

    rows = [r for r in read_metrics(tmp_path / "plain" / "metrics.jsonl") if "reward/mean" in r]
    assert sum(r["data/dropped_groups"] for r in rows) > 0  # rank 0 did drop and refill
    assert sum(r["data/passed_over"] for r in rows) > 0  # ... and the ranks refilled unevenly
    start = load_model_init()
    assert max(float((plain[k] - start[k]).abs().max()) for k in plain) > 0  # it trained


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_dp2_reinforce_pp_with_kl_in_reward_and_dr_grpo_loss_trains_as_one_process(toy_data, tmp_path):
    """REINFORCE++ whitens over the whole batch: 2 DP ranks whiten with the moments of both
    ranks' samples, so they end with the one-process weights (each whitening its own half
    would not); with the KL as a reward penalty (logged as `kl`) and Dr.GRPO's constant
    normaliser."""
    extra = {"algo.advantage": "reinforce_pp", "algo.kl_in_reward": True, "algo.kl_coef": 0.05,
             "algo.loss_agg": "seq-mean-token-sum-norm", "train.mini_batches": 1}
    train_rl(load_config("configs/rl/toy-cpu.yaml", _overrides(toy_data, tmp_path / "single", "vila", **extra),
                         RLConfig))
    single = load_model(tmp_path / "single" / "final").state_dict()
    init = init_model("vila", "tiny", seed=0).state_dict()
    assert max(float((single[k] - init[k]).abs().max()) for k in single) > 0
    dp = run_distributed(workers.rl_run, 2, _overrides(
        toy_data, tmp_path / "dp2", "vila", **{**extra, "parallel.dp_size": 2, "train.prompts_per_step": 1}))[0]
    worst = max(float((dp[k] - single[k]).abs().max()) for k in single)
    assert worst < 2e-5, worst
    rows = [[r for r in read_metrics(tmp_path / run / "metrics.jsonl") if "grad_norm" in r] for run in ("single", "dp2")]
    assert rows[0][0]["kl"] == 0 < rows[0][1]["kl"]  # step 1 samples from the reference; step 2 has moved
    for a, b in zip(*rows, strict=True):
        for key in ("grad_norm", "loss", "kl"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), (key, a[key], b[key])


@pytest.mark.distributed
def test_every_rank_of_an_sp_group_samples_its_share(toy_data, tmp_path):
    """Rollout on every rank: under SP 2 with 4 prompts each rank's engine samples 2 of them
    (not rank 0 all 4), both ranks end with the same samples in the same order, and they
    are what one engine sampling the whole draw produces."""
    overrides = _overrides(toy_data, tmp_path / "run", "vila", **{"parallel.sp_size": 2,
                                                                   "train.prompts_per_step": 4})
    ranks = run_distributed(workers.sp_rollout_shares, 2, overrides)
    assert [r["sampled_here"] for r in ranks] == [2, 2]
    assert ranks[0]["tokens"] == ranks[1]["tokens"] and ranks[0]["owners"] == ranks[1]["owners"]
    assert ranks[0]["tokens"] == ranks[0]["alone"]
    assert len(ranks[0]["tokens"]) == 4 * 3  # 4 prompts x rollout.n


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_sp2_with_the_disk_cache_writes_reads_and_trains_as_one_process(toy_data, tmp_path):
    """The SP group encodes a missed video together and one rank stores it (the stored
    embeddings equal one process's); a group that finds every video on disk encodes
    nothing; both end with the single process's weights."""
    from safetensors.torch import load_file

    single_cfg = _overrides(toy_data, tmp_path / "single", "vila", **{"train.embed_cache_dir": tmp_path / "one"})
    train_rl(load_config("configs/rl/toy-cpu.yaml", single_cfg, RLConfig))
    single = load_model(tmp_path / "single" / "final").state_dict()
    for name, cache in (("write", tmp_path / "two"), ("read", tmp_path / "one")):
        sp2 = run_distributed(workers.rl_run, 2, _overrides(toy_data, tmp_path / name, "vila", **{
            "parallel.sp_size": 2, "train.embed_cache_dir": cache}))[0]
        worst = max(float((sp2[k] - single[k]).abs().max()) for k in single)
        assert worst < 2e-5, (name, worst)
        rows = [r for r in read_metrics(tmp_path / name / "metrics.jsonl") if "loss" in r]
        calls = sum(r["media/encoder_calls"] for r in rows)
        assert calls == 0 if name == "read" else calls > 0, (name, calls)
    one, two = ({p.name: load_file(p)["embedding"] for p in (tmp_path / d).rglob("*.safetensors")}
                for d in ("one", "two"))
    assert one.keys() == two.keys() and one
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5)


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_the_hour_long_config_runs_its_layout_at_toy_scale(toy_data, tmp_path):
    """configs/rl/qwen2_5-vl-3b-hour-8gpu.yaml with only sizes and paths changed (a tiny
    qwen2_5_vl, 8 frames, SP 2 instead of 8, CPU, the HF engine: vLLM cannot run this family
    on CPU): its combination of SP, ZeRO-1, activation checkpointing, shared prefix, the disk
    cache and Qwen's frame sampler runs and trains."""
    overrides = tiny_overrides(str(toy_data), str(tmp_path / "run"), **{
        "model.path": None, "model.size": "tiny", "model.device": "cpu", "model.compute_dtype": None,
        "model.video_pixels": None, "data.video_dir": None, "data.num_frames": 8, "data.max_skip_fraction": 0.1,
        "rollout.engine": "hf", "rollout.vllm_max_model_len": None, "rollout.max_new_tokens": 6,
        "train.prompts_per_step": 2, "train.embed_cache_dir": str(tmp_path / "cache"),
        "parallel.sp_size": 2, "run.steps": 2, "run.save_every": 2, "optim.lr": 1e-3,
        "algo.reward_fn": "tests.trainer.reward_fns:by_length"})
    cfg = load_config("configs/rl/qwen2_5-vl-3b-hour-8gpu.yaml", overrides, RLConfig)
    assert (cfg.model.activation_checkpointing, cfg.train.shared_prefix, cfg.parallel.zero_stage) == (True, True, 1)
    final = run_distributed(workers.rl_run_config, 2, "configs/rl/qwen2_5-vl-3b-hour-8gpu.yaml", overrides)[0]
    init = init_model("qwen2_5_vl", "tiny", seed=0).state_dict()
    assert max(float((final[k] - init[k]).abs().max()) for k in init) > 0
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) > 0
