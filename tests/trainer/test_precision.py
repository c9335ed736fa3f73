"""Mixed precision (`model.compute_dtype`): bf16 math over fp32 master weights.

The authors train with lr 1e-6. An AdamW step moves each weight by about lr, far below half
a bf16 ulp of a weight of size ~0.02 (2^-13 / 2 ~ 6e-5), so weights *stored* in bf16 do not
move at all; fp32 master weights under bf16 autocast do.
"""

import math

import pytest
import torch

from harness.config import ConfigError, RLConfig, SFTConfig, load_config
from harness.model.build import init_model, load_model
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from harness.trainer.sft import train_sft
from tests.helpers import tiny_overrides


def _sft(data, out, **extra):
    base = {"run.steps": 1, "run.save_every": 1, "optim.lr": 1e-6, "optim.warmup_steps": 0,
            "optim.weight_decay": 0.0, "train.batch_size": 2, "train.grad_accum": 1, "data.eval": None}
    base.update(extra)
    return load_config("configs/sft/toy-cpu.yaml", tiny_overrides(data, out, **base), SFTConfig)


def _moved_fraction(out, start: dict[str, torch.Tensor]) -> float:
    after = load_model(out / "final").state_dict()  # saved in the storage dtype, read as fp32
    llm = [k for k in start if k.startswith("llm.") and start[k].is_floating_point()]
    moved = sum(int((after[k].float() != start[k].float()).sum()) for k in llm)
    return moved / sum(start[k].numel() for k in llm)


def test_lr_1e6_moves_fp32_master_weights_but_not_bf16_weights(toy_data, tmp_path):
    cfg = _sft(toy_data, tmp_path / "x")
    start = init_model(cfg.model.family, cfg.model.size, seed=cfg.model.seed).state_dict()

    train_sft(_sft(toy_data, tmp_path / "bf16", **{"model.dtype": "bfloat16"}))
    train_sft(_sft(toy_data, tmp_path / "mixed", **{"model.compute_dtype": "bfloat16"}))
    train_sft(_sft(toy_data, tmp_path / "fp32"))

    bf16_start = {k: v.to(torch.bfloat16) for k, v in start.items()}
    # the bf16 run did step (a finite loss, a gradient, an lr): its update, not a skipped
    # step, is what rounds away
    (row,) = [r for r in read_metrics(tmp_path / "bf16" / "metrics.jsonl") if "loss" in r]
    assert math.isfinite(row["loss"]) and row["grad_norm"] > 0 and row["lr"] > 0
    # the update rounds away, except on the few weights within ~1e-4 of zero
    assert _moved_fraction(tmp_path / "bf16", bf16_start) < 0.05
    assert _moved_fraction(tmp_path / "mixed", start) > 0.5  # it lands in the master weights
    # the math really ran in bf16: same data and weights, a slightly different loss
    mixed = read_metrics(tmp_path / "mixed" / "metrics.jsonl")[0]["loss"]
    full = read_metrics(tmp_path / "fp32" / "metrics.jsonl")[0]["loss"]
    assert mixed != full
    assert mixed == pytest.approx(full, rel=0.02)


def test_rl_runs_with_bf16_compute_and_a_bf16_reference(toy_data, tmp_path):
    overrides = tiny_overrides(toy_data, tmp_path / "rl", **{
        "model.path": None, "model.size": "tiny", "model.compute_dtype": "bfloat16", "run.steps": 1,
        "run.save_every": 1, "data.eval": None, "rollout.n": 2, "rollout.max_new_tokens": 4,
        "rollout.engine": "hf", "train.prompts_per_step": 2, "train.micro_batch": 4, "optim.lr": 1e-3,
        "algo.reward_fn": "tests.trainer.reward_fns:by_length"})
    train_rl(load_config("configs/rl/toy-cpu.yaml", overrides, RLConfig))
    (row,) = [r for r in read_metrics(tmp_path / "rl" / "metrics.jsonl") if "loss" in r]
    assert torch.isfinite(torch.tensor([row["loss"], row["kl"]])).all()
    # engine log-probs (bf16 autocast) and the trainer's recomputation (same) agree to bf16 noise
    # (measured ~1.2e-3); scoring against another video or question moves them ~0.025
    assert row["rollout/logp_diff_max"] < 5e-3


def test_compute_dtype_needs_fp32_master_weights():
    with pytest.raises(ConfigError, match="model.dtype=float32"):
        load_config(None, ["model.dtype=bfloat16", "model.compute_dtype=bfloat16"], SFTConfig)
    with pytest.raises(ConfigError, match="model.compute_dtype"):
        load_config(None, ["model.compute_dtype=float16"], SFTConfig)


def test_after_an_update_bf16_passes_use_the_new_weights(toy_data, tmp_path):
    """autocast caches its bf16 casts of the weights for as long as its region lasts, and a
    recipe runs inside one region: after `Run.update` a forward must see the updated weights
    (a stale cast once made every step after the first compute with the starting ones)."""
    from harness.trainer.common import compute_precision
    from harness.trainer.run import open_run

    cfg = load_config("configs/sft/toy-cpu.yaml", tiny_overrides(toy_data, tmp_path / "run", **{
        "model.path": None, "model.size": "tiny", "model.compute_dtype": "bfloat16", "optim.lr": 1e-2,
        "optim.warmup_steps": 0, "data.eval": None}), SFTConfig)
    with compute_precision(cfg.model):
        run = open_run(cfg, resume=False, name="sft")
        run.start(resume=False)
        model = run.model
        ids = model.chat_prompt_ids("what moves?")[None]  # [1, L]

        def logits():
            return model.lm_head(model.language_model(inputs_embeds=model.embed_tokens(ids)).last_hidden_state)

        before = logits()
        before.float().square().mean().backward()
        run.update(1.0)
        after = logits()
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            fresh = logits()
    assert not torch.equal(fresh, before)  # the update moved the model
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)
