"""HFEngine on tiny CPU models of both families: batched, left-padded decoding agrees with
the one-prompt reference loop (`VideoLM.generate`) and with the trainer's log-probs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from harness.model.build import init_model
from harness.model.interface import PromptEmbeds, VideoLM
from harness.rollout.engine import RolloutEngine, RolloutOutput, SamplingConfig
from harness.rollout.hf_engine import HFEngine

# (frames, question): different video and text lengths, so the batch needs padding
PROMPT_SPECS = [
    (2, "Why?"),
    (4, "What happens after the red ball moves to the left of the box?"),
    (6, "Count the objects."),
]


def make_prompt(model: VideoLM, seed: int, num_frames: int, question: str) -> PromptEmbeds:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (num_frames, 48, 64, 3), dtype=np.uint8)  # [F, H, W, 3]
    video = model.encode_frames(frames, np.arange(num_frames) * 0.5)
    return model.build_prompt(model.chat_prompt_ids(question), video)


def with_eos_row(model: VideoLM, row: torch.Tensor) -> VideoLM:
    """A copy of `model` whose lm_head row for eos is `row` (the prompts stay valid: the
    embeddings and vision tower are unchanged)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.lm_head.weight[out.tokenizer.eos_token_id] = row
    return out


@pytest.fixture(scope="module", params=["vila", "qwen2_5_vl"])
def model(request) -> VideoLM:
    return init_model(request.param, "tiny", seed=0)


@pytest.fixture(scope="module")
def prompts(model) -> list[PromptEmbeds]:
    with torch.no_grad():
        return [make_prompt(model, k, f, q) for k, (f, q) in enumerate(PROMPT_SPECS)]


@pytest.fixture(scope="module")
def eos_model(model, prompts) -> VideoLM:
    """Random tiny models almost never sample eos (their logits are nearly flat); here the
    eos logit is ~5 along the mean final hidden state, so sampled responses stop at eos
    after varying numbers of steps, and some run to max_new_tokens."""
    p = prompts[1]
    with torch.no_grad():
        hidden = model.hidden_states(
            p.embeds[None], p.positions.unsqueeze(-2), torch.ones(1, len(p), dtype=torch.long)
        )[0]  # [L, D]
    d = hidden.mean(dim=0)  # [D]
    return with_eos_row(model, d / d.norm() ** 2 * 5.0)


def greedy(max_new_tokens: int = 8, n: int = 1) -> SamplingConfig:
    return SamplingConfig(n=n, greedy=True, max_new_tokens=max_new_tokens)


def test_greedy_batch_equals_one_prompt_generate(model, prompts):
    """Left padding, masks and per-row positions are right: each row of the padded batch
    decodes exactly as its prompt alone does (no padding), also when rows finish at
    different steps."""
    assert len({len(p) for p in prompts}) == len(prompts)
    outs = HFEngine(model).generate(prompts, greedy())
    for out, prompt in zip(outs, prompts, strict=True):
        (ref,) = HFEngine(model).generate([prompt], greedy())
        assert torch.equal(out.token_ids, ref.token_ids)
        assert not out.finished and out.token_ids.shape == (8,)

    # make eos beat the 4th greedy token of prompt 1 wherever that token would win
    x = int(outs[1].token_ids[3])
    stopper = with_eos_row(model, model.lm_head.weight[x].detach() * 1.05)
    outs = HFEngine(stopper).generate(prompts, greedy())
    assert outs[1].finished and len(outs[1].token_ids) <= 4
    for out, prompt in zip(outs, prompts, strict=True):
        (ref,) = HFEngine(stopper).generate([prompt], greedy())
        assert torch.equal(out.token_ids, ref.token_ids) and out.finished == ref.finished


def test_logprobs_match_trainer_recomputation(eos_model, prompts):
    outs = HFEngine(eos_model).generate(prompts, SamplingConfig(n=2, max_new_tokens=8, seed=0))
    for out in outs:
        expected = eos_model.response_logprobs(prompts[out.prompt_index], out.token_ids)
        torch.testing.assert_close(out.logprobs, expected.detach(), rtol=0, atol=1e-4)


def test_n_samples_grouped_and_cut_at_eos(eos_model, prompts):
    eos = eos_model.tokenizer.eos_token_id
    # 8 samples per prompt: with eos at roughly a 0.2 chance per step, a mix of finished and
    # unfinished rows is all but certain (4 samples left it to the random init's luck)
    outs = HFEngine(eos_model).generate(prompts, SamplingConfig(n=8, max_new_tokens=8, seed=0))
    assert [(o.prompt_index, o.sample_index) for o in outs] == [
        (i, s) for i in range(3) for s in range(8)
    ]
    for out in outs:
        assert out.token_ids.dtype == torch.long and out.logprobs.dtype == torch.float32
        assert out.token_ids.shape == out.logprobs.shape
        assert int((out.token_ids[:-1] == eos).sum()) == 0  # nothing follows an eos
        if out.finished:
            assert int(out.token_ids[-1]) == eos
        else:
            assert len(out.token_ids) == 8 and int(out.token_ids[-1]) != eos
    assert {o.finished for o in outs} == {True, False}


