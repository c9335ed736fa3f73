"""The part SFT and RL share (harness/trainer/run.py): one rule for non-finite updates,
checked on a run opened from each recipe's config, with a real model, a real backward, and a
gradient made non-finite as an overflow would make it."""

import math

import pytest
import torch

from harness.config import RLConfig, SFTConfig, load_config
from harness.trainer.run import TrainingDiverged, open_run
from tests.helpers import tiny_overrides

RECIPES = {"sft": ("configs/sft/toy-cpu.yaml", SFTConfig), "rl": ("configs/rl/toy-cpu.yaml", RLConfig)}


def _opened(name, data, out, **extra):
    path, kind = RECIPES[name]
    cfg = load_config(path, tiny_overrides(data, out, **{"model.path": None, "model.size": "tiny", "data.eval": None,
                                                         "optim.warmup_steps": 2, "run.max_bad_steps": 2,
                                                         "run.steps": 4, "run.save_every": 1, **extra}), kind)
    run = open_run(cfg, resume=False, name=name)
    run.start(resume=False)
    return run


def _backward(run) -> float:
    """A real loss of the model on its own tokens, backward; returns the loss."""
    model = run.model
    ids = model.chat_prompt_ids("what moves?")[None]  # [1, L]
    logits = model.lm_head(model.language_model(inputs_embeds=model.embed_tokens(ids)).last_hidden_state)
    loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
    loss.backward()
    return loss.item()


def _weights(run) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in run.model.state_dict().items()}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_finite_loss_with_a_non_finite_gradient_is_one_rule_in_both_recipes(toy_data, tmp_path, recipe):
    run = _opened(recipe, toy_data, tmp_path / recipe)
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    before, lr_before = _weights(run), run.scheduler.get_last_lr()[0]

    loss = _backward(run)
    assert math.isfinite(loss)
    next(p for p in trainable if p.grad is not None).grad[0].fill_(float("inf"))  # as an overflow leaves it
    norm = run.update(loss)
    assert not math.isfinite(norm)
    assert all(p.grad is None for p in trainable)  # the gradients are dropped, not carried over
    after = _weights(run)
    assert all(torch.equal(before[k], after[k]) for k in before)  # not applied
    run.end_step(0, {"loss": loss})
    assert run.bad_steps == 1
    assert run.scheduler.get_last_lr()[0] == lr_before  # the schedule did not advance
    assert not (run.out / "checkpoints").exists()  # a bad step is not checkpointed

    loss = _backward(run)  # a good step applies, resets the count and advances the schedule
    run.update(loss)
    assert any(not torch.equal(before[k], v) for k, v in _weights(run).items())
    run.end_step(1, {"loss": loss})
    assert run.bad_steps == 0 and run.scheduler.get_last_lr()[0] > lr_before
    assert (run.out / "checkpoints").exists()

    for step in (2, 3):  # run.max_bad_steps=2 bad steps in a row stop the run, naming the setting
        _backward(run)
        run.update(float("nan"))
        if step == 2:
            run.end_step(step, {})
    with pytest.raises(TrainingDiverged, match=rf"{recipe}: 2 non-finite losses in a row at step 4.*max_bad_steps"):
        run.end_step(3, {})
