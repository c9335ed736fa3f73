"""The vLLM engine under torch.distributed (2 gloo processes, `toy` vila): one engine per
rank in the trainer's world (vLLM's `external_launcher`), as data parallelism uses it, and
as MR-SP uses it (SP=2: both ranks build one, each samples its share of the group's prompts).

Rollout tokens of vLLM and the HF engine agree only under greedy decoding (their samplers
draw different random numbers), and greedy GRPO groups have zero advantages; so the RL
test compares two vLLM runs whose weight syncs take different paths (replicated
`state_dict` vs FSDP2 gather), where a wrong sync would change the samples, and checks
the trainer's log-probs of vLLM's samples every step. One pair of processes serves both
tests (vLLM's import and engine starts are most of the time).
"""

from __future__ import annotations

import os
import tempfile

import pytest

from harness.config import RLConfig, load_config
from harness.model.build import init_model, load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from tests.helpers import tiny_overrides
from tests.parallel import vllm_workers
from tests.parallel.launch import run_distributed

pytest.importorskip("vllm")
pytestmark = pytest.mark.timeout(900)  # a collective mismatch would otherwise wait on gloo

LOGPROB_TOL = 1e-4  # as tests/rollout/test_vllm_engine.py (measured 1e-6 here)
RUNS = ("sp2", "plain", "zero2", "dapo")


def _overrides(data, out, **extra):
    base = {
        "model.path": None, "model.size": "toy", "run.steps": 2, "run.save_every": 2, "data.eval": None,
        "rollout.engine": "vllm", "rollout.vllm_kv_cache_gib": 0.25, "rollout.n": 3,
        "rollout.max_new_tokens": 6, "train.prompts_per_step": 1, "train.micro_batch": 3,
        "train.mini_batches": 1, "optim.lr": 1e-3, "algo.reward_fn": "tests.trainer.reward_fns:by_length",
        "parallel.dp_size": 2,
    }
    base.update(extra)
    return tiny_overrides(str(data), str(out), **base)


