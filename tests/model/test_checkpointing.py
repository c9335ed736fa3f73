"""Activation checkpointing (`model.activation_checkpointing`): the decoder layers really are
recomputed in backward, and gradients equal those of the stored activations, on the
shared-prefix rows, for both families."""

import numpy as np
import pytest
import torch

from harness.config import ModelConfig
from harness.model.batch import pack_groups, response_logprobs
from harness.model.build import init_model
from harness.trainer.common import build_model


def _rows(model, seed=0):
    rng = np.random.default_rng(seed)
    frames = 4
    video = model.encode_frames(rng.integers(0, 256, (frames, 32, 48, 3), dtype=np.uint8), np.arange(frames) * 0.5)
    prompts = [model.build_prompt(model.chat_prompt_ids("q" * k), video) for k in (3, 9)]
    responses = [[torch.from_numpy(rng.integers(5, 500, r)) for r in rs] for rs in ((4, 7, 2), (5,))]
    return pack_groups(model, prompts, responses)


def _grads_and_layer_calls(model, weights):
    model.train().zero_grad()
    calls = []
    # a pre-hook: recomputation stops early, once it has what backward needs (torch's default)
    hook = model.language_model.layers[0].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        (response_logprobs(model, _rows(model)) * weights).sum().backward()
    finally:
        hook.remove()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)


@pytest.mark.parametrize("family", ["vila", "qwen2_5_vl"])
def test_checkpointed_layers_recompute_and_give_the_same_gradients(family):
    model = init_model(family, "tiny", seed=0)
    weights = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    stored, calls_stored = _grads_and_layer_calls(model, weights)
    model.set_activation_checkpointing(True)
    recomputed, calls_recomputed = _grads_and_layer_calls(model, weights)
    assert (calls_stored, calls_recomputed) == (1, 2)  # forward, and forward again in backward
    assert stored.keys() == recomputed.keys()
    for name, g in stored.items():
        torch.testing.assert_close(recomputed[name], g, rtol=0, atol=1e-6, msg=name)
    model.set_activation_checkpointing(False)
    assert _grads_and_layer_calls(model, weights)[1] == 1


def test_the_config_switch_reaches_the_model():
    on = build_model(ModelConfig(family="vila", size="tiny", activation_checkpointing=True))
    off = build_model(ModelConfig(family="vila", size="tiny"))
    assert on.language_model.gradient_checkpointing and not off.language_model.gradient_checkpointing
