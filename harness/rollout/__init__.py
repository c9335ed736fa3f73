"""Rollout engines: sample G responses per prompt from prompt embeddings (docs/design.md, "One RL step")."""

from __future__ import annotations

import logging

import torch.distributed as dist

from harness.config import RolloutConfig
from harness.model.interface import VideoLM
from harness.rollout.engine import RolloutEngine, RolloutOutput, SamplingConfig
from harness.rollout.hf_engine import HFEngine
from harness.rollout.vllm_engine import RolloutEngineError, VLLMEngine, vllm_unavailable_reason

__all__ = [
    "HFEngine", "RolloutEngine", "RolloutEngineError", "RolloutOutput", "SamplingConfig", "VLLMEngine",
    "build_engine", "choose_engine",
]
log = logging.getLogger(__name__)


def choose_engine(choice: str, model: VideoLM) -> str:
    """`rollout.engine` -> "vllm" or "hf". `auto` takes vLLM wherever it can run `model`
    and says why when it cannot; an explicit `vllm` that cannot run is an error.

    Under torch.distributed (world size > 1) `auto` stays on HF: vLLM engines there are
    built on every rank together (vllm_engine.py; the RL recipe does so for DP and SP
    layouts, each rank sampling its share of its SP group's prompts), a collective start that `vllm` must ask for
    explicitly (tested: dp=2, and dp=1 x sp=2)."""
    if choice == "hf":
        return "hf"
    reason = vllm_unavailable_reason(model)
    if reason is None and choice == "auto" and dist.is_initialized() and dist.get_world_size() > 1:
        reason = ("auto does not start vLLM under torch.distributed; set rollout.engine=vllm "
                  "(one engine per rank)")
    if choice == "vllm":
        if reason is not None:
            raise RolloutEngineError(f"rollout.engine=vllm cannot run here: {reason}; set rollout.engine=hf")
        return "vllm"
    if reason is not None:
        log.info("rollout.engine=auto: using the HF engine: %s", reason)
        return "hf"
    log.info("rollout.engine=auto: using the vLLM engine")
    return "vllm"


def build_engine(cfg: RolloutConfig, model: VideoLM, seed: int = 0, dtype: str | None = None,
                 kind: str | None = None, state=None) -> HFEngine | VLLMEngine:
    """The engine `cfg.engine` names (or `kind`, already chosen with `choose_engine`),
    sampling from `model`'s current weights. `dtype`: the vLLM engine's weights (None: the
    model's; the compute dtype over fp32 master weights). `state`: the model's whole state
    dict when the caller holds it sharded (an engine that copies weights starts from it)."""
    if (kind or choose_engine(cfg.engine, model)) == "hf":
        return HFEngine(model)
    return VLLMEngine(
        model,
        state=state,
        kv_cache_gib=cfg.vllm_kv_cache_gib,
        gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        tensor_parallel_size=cfg.vllm_tensor_parallel_size,
        max_model_len=cfg.vllm_max_model_len,
        seed=seed,
        dtype=dtype,
        sleep=cfg.vllm_sleep,
    )
