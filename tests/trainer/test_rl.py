"""The RL recipe on a few steps: encode-once accounting, baseline equivalence, resume,
failing reward functions, DAPO, config checks."""

import math

import pytest
import torch

from harness.config import ConfigError, RLConfig, load_config
from harness.data.dataset import question_text
from harness.data.records import read_jsonl
from harness.model.build import load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from tests.helpers import tiny_overrides

PROMPTS, N = 2, 3


def _cfg(data, out, **extra):
    base = {
        "model.path": None, "model.size": "tiny", "run.steps": 2, "run.save_every": 1, "data.eval": None,
        "rollout.n": N, "rollout.max_new_tokens": 6, "train.prompts_per_step": PROMPTS,
        "train.micro_batch": 4, "train.mini_batches": 2, "optim.lr": 1e-3,
        "algo.reward_fn": "tests.trainer.reward_fns:by_length",
    }
    base.update(extra)
    return load_config("configs/rl/toy-cpu.yaml", tiny_overrides(data, out, **base), RLConfig)


def _train_rows(out):
    return [r for r in read_metrics(out / "metrics.jsonl") if "reward/mean" in r]


def test_video_encoded_once_per_prompt_per_step(toy_data, tmp_path):
    train_rl(_cfg(toy_data, tmp_path / "cached"))
    rows = _train_rows(tmp_path / "cached")
    assert [r["media/encoder_calls"] for r in rows] == [PROMPTS] * 2
    assert all(r["time/encode"] > 0 for r in rows)
    assert all(r["reward/std"] > 0 for r in rows)  # the length reward varies: real updates


