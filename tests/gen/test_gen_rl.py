"""`harness gen-rl` (Flow-GRPO): the step loss on fixed tensors equals the hand-computed
value; a run on the toy SD3-style and Wan-style models resumes exactly; DP 2 (gloo) trains
the weights of one process; the text encoders run once per prompt per run; bad settings are
refused before the model is built."""

from __future__ import annotations

import json
import math

import pytest
import torch

from harness.algos.flow_grpo import SDEStep, step_loss
from harness.config import ConfigError, load_config
from harness.gen.config import GenRLConfig
from harness.gen.models import GenModel
from harness.gen.train import train_gen_rl
from tests.parallel.launch import run_distributed

CONFIGS = {"sd3": "configs/gen/toy-image.yaml", "wan": "configs/gen/toy-video.yaml"}


def test_step_loss_hand_value():
    """Two samples, one step: ratios e^0.1 and e^-0.5, advantages 1 and -2, clip 0.2;
    means differ from the reference's by 0.1 / 0.2 everywhere, std_dev_t 0.5, kl_coef 0.1."""
    old = torch.tensor([-1.0, -2.0])
    new = SDEStep(prev_sample=torch.zeros(2, 3), log_prob=old + torch.tensor([0.1, -0.5]),
                  mean=torch.zeros(2, 3), std_dev_t=torch.full((2, 1), 0.5), step_std=torch.full((2, 1), 0.1))
    ref_mean = torch.tensor([[0.1] * 3, [0.2] * 3])
    loss, stats = step_loss(new, old, torch.tensor([1.0, -2.0]), 0.2, ref_mean, kl_coef=0.1)
    # sample 0: ratio 1.105 inside [0.8, 1.2] -> -1.105; sample 1: ratio 0.607, A<0 -> max(1.213, 1.6) = 1.6
    surrogate = -math.exp(0.1) + 1.6
    kl = 0.01 / (2 * 0.25) + 0.04 / (2 * 0.25)  # per sample |dmean|^2 / (2 std^2)
    assert float(loss) == pytest.approx(surrogate + 0.1 * kl)
    assert stats == pytest.approx({"clip": 1.0, "approx_kl": 0.5 * (0.01 + 0.25), "kl": kl})


def _overrides(kind: str, data, out, **extra) -> list[str]:
    base = {"model.size": "tiny", "data.dir": data, "data.synth_items": 40, "run.out_dir": out,
            "run.steps": 4, "run.save_every": 2, "run.eval_every": 0, "run.tensorboard": False,
            "run.progress": False, "run.sample_grid": 2, "sample.num_steps": 3, "sample.eval_num_steps": 3,
            "algo.group_size": 3, "train.prompts_per_step": 2, "train.micro_batch": 4, "sample.batch": 4,
            "optim.lr": 1e-3}
    base.update(extra)
    return [f"{k}={'null' if v is None else v}" for k, v in base.items()]


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["sd3", "wan"])
def test_gen_rl_resumes_exactly_and_writes_samples(tmp_path, kind):
    data = tmp_path / "data"
    a = load_config(CONFIGS[kind], _overrides(kind, data, tmp_path / "a"), GenRLConfig)
    train_gen_rl(a)
    train_gen_rl(load_config(CONFIGS[kind], _overrides(kind, data, tmp_path / "b", **{"run.steps": 2}), GenRLConfig))
    train_gen_rl(load_config(CONFIGS[kind], _overrides(kind, data, tmp_path / "b"), GenRLConfig), resume=True)
    ra, rb = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    steps = [r for r in ra if "loss" in r]
    assert len(steps) == 4 and all(math.isfinite(r["loss"]) and r["kl"] >= 0 for r in steps)
    for key in ("reward/mean", "loss", "kl", "grad_norm"):
        assert [r[key] for r in ra if key in r] == pytest.approx([r[key] for r in rb if key in r], rel=1e-5,
                                                                 abs=1e-8), key
    wa = GenModel.from_pretrained(tmp_path / "a" / "final").state_dict()
    wb = GenModel.from_pretrained(tmp_path / "b" / "final").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    start = GenModel.from_pretrained(tmp_path / "a" / "final")  # a diffusers folder: the whole pipeline
    assert start.kind == kind
    ckpt = sorted((tmp_path / "a" / "checkpoints").iterdir())[-1] / "model"
    assert sorted(p.name for p in ckpt.iterdir()) == ["harness_gen.json", "transformer"]  # what trains, only
    shots = sorted(p.name for p in (tmp_path / "a" / "samples").iterdir())
    want = {"sd3": ["after.png", "after.txt", "before.png", "before.txt"],
            "wan": ["after.gif", "after.png", "after.txt", "before.gif", "before.png", "before.txt"]}[kind]
    assert shots == want
    summary = json.loads((tmp_path / "a" / "eval.json").read_text())
    low = -0.5 if kind == "sd3" else 0.0  # shape_match's contrast term may be negative
    assert summary["steps"] == 4 and all(low <= summary[k] <= 1 for k in ("before", "after"))
    assert summary == json.loads((tmp_path / "b" / "eval.json").read_text())  # the resumed run kept its "before"