def test_seed_reproducible_and_seeds_differ(eos_model, prompts):
    engine = HFEngine(eos_model)

    def run(seed: int) -> list[list[int]]:
        outs = engine.generate(prompts, SamplingConfig(n=3, max_new_tokens=6, seed=seed))
        return [o.token_ids.tolist() for o in outs]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_tiny_top_p_equals_greedy(model, prompts):
    engine = HFEngine(model)
    nucleus = engine.generate(prompts, SamplingConfig(n=2, top_p=1e-6, max_new_tokens=6, seed=3))
    argmax = engine.generate(prompts, greedy(max_new_tokens=6, n=2))
    assert [o.token_ids.tolist() for o in nucleus] == [o.token_ids.tolist() for o in argmax]


def _first_step_logits(model: VideoLM, prompt: PromptEmbeds) -> torch.Tensor:
    with torch.no_grad():
        hidden = model.hidden_states(
            prompt.embeds[None],
            prompt.positions.unsqueeze(-2),
            torch.ones(1, len(prompt), dtype=torch.long),
        )  # [1, L, D]
        return model.lm_head(hidden[0, -1]).float()  # [V]


def test_temperature_changes_sampling_but_logprobs_stay_raw(model, prompts):
    engine = HFEngine(model)
    prompt = prompts[0]
    raw = torch.log_softmax(_first_step_logits(model, prompt), dim=-1)  # [V]

    def first_tokens(temperature: float) -> list[RolloutOutput]:
        sampling = SamplingConfig(n=32, temperature=temperature, max_new_tokens=1, seed=0)
        return engine.generate([prompt], sampling)

    cold, hot = first_tokens(0.01), first_tokens(2.0)
    # the tiny model's logits are nearly flat: hot samples spread out, cold ones pile up on
    # the few tokens that hold nearly all of the tempered mass
    mass = torch.softmax(_first_step_logits(model, prompt) / 0.01, dim=-1).sort(descending=True).values
    few = int((mass.cumsum(0) < 0.9999).sum()) + 1
    hot_tokens = {int(o.token_ids[0]) for o in hot}
    assert len({int(o.token_ids[0]) for o in cold}) <= few < len(hot_tokens)
    assert len(hot_tokens) >= 16
    for out in cold + hot:
        token = int(out.token_ids[0])
        assert abs(float(out.logprobs[0]) - float(raw[token])) < 1e-5
    tempered = torch.log_softmax(_first_step_logits(model, prompt) / 0.01, dim=-1)
    assert abs(float(cold[0].logprobs[0]) - float(tempered[int(cold[0].token_ids[0])])) > 0.1


@pytest.mark.parametrize("max_batch", [1, 2, 5])
def test_chunking_gives_the_same_greedy_result(model, prompts, max_batch):
    one = HFEngine(model).generate(prompts, greedy(n=2))
    chunked = HFEngine(model, max_batch=max_batch).generate(prompts, greedy(n=2))
    assert [(o.prompt_index, o.sample_index) for o in chunked] == [
        (o.prompt_index, o.sample_index) for o in one
    ]
    for a, b in zip(one, chunked, strict=True):
        assert torch.equal(a.token_ids, b.token_ids)
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=0, atol=1e-5)


def test_training_flags_restored(model, prompts):
    model.train()
    vision = next(
        m for name, m in model.named_modules() if name.endswith(("vision_tower", "visual"))
    )
    vision.eval()  # a submodule in its own mode (a frozen vision tower) must stay so
    before = {name: m.training for name, m in model.named_modules()}
    assert len(set(before.values())) == 2
    try:
        HFEngine(model).generate(prompts[:1], greedy(max_new_tokens=2))
        assert {name: m.training for name, m in model.named_modules()} == before
        # also when decoding fails: mixing 1-D and M-RoPE positions is refused
        p = prompts[0]
        other = p.positions.expand(3, -1) if p.positions.dim() == 1 else p.positions[0]
        with pytest.raises(ValueError, match="mix 1-D and M-RoPE"):
            HFEngine(model).generate(
                [p, PromptEmbeds(p.embeds, other, p.input_ids, p.spans)], greedy()
            )
        assert {name: m.training for name, m in model.named_modules()} == before
    finally:
        model.eval()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 0),
        ("temperature", 0.0),
        ("temperature", -1.0),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("max_new_tokens", 0),
    ],
)
def test_bad_sampling_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must"):
        SamplingConfig(**{field: value})


def test_greedy_ignores_temperature():
    assert SamplingConfig(greedy=True, temperature=0.0).greedy


def test_sync_weights_shares_the_trainer_model(model):
    engine: RolloutEngine = HFEngine(model)
    engine.sync_weights(model)  # nothing to copy
    with pytest.raises(ValueError, match="different module"):
        engine.sync_weights(torch.nn.Linear(2, 2))


def test_bad_max_batch():
    with pytest.raises(ValueError, match="max_batch"):
        HFEngine(torch.nn.Linear(2, 2), max_batch=0)  # type: ignore[arg-type]


def test_prompt_past_the_models_positions_is_refused(model, prompts):
    """HF would decode past max_position_embeddings without a word (vLLM refuses): here it
    is an error naming the frames and new-token settings."""
    engine = HFEngine(model)
    too_many = model.max_positions - int(prompts[0].positions.max())
    with pytest.raises(ValueError, match="past the model's .* positions"):
        engine.generate(prompts[:1], greedy(max_new_tokens=too_many))


def test_nan_policy_is_a_named_error_not_a_multinomial_crash(model, prompts):
    import copy

    from harness.rollout.engine import RolloutEngineError

    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.lm_head.weight.fill_(float("nan"))
    with pytest.raises(RolloutEngineError, match="logits are not finite"):
        HFEngine(broken).generate(prompts[:1], SamplingConfig(n=2, max_new_tokens=2, seed=0))