@pytest.fixture(scope="module")
def runs(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm_dist")
    extra = {"sp2": {"parallel.dp_size": 1, "parallel.sp_size": 2}, "plain": {},
             "zero2": {"parallel.zero_stage": 2},
             "dapo": {"algo.dapo": True, "algo.kl_coef": 0.0, "train.prompts_per_step": 2,
                      "algo.reward_fn": "tests.trainer.reward_fns:uniform_for_answer_a"}}
    overrides = [_overrides(toy_data, out / name, **extra[name]) for name in RUNS]
    # the ranks' stderr, to the end of their processes (engines are released at exit)
    with tempfile.TemporaryFile(mode="w+") as err:
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            results = run_distributed(vllm_workers.engines_then_rl_runs, 2, overrides)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        return out, results, err.read()


@pytest.mark.distributed
def test_ranks_with_engines_end_without_a_traceback(runs):
    """The engines' shutdown at process exit destroys the process groups they share; the
    launcher does not destroy them first (it once did: 'Invalid process group specified')."""
    assert "Traceback" not in runs[2], runs[2][-3000:]


@pytest.mark.distributed
def test_one_engine_per_rank_greedy_equals_hf_and_the_world_survives(runs):
    for rank, result in enumerate(runs[1]):
        out = result["engines"]
        assert out["world_vllm"] == 2 and out["tp_ranks"] == [rank]  # vLLM's world is the trainer's
        assert (out["auto"], out["explicit"]) == ("hf", "vllm")
        for phase in ("start", "synced", "sharded"):  # sharded: ZeRO-2 model, gathered for the sync
            assert out[phase]["same_tokens"], (rank, phase)
            assert out[phase]["logp_gap"] < LOGPROB_TOL, (rank, phase)
        assert out["moved"]  # the optimizer step changed greedy decoding, and vLLM followed
        assert out["allreduce_after_close"] == 3.0
        assert out["sharded"]["tokens"] == out["synced"]["tokens"]


@pytest.mark.distributed
def test_dp2_rl_with_vllm_zero2_equals_replicated(runs):
    folder, results, _ = runs
    _sp2, plain, zero2, _dapo = results[0]["rl"]
    for name in ("plain", "zero2"):
        rows = [r for r in read_metrics(folder / name / "metrics.jsonl") if "reward/mean" in r]
        assert len(rows) == 2
        assert all(r["rollout/logp_diff_max"] < LOGPROB_TOL and r["time/sync"] > 0 for r in rows)
    worst = max(float((zero2[k] - plain[k]).abs().max()) for k in plain)
    assert worst < 1e-5, worst
    start = init_model("vila", "toy", seed=0).state_dict()
    assert max(float((plain[k] - start[k]).abs().max()) for k in plain) > 0  # it trained


@pytest.mark.distributed
def test_dp2_rl_with_vllm_samples_and_trains_as_one_process(runs, toy_data, tmp_path):
    """vLLM seeds each request by the prompt's place in the step's global draw: 2 DP ranks of
    1 prompt each sample what one process with both prompts samples (same rewards), and end
    with its weights and its pre-clip gradient norms."""
    folder, results, _ = runs
    plain = results[0]["rl"][1]
    cfg = _overrides(toy_data, tmp_path / "single", **{"parallel.dp_size": 1, "train.prompts_per_step": 2})
    train_rl(load_config("configs/rl/toy-cpu.yaml", cfg, RLConfig))
    single = load_model(tmp_path / "single" / "final").state_dict()
    worst = max(float((plain[k] - single[k]).abs().max()) for k in single)
    assert worst < 2e-5, worst
    rows = [[r for r in read_metrics(f / "metrics.jsonl") if "reward/mean" in r]
            for f in (tmp_path / "single", folder / "plain")]
    assert len(rows[0]) == 2
    for a, b in zip(*rows, strict=True):
        for key in ("reward/mean", "reward/std", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), (key, a[key], b[key])


@pytest.mark.distributed
def test_sp2_rl_with_vllm_engine_on_every_rank(runs):
    """MR-SP with vLLM: SP=2 over the 2 ranks. vLLM's construction is collective, so both
    ranks build an engine; with one prompt per step rank 0 samples it and rank 1's share is
    empty (the gather then carries rank 0's alone); the trainer's SP log-probs of those
    samples equal vLLM's, and the weights move and reach the engine (sync timed)."""
    folder, results, _ = runs
    sp2 = results[0]["rl"][0]
    assert not isinstance(sp2, str), sp2  # the run's error text, when it was refused
    rows = [r for r in read_metrics(folder / "sp2" / "metrics.jsonl") if "reward/mean" in r]
    assert len(rows) == 2
    assert all(r["rollout/logp_diff_max"] < LOGPROB_TOL and r["time/sync"] > 0 for r in rows)
    assert all(r["media/encoder_calls"] == 1 for r in rows)  # one prompt, its video encoded once
    start = init_model("vila", "toy", seed=0).state_dict()
    assert max(float((sp2[k] - start[k]).abs().max()) for k in sp2) > 0  # it trained


@pytest.mark.distributed
def test_dp2_dapo_with_vllm_refills_per_rank(runs):
    """DAPO on 2 DP ranks with vLLM engines: groups of questions keyed "A" have uniform
    rewards and are dropped; the ranks refill unevenly (`data/passed_over` > 0), so one of
    them sits out a sampling round, and both go on stepping together."""
    folder, results, _ = runs
    dapo = results[0]["rl"][3]
    assert not isinstance(dapo, str), dapo
    rows = [r for r in read_metrics(folder / "dapo" / "metrics.jsonl") if "reward/mean" in r]
    assert len(rows) == 2
    assert all(r["rollout/logp_diff_max"] < LOGPROB_TOL and r["reward/std"] > 0 for r in rows)
    assert sum(r["data/dropped_groups"] for r in rows) > 0
    assert sum(r["data/passed_over"] for r in rows) > 0
    start = init_model("vila", "toy", seed=0).state_dict()
    assert max(float((dapo[k] - start[k]).abs().max()) for k in dapo) > 0


@pytest.mark.distributed
def test_a_world_of_one_with_an_engine_ends_cleanly(toy_data, tmp_path):
    """One spawned rank: the engine's world of one is shut down with the engine; the
    launcher then has nothing left to destroy (it once raised, failing the perf memory suite)."""
    from tests.parallel import workers

    state = run_distributed(workers.rl_run, 1, _overrides(toy_data, tmp_path / "one", **{"parallel.dp_size": 1}))[0]
    assert state and all(v.isfinite().all() for v in state.values())
