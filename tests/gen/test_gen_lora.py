"""LoRA for gen-rl (`model.lora_rank`, Flow-GRPO's default way to train SD3.5): only the
adapter trains and is checkpointed, a resumed run is exact, the KL reference is the base
(adapter off), the final folder loads as a plain diffusers pipeline (the adapter fused)
and carries the adapter in diffusers' own LoRA format."""

from __future__ import annotations

import pytest
import torch

from harness.config import ConfigError, load_config
from harness.gen.config import GenRLConfig
from harness.gen.models import GenModel
from harness.gen.train import build_gen_model, train_gen_rl
from tests.gen.test_gen_rl import CONFIGS, _overrides, _rows

LORA = {"model.lora_rank": 4, "optim.lr": 1e-2}


@pytest.mark.parametrize("kind", ["sd3", "wan"])
def test_lora_trains_only_the_adapter_and_resumes_exactly(tmp_path, kind):
    data = tmp_path / "data"
    train_gen_rl(load_config(CONFIGS[kind], _overrides(kind, data, tmp_path / "a", **LORA), GenRLConfig))
    train_gen_rl(load_config(CONFIGS[kind], _overrides(kind, data, tmp_path / "b", **{**LORA, "run.steps": 2}),
                             GenRLConfig))
    train_gen_rl(load_config(CONFIGS[kind], _overrides(kind, data, tmp_path / "b", **LORA), GenRLConfig),
                 resume=True)
    ra, rb = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    for key in ("reward/mean", "loss", "kl", "grad_norm"):
        assert [r[key] for r in ra if key in r] == pytest.approx([r[key] for r in rb if key in r], rel=1e-5,
                                                                 abs=1e-8), key
    ckpt = sorted((tmp_path / "a" / "checkpoints").iterdir())[-1] / "model"
    assert sorted(p.name for p in ckpt.iterdir()) == ["harness_gen.json", "lora.safetensors"]  # the adapter only

    base = GenModel.from_pretrained(tmp_path / "a" / "toy_model").state_dict()
    fused_a = GenModel.from_pretrained(tmp_path / "a" / "final").state_dict()  # a plain pipeline
    fused_b = GenModel.from_pretrained(tmp_path / "b" / "final").state_dict()
    assert fused_a.keys() == base.keys()
    assert all(torch.allclose(fused_a[k], fused_b[k], atol=1e-6) for k in base)
    targets = [k for k in base if ".attn" in k and k.endswith(".weight") and any(
        f".{t}.weight" in k for t in ("to_q", "to_k", "to_v", "to_out.0"))]
    changed = [k for k in base if not torch.equal(fused_a[k], base[k])]
    assert targets and set(changed) <= set(k for k in base if _targeted(k, kind)) and set(changed) & set(targets)


def _targeted(key: str, kind: str) -> bool:
    from harness.gen.models import LORA_TARGETS

    return key.endswith(".weight") and any(f".{t}.weight" in key for t in LORA_TARGETS[kind])


def test_the_reference_is_the_base_and_the_adapter_loads_in_diffusers(tmp_path):
    """After training: the reference model (adapter off) gives the base model's velocity;
    the saved `lora/` folder, loaded by diffusers onto the base transformer, gives the
    trained model's velocity, as the fused final folder does."""
    data = tmp_path / "data"
    cfg = load_config(CONFIGS["sd3"], _overrides("sd3", data, tmp_path / "a", **{**LORA, "run.steps": 2}),
                      GenRLConfig)
    train_gen_rl(cfg)
    run = tmp_path / "a"
    trained = build_gen_model(cfg.model, run / "toy_model")
    adapter = trained.load_trainable(sorted((run / "checkpoints").iterdir())[-1] / "model")  # the adapter alone
    assert adapter and all(".lora_" in k for k in adapter)
    assert not trained.load_state_dict(adapter, strict=False).unexpected_keys
    base = GenModel.from_pretrained(run / "toy_model")
    fused = GenModel.from_pretrained(run / "final")
    adapted = GenModel.from_pretrained(run / "toy_model")
    adapted.pipe.load_lora_weights(run / "final" / "lora")  # diffusers' own LoRA loading
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    s = torch.tensor([0.7, 0.3])
    cond = base.encode_text(["a photo of a red circle in the centre", "a photo of a blue square in the top left"])
    with torch.no_grad():
        v = {name: m.velocity(x, s, cond, None, 1.0) for name, m in (
            ("trained", trained), ("reference", trained.frozen_copy()), ("base", base), ("fused", fused),
            ("adapted", adapted))}
    assert float((v["trained"] - v["base"]).abs().max()) > 1e-3  # the adapter changed the model
    torch.testing.assert_close(v["reference"], v["base"])
    torch.testing.assert_close(v["fused"], v["trained"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(v["adapted"], v["trained"], rtol=1e-4, atol=1e-5)


def test_a_lora_checkpoint_resumes_only_with_its_setting_and_base(tmp_path):
    """Another alpha would silently rescale the adapter (the resume's settings check refuses
    it), another base would silently change the model: the checkpoint records the base (its
    transformer folder's config and files) with the adapter's settings and refuses it."""
    data = tmp_path / "data"
    over = {**LORA, "run.steps": 1, "run.save_every": 1}
    train_gen_rl(load_config(CONFIGS["sd3"], _overrides("sd3", data, tmp_path / "a", **over), GenRLConfig))
    more = {**over, "run.steps": 2}
    with pytest.raises(Exception, match="lora_alpha: None -> 3.0"):
        train_gen_rl(load_config(CONFIGS["sd3"], _overrides("sd3", data, tmp_path / "a", **{
            **more, "model.lora_alpha": 3.0}), GenRLConfig), resume=True)
    config = tmp_path / "a" / "toy_model" / "transformer" / "config.json"
    config.write_text(config.read_text().replace("{", '{"note": "another base", ', 1))
    with pytest.raises(Exception, match="another setting or base"):
        train_gen_rl(load_config(CONFIGS["sd3"], _overrides("sd3", data, tmp_path / "a", **more), GenRLConfig),
                     resume=True)


def test_lora_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="need model.lora_rank"):
        load_config(CONFIGS["sd3"], ["model.lora_alpha=8"], GenRLConfig)
    cfg = load_config(CONFIGS["sd3"], _overrides("sd3", tmp_path / "data", tmp_path / "a", **{
        **LORA, "model.lora_targets": "[attn.nope]"}), GenRLConfig)
    with pytest.raises(ConfigError, match="LoRA targets \\(model.lora_targets\\)"):
        train_gen_rl(cfg)
    with pytest.raises(ConfigError, match="lora_targets is empty"):
        load_config(CONFIGS["sd3"], ["model.lora_rank=4", "model.lora_targets=[]"], GenRLConfig)