def test_baseline_reencodes_everywhere_and_computes_the_same(toy_data, tmp_path):
    """Without the cache every rollout, old/ref log-prob and update pass encodes again
    (4 passes x N samples per prompt); the numbers are identical, only the cost differs."""
    train_rl(_cfg(toy_data, tmp_path / "cached"))
    train_rl(_cfg(toy_data, tmp_path / "base", **{"train.cache_video_embeds": False, "train.shared_prefix": False}))
    cached, base = _train_rows(tmp_path / "cached"), _train_rows(tmp_path / "base")
    assert [r["media/encoder_calls"] for r in base] == [PROMPTS * N * 4] * 2
    for key in ("reward/mean", "loss", "kl", "response/length_mean"):
        assert [r[key] for r in cached] == pytest.approx([r[key] for r in base], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("micro", [4, 6])
def test_shared_prefix_steps_equal_one_row_per_response(toy_data, tmp_path, micro):
    """A prompt's responses behind one copy of it (whole groups per micro-batch, and groups
    split across micro-batches) train exactly as one row per response."""
    train_rl(_cfg(toy_data, tmp_path / "rows", **{"train.shared_prefix": False, "train.micro_batch": micro}))
    train_rl(_cfg(toy_data, tmp_path / "shared", **{"train.micro_batch": micro}))
    rows, shared = _train_rows(tmp_path / "rows"), _train_rows(tmp_path / "shared")
    for key in ("reward/mean", "loss", "kl", "entropy", "grad_norm", "rollout/logp_diff_max"):
        assert [r[key] for r in shared] == pytest.approx([r[key] for r in rows], rel=1e-5, abs=1e-6), key
    wa = load_model(tmp_path / "rows" / "final").state_dict()
    wb = load_model(tmp_path / "shared" / "final").state_dict()
    # Adam divides each gradient by its own running scale, so float-order noise in a
    # near-zero gradient can move a weight by a visible part of one lr=1e-3 step
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 2e-5


@pytest.mark.parametrize("shared", [False, True])
def test_padding_free_steps_equal_padded_rows(toy_data, tmp_path, shared):
    """A micro-batch's groups in one unpadded row train exactly as right-padded rows (the
    rows differ in length: the questions do)."""
    extra = {"train.shared_prefix": shared, "train.micro_batch": 6}
    train_rl(_cfg(toy_data, tmp_path / "padded", **{**extra, "train.padding_free": False}))
    train_rl(_cfg(toy_data, tmp_path / "free", **extra))
    padded, free = _train_rows(tmp_path / "padded"), _train_rows(tmp_path / "free")
    questions = {len(question_text(r)) for r in read_jsonl(toy_data / "rl.jsonl")}
    assert len(questions) > 1  # padded rows held padding
    for key in ("reward/mean", "loss", "kl", "entropy", "grad_norm"):
        assert [r[key] for r in free] == pytest.approx([r[key] for r in padded], rel=1e-5, abs=1e-6), key


def test_rollout_and_trainer_logprobs_agree(toy_data, tmp_path):
    train_rl(_cfg(toy_data, tmp_path / "run"))
    rows = _train_rows(tmp_path / "run")
    assert len(rows) == 2  # the loop below must check something
    for row in rows:
        assert row["rollout/logp_diff_max"] < 1e-4


def test_resume_continues_exactly(toy_data, tmp_path):
    train_rl(_cfg(toy_data, tmp_path / "a", **{"run.steps": 4}))
    train_rl(_cfg(toy_data, tmp_path / "b", **{"run.steps": 2}))
    train_rl(_cfg(toy_data, tmp_path / "b", **{"run.steps": 4}), resume=True)
    a, b = _train_rows(tmp_path / "a"), _train_rows(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for key in ("reward/mean", "loss", "kl"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-5, abs=1e-7), key
    wa = load_model(tmp_path / "a" / "final").state_dict()
    wb = load_model(tmp_path / "b" / "final").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_failing_reward_function_counts_and_goes_on(toy_data, tmp_path):
    train_rl(_cfg(toy_data, tmp_path / "run", **{"algo.reward_fn": "tests.trainer.reward_fns:sometimes_raises",
                                                 "algo.max_reward_error_fraction": 1.0}))
    rows = _train_rows(tmp_path / "run")
    assert len(rows) == 2 and sum(r["reward/errors"] for r in rows) > 0


def test_a_reward_function_failing_past_its_budget_stops_the_run(toy_data, tmp_path, capsys):
    """Failing on every sample used to finish with rc 0 and no learning signal."""
    from harness.cli import main

    argv = ["rl", "--config", "configs/rl/toy-cpu.yaml", *tiny_overrides(toy_data, tmp_path / "run", **{
        "model.path": None, "model.size": "tiny", "run.steps": 2, "data.eval": None, "rollout.n": 2,
        "rollout.max_new_tokens": 4, "train.prompts_per_step": 2, "train.micro_batch": 4,
        "algo.reward_fn": "tests.trainer.reward_fns:always_raises"})]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "failed on 4 of 4 samples" in err and "always_raises" in err and "broken on purpose" in err


def test_dapo_keeps_only_informative_groups(toy_data, tmp_path):
    """Questions keyed "A" get the same reward for every sample: DAPO must drop those groups
    (counted), refill, and train only on groups whose rewards differ."""
    train_rl(_cfg(toy_data, tmp_path / "run", **{"algo.dapo": True, "algo.kl_coef": 0.0, "algo.clip_high": 0.28,
                                                 "algo.reward_fn": "tests.trainer.reward_fns:uniform_for_answer_a"}))
    rows = _train_rows(tmp_path / "run")
    assert len(rows) == 2 and sum(r["data/dropped_groups"] for r in rows) > 0
    for row in rows:
        assert row["reward/mixed_groups"] == 1.0  # every group kept carries a signal
        assert 1 <= row["data/prompts"] <= PROMPTS


def test_cache_with_trainable_vision_is_refused(toy_data, tmp_path):
    with pytest.raises(ConfigError, match="frozen vision tower"):
        _cfg(toy_data, tmp_path / "run", **{"train.freeze_vision": False})


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'rollout.temperature'"):
        load_config(None, ["rollout.temprature=0.5"], RLConfig)
    with pytest.raises(ConfigError, match="rollout.n must be >= 2"):
        load_config(None, ["rollout.n=1"], RLConfig)
    with pytest.raises(ConfigError, match="must divide"):
        load_config(None, ["train.prompts_per_step=3", "rollout.n=3", "train.mini_batches=2"], RLConfig)


def test_minibatch_split_is_exact_so_every_dp_rank_runs_the_same_number():
    from harness.trainer.rl_update import _split

    assert [len(r) for r in _split(5, 4)] == [1, 1, 1, 2]  # ceil-sized chunks would give 3
    assert [(r.start, r.stop) for r in _split(6, 2)] == [(0, 3), (3, 6)]
    assert sum(len(r) for r in _split(7, 3)) == 7 and len(_split(7, 3)) == 3


def _samples(rewards, lengths, groups):
    from harness.trainer.rl_collect import PromptItem, Sample

    items = {g: PromptItem(record=None, media=[], input_ids=torch.zeros(1, dtype=torch.long), position=g)
             for g in set(groups)}
    return [Sample(items[g], torch.zeros(n, dtype=torch.long), torch.zeros(n), "", reward=r)
            for r, n, g in zip(rewards, lengths, groups, strict=True)]


def test_kl_in_reward_penalises_each_sample_by_its_summed_kl():
    """Group 0: both answers right (reward 1), no signal without the KL. With the KL as a
    reward penalty (k1 = old - ref, coefficient 0.5) the first sample's summed KL is 0 and
    the second's 0.2 (0.1 + 0.1; padding beyond its 2 tokens ignored): scores 1.0 and 0.9,
    GRPO advantages +-0.05 / std(1.0, 0.9) = +-0.7071."""
    from harness.config import AlgoConfig
    from harness.parallel.groups import SINGLE_PROCESS
    from harness.trainer.rl_update import advantages

    samples = _samples([1.0, 1.0], [2, 2], [0, 0])
    old = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.1, 9.0]])  # [N, R]; 9.0 is padding
    ref = torch.zeros(2, 3)
    plain, stats = advantages(samples, old, ref, AlgoConfig(kl_in_reward=False), SINGLE_PROCESS)
    assert torch.equal(plain, torch.zeros(2, 3)) and stats == {}
    adv, stats = advantages(samples, old, ref, AlgoConfig(kl_in_reward=True, kl_coef=0.5, kl_kind="k1"),
                            SINGLE_PROCESS)
    s = 0.05 / math.sqrt(2 * 0.05**2)  # deviation / unbiased std
    torch.testing.assert_close(adv, torch.tensor([[s, s, 0.0], [-s, -s, 0.0]]), rtol=0, atol=1e-4)
    assert stats["kl"] == pytest.approx(0.2 / 4)  # mean k1 over the 4 response tokens


