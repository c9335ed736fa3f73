"""GPU smoke suite: the CUDA paths the CPU machines cannot run, each small enough that the
whole suite stays under 8 minutes on one GPU. Small models of the real architectures
(`small`: Qwen2 with head size 64, SigLIP / Qwen2.5-VL vision), random weights, built here.

- NCCL: the process group the recipes use on GPU (NCCL for CUDA tensors, gloo for CPU ones).
- vLLM on CUDA for both families (vila: prompt embeddings; qwen2_5_vl: vLLM's own
  Qwen2.5-VL fed video embeddings, a path only GPUs run): greedy answers and log-probs equal
  the harness's HF engine; sleep releases memory, the weight sync wakes it, answers unchanged.
- The shared-prefix and padding-free passes on CUDA kernels equal separate sequences.
- RL steps with fp32 master weights under bf16 autocast, vLLM sampling and sleeping.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from harness.model.batch import pack_groups, response_logprobs
from harness.model.build import init_model
from harness.rollout.engine import SamplingConfig
from harness.rollout.hf_engine import HFEngine

pytestmark = pytest.mark.gpu
FAMILIES = ["vila", "qwen2_5_vl"]


def _prompts(model, count: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    with torch.no_grad():
        for k in range(count):
            frames = 4 * (k + 1)
            video = model.encode_frames(rng.integers(0, 256, (frames, 64, 96, 3), dtype=np.uint8),
                                        np.arange(frames) * 0.5)
            out.append(model.build_prompt(model.chat_prompt_ids("what happens? " * (k + 1)), video))
    return out


def _nccl_all_reduce(rank: int, world: int) -> float:
    import torch.distributed as dist

    assert dist.get_backend() in ("nccl", "cpu:gloo,cuda:nccl"), dist.get_backend()
    x = torch.full((4,), float(rank + 1), device=f"cuda:{rank}")
    dist.all_reduce(x)
    cpu = torch.ones(2)
    dist.all_reduce(cpu)  # the small CPU counters the recipes reduce go through gloo
    return float(x[0]) + float(cpu[0])


def test_nccl_process_group():
    from harness.parallel.launch import spawn

    world = min(2, torch.cuda.device_count())
    got = spawn(_nccl_all_reduce, world)  # init_distributed's choice on CUDA: cpu:gloo,cuda:nccl
    assert got == [world * (world + 1) / 2 + world] * world


@pytest.mark.parametrize("family", FAMILIES)
def test_vllm_on_cuda_answers_as_hf_and_sleeps(family):
    from harness.rollout.vllm_engine import VLLMEngine

    model = init_model(family, "small", seed=0).to("cuda").eval()
    prompts = _prompts(model)
    greedy = SamplingConfig(greedy=True, max_new_tokens=16)
    reference = HFEngine(model).generate(prompts, greedy)
    engine = VLLMEngine(copy.deepcopy(model), gpu_memory_utilization=0.3, max_model_len=4096, sleep=True)
    try:
        def same(outs):
            for a, b in zip(outs, reference, strict=True):
                assert a.token_ids.tolist() == b.token_ids.tolist()
                assert float((a.logprobs - b.logprobs).abs().max()) < 2e-3  # fp32 CUDA kernels differ slightly

        same(engine.generate(prompts, greedy))
        engine.release()
        assert engine.asleep and engine.last_release_gib > 0.1, engine.last_release_gib
        with pytest.raises(Exception, match="asleep"):
            engine.generate(prompts, greedy)
        engine.sync_weights(model)  # wakes weights, loads them, wakes the KV cache
        same(engine.generate(prompts, greedy))
    finally:
        engine.close()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("compute", [None, torch.bfloat16])
def test_shared_prefix_padding_free_passes_on_cuda(family, compute):
    model = init_model(family, "small", seed=0).to("cuda").eval()
    prompts = _prompts(model)
    rng = np.random.default_rng(1)
    responses = [[torch.from_numpy(rng.integers(5, 500, r)) for r in (7, 3, 12)] for _ in prompts]
    with torch.no_grad(), torch.autocast("cuda", dtype=compute or torch.float32, enabled=compute is not None):
        packed = response_logprobs(model, pack_groups(model, prompts, responses, padding_free=True))  # [N, R]
        alone = [model.response_logprobs(p, r) for p, rs in zip(prompts, responses, strict=True) for r in rs]
    tol = 1e-4 if compute is None else 5e-2
    for n, ref in enumerate(alone):
        assert float((packed[n, : ref.shape[0]] - ref).abs().max()) < tol


def test_rl_steps_bf16_master_weights_vllm_sleeping(tmp_path_factory):
    from harness.config import RLConfig, load_config
    from harness.data.synthetic import synthesize
    from harness.model.build import load_model
    from harness.trainer.metrics import read_metrics
    from harness.trainer.rl import train_rl

    data = tmp_path_factory.mktemp("data")
    synthesize(data, 4, seed=0, minutes=(0.3, 0.3), progress=False)
    out = tmp_path_factory.mktemp("run")
    start = init_model("vila", "small", seed=0)
    start.save_pretrained(out / "start")
    cfg = load_config("configs/rl/toy-cpu.yaml", [
        f"model.path={out / 'start'}", "model.device=cuda", "model.dtype=float32", "model.compute_dtype=bfloat16",
        f"data.dir={data}", "data.eval=null", "data.num_frames=16", f"run.out_dir={out / 'rl'}", "run.steps=2",
        "run.save_every=2", "run.tensorboard=false", "run.progress=false", "rollout.engine=vllm",
        "rollout.vllm_gpu_memory_utilization=0.3", "rollout.vllm_max_model_len=4096", "rollout.vllm_sleep=true",
        "rollout.n=4", "rollout.max_new_tokens=32", "train.prompts_per_step=2", "train.micro_batch=8",
        "optim.lr=1e-5"], RLConfig)
    train_rl(cfg)
    rows = [r for r in read_metrics(out / "rl" / "metrics.jsonl") if "loss" in r]
    assert len(rows) == 2 and all(np.isfinite([r["loss"], r["kl"], r["grad_norm"]]).all() for r in rows)
    assert all(r["rollout/logp_diff_max"] < 0.5 for r in rows)  # bf16 engine vs bf16-autocast trainer
    after = load_model(out / "rl" / "final").state_dict()
    moved = [k for k, v in start.state_dict().items() if k.startswith("llm.") and not torch.equal(v, after[k])]
    assert moved  # fp32 master weights moved at lr 1e-5