def test_text_encoders_run_once_per_prompt(tmp_path):
    """4 training prompts, 2 per step: after the first epoch every prompt is cached."""
    (tmp_path / "data").mkdir()
    lines = [{"prompt": f"a photo of a {c} square in the top left"} for c in ("red", "green", "blue", "white")]
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = load_config(CONFIGS["sd3"], _overrides("sd3", tmp_path / "data", tmp_path / "run", **{
        "data.synth_items": 0, "data.eval": None, "run.steps": 4}), GenRLConfig)
    train_gen_rl(cfg)
    calls = [r["text/encoder_calls"] for r in _rows(tmp_path / "run") if "loss" in r]
    assert calls == [2.0, 2.0, 0.0, 0.0]


def test_bad_settings_are_refused_before_the_model(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"prompt": "a photo of a bus below a cat"}\n')
    cfg = load_config(CONFIGS["sd3"], _overrides("sd3", tmp_path / "data", tmp_path / "run", **{
        "data.synth_items": 0, "data.eval": None}), GenRLConfig)
    with pytest.raises(ConfigError, match="cannot score 1 of 1 prompts"):
        train_gen_rl(cfg)
    for bad, match in ((["sample.frames=5"], "sample.frames is for video"),
                       (["algo.group_size=1"], "group_size must be >= 2"),
                       (["sample.noise_level=0"], "ODE")):
        with pytest.raises(ConfigError, match=match):
            load_config(CONFIGS["sd3"], bad, GenRLConfig)


def _dp_worker(rank: int, world: int, kind: str, overrides: list[str]) -> dict:
    cfg = load_config(CONFIGS[kind], overrides, GenRLConfig)
    train_gen_rl(cfg)
    if rank:
        return {}
    return {k: v.clone() for k, v in GenModel.from_pretrained(cfg.run.out_dir + "/final").state_dict().items()}


@pytest.mark.distributed
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("kind", "zero", "lora"), [("sd3", 0, 0), ("wan", 2, 0), ("sd3", 3, 0), ("wan", 3, 4)])
def test_dp2_trains_the_weights_of_one_process(tmp_path, kind, zero, lora):
    """Each of 2 ranks samples one prompt's group (keys by its place in the global draw);
    advantages use the std of both ranks' rewards; gradients are summed over ranks. Under
    ZeRO-2/3 (FSDP2 units: each transformer block inside the transformer's own unit) the
    weights are those of one process too, and the final folder is the whole pipeline; with
    a LoRA adapter (frozen base and trainable adapter in the same units) as well."""
    data = tmp_path / "data"
    extra = {"model.lora_rank": lora, "optim.lr": 1e-2} if lora else {}
    one = load_config(CONFIGS[kind], _overrides(kind, data, tmp_path / "one", **{"run.steps": 2, **extra}),
                      GenRLConfig)
    train_gen_rl(one)
    single = GenModel.from_pretrained(tmp_path / "one" / "final").state_dict()
    dp2 = run_distributed(_dp_worker, 2, kind, _overrides(kind, data, tmp_path / "dp2", **{
        "run.steps": 2, "parallel.dp_size": 2, "parallel.zero_stage": zero, **extra}))[0]
    from harness.gen.toy import init_gen_model

    init = init_gen_model(kind, "tiny", seed=0).state_dict()
    assert max(float((single[k] - v).abs().max()) for k, v in init.items()) > 1e-4  # the steps trained
    assert dp2.keys() == single.keys()
    worst = max(float((single[k] - v).abs().max()) for k, v in dp2.items())
    assert worst < 2e-5, worst
    for key in ("reward/mean", "loss"):
        assert [r[key] for r in _rows(tmp_path / "one") if key in r] == pytest.approx(
            [r[key] for r in _rows(tmp_path / "dp2") if key in r], rel=1e-4, abs=1e-7), key