def test_dapo_filters_by_name():
    """`algo.dapo_filter`: distinct drops every all-equal group; mean_band (the authors')
    keeps an all-equal group at a mean inside (0.01, 0.99)."""
    from harness.config import AlgoConfig
    from harness.trainer.rl_collect import _informative

    samples = _samples([0.9, 0.9, 1.0, 0.1], [1] * 4, [0, 0, 1, 1])
    assert _informative(samples, AlgoConfig(dapo_filter="distinct")).tolist() == [False, False, True, True]
    assert _informative(samples, AlgoConfig(dapo_filter="mean_band")).tolist() == [True, True, True, True]
    assert _informative(samples, AlgoConfig(dapo_filter="mean_band", dapo_band=(0.01, 0.5))).tolist() == [
        False, False, False, False]


def test_dapo_with_no_learning_signal_stops_with_the_reason(toy_data, tmp_path, capsys):
    from harness.cli import main

    argv = ["rl", "--config", "configs/rl/toy-cpu.yaml", *tiny_overrides(toy_data, tmp_path / "run", **{
        "model.path": None, "model.size": "tiny", "run.steps": 1, "data.eval": None, "rollout.n": 2,
        "rollout.max_new_tokens": 4, "train.prompts_per_step": 1, "algo.dapo": True,
        "algo.reward_fn": "tests.trainer.reward_fns:constant"})]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "DAPO dropped every group" in err and "algo.dapo=false" in err and "Traceback" not in err


def test_ctrl_c_is_one_line_with_how_to_go_on(toy_data, tmp_path, capsys):
    from harness.cli import main

    argv = ["rl", "--config", "configs/rl/toy-cpu.yaml", *tiny_overrides(toy_data, tmp_path / "run", **{
        "model.path": None, "model.size": "tiny", "run.steps": 1, "data.eval": None, "rollout.n": 2,
        "rollout.max_new_tokens": 4, "train.prompts_per_step": 1,
        "algo.reward_fn": "tests.trainer.reward_fns:interrupts"})]
    assert main(argv) == 130
    assert "interrupted; `--resume` continues" in capsys.readouterr().err
