"""The narrow model interface the adapters use, and its implementation by harness models.

    model.encode(clip)       -> MediaEmbeds     decoded frames -> video embeddings (once per video)
    model.generate(queries)  -> list[str]       batched greedy answers to (video, prompt) pairs
    model.describe()         -> dict            what the results' protocol records

A query's video is either decoded frames (`VideoClip`) or embeddings already encoded
(`MediaEmbeds`, e.g. from `encode` or an embedding cache), so one video's frames are encoded
once for all its questions. Prompts go through the model's own chat template with the video
before the text (`VideoLM.chat_prompt_ids`), then through a rollout engine with greedy
decoding.

Engines: "hf" is the harness's HF engine (harness/rollout/hf_engine.py). "vllm" is the
harness's in-process vLLM engine (harness/rollout/vllm_engine.py, prompt embeddings in) and
fails with the reason when it cannot run the model here (not installed, unsupported head
size on CPU, ...). "auto" tries vLLM and, when it cannot be built, logs
"falling back to HF engine: <reason>" and records `hf (fallback from vllm: <reason>)` as
the engine, so a results file always says which engine produced it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.data.video import VideoClip
from harness.model.interface import MediaEmbeds, VideoLM
from harness.rollout.engine import SamplingConfig

log = logging.getLogger(__name__)

ENGINES = ("hf", "vllm", "auto")


@dataclass
class VideoQuery:
    prompt: str
    video: VideoClip | MediaEmbeds | None  # None: a text-only question

def build_engine(model: VideoLM, choice: str, max_batch: int) -> tuple[object, str]:
    """(engine, the engine's name as results record it) for `choice` in ENGINES."""
    if choice not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {choice!r}")
    from harness.rollout.hf_engine import HFEngine

    if choice == "hf":
        return HFEngine(model, max_batch=max_batch), "hf"
    try:
        from harness.rollout.vllm_engine import VLLMEngine, vllm_unavailable_reason
    except ImportError as err:
        reason = f"no vLLM engine in this checkout ({err})"
    else:
        reason = vllm_unavailable_reason(model)
        if reason is None:
            try:
                return VLLMEngine(model), "vllm"
            except Exception as err:  # noqa: BLE001 - any failure to start vLLM is reported below
                reason = f"{type(err).__name__}: {err}"
    if choice == "vllm":
        raise RuntimeError(f"engine 'vllm' is not available: {reason}")
    log.warning("falling back to HF engine: %s", reason)
    return HFEngine(model, max_batch=max_batch), f"hf (fallback from vllm: {reason})"


def _device(choice: str) -> torch.device:
    """auto: this process's GPU (LOCAL_RANK under torchrun) when CUDA is there, else the CPU."""
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {choice!r}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no CUDA device (harness doctor tells why)")
    import os

    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


# What `harness sft`, `harness rl` and `harness model init` write (harness/model/build.py).
CHECKPOINT_LAYOUT = "llm/ + vision_tower/ + mm_projector/ for vila, or a config.json with model_type qwen2_5_vl"


def check_checkpoint_folder(path: Path) -> None:
    """Refuse a --model that is not a checkpoint folder, naming what one holds."""
    from harness.model.build import detect_family

    if not path.exists():
        raise FileNotFoundError(f"--model {path} does not exist; give a model checkpoint folder (one holds "
                                f"{CHECKPOINT_LAYOUT})")
    if path.is_file():
        raise ValueError(f"--model {path} is a file, not a model checkpoint folder (one holds {CHECKPOINT_LAYOUT})")
    if path.is_dir() and not any(path.iterdir()):
        raise ValueError(f"--model {path} is an empty folder, not a model checkpoint folder (one holds "
                         f"{CHECKPOINT_LAYOUT})")
    try:
        detect_family(path)
    except ValueError as err:  # a layout no loader reads; the message lists the ones they do
        raise ValueError(f"--model {err}") from err


class HarnessVLM:
    """`VideoLM` + rollout engine behind the interface above."""

    def __init__(self, model: VideoLM | str | Path, engine: str = "hf", max_new_tokens: int = 1024,
                 batch_size: int = 8, system_prompt: str | None = None, device: str = "auto",
                 sp_group: torch.distributed.ProcessGroup | None = None) -> None:
        """`device` (a checkpoint path only): auto = this process's GPU (bf16) when there is
        one, else the CPU (fp32). `sp_group`: every video's frames encoded across the group
        and each prompt's sequence split over it (sequence-parallel prefill and decoding,
        harness/rollout/sp_engine.py): one long question on several GPUs."""
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(f"batch_size and max_new_tokens must be >= 1, got {batch_size}, {max_new_tokens}")
        # What is at the path, not the path: predictions of other weights are never reused.
        if isinstance(model, (str, Path)):
            from harness.files import folder_fingerprint
            from harness.model.build import load_model

            check_checkpoint_folder(Path(model))  # before fingerprinting: that reads every file
            self.model_path = str(Path(model).resolve())
            self.weights = folder_fingerprint(model)[:16]
            where = _device(device)
            model = load_model(model, dtype=torch.bfloat16 if where.type == "cuda" else torch.float32).to(where)
        else:
            from harness.data.embed_cache import weights_fingerprint

            self.model_path = getattr(model, "name_or_path", None) or "<in-memory model>"
            self.weights = weights_fingerprint(model.state_dict())[:16]
        self.model = model.eval()
        self.sp_group = sp_group
        if sp_group is None:
            self.engine, self.engine_name = build_engine(self.model, engine, batch_size)
        elif engine != "hf":
            raise ValueError(f"--engine {engine} under torchrun: the sequence-parallel evaluation decodes with the "
                             f"harness's own engine (--engine hf)")
        else:
            from harness.rollout.sp_engine import SPGreedyEngine

            self.engine = SPGreedyEngine(self.model, sp_group)
            self.engine_name = f"hf (sequence parallel over {torch.distributed.get_world_size(sp_group)} ranks)"
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt

    @property
    def frames_per_unit(self) -> int:
        return self.model.frames_per_unit

    def describe(self) -> dict:
        return {
            "model_path": self.model_path, "weights": self.weights, "family": self.model.family,
            "engine": self.engine_name, "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "max_new_tokens": self.max_new_tokens, "decoding": "greedy", "batch_size": self.batch_size,
            "system_prompt": self.system_prompt,
        }

    @torch.no_grad()
    def encode(self, clip: VideoClip) -> MediaEmbeds:
        """The video's embeddings; with an SP group each rank encodes its share of the
        frames and every rank gets all of them (MR-SP stage 1)."""
        return self.model.encode_frames(clip.frames, clip.timestamps, clip.frame_seconds, self.sp_group)

    @torch.no_grad()
    def generate(self, queries: list[VideoQuery]) -> list[str]:
        sampling = SamplingConfig(greedy=True, max_new_tokens=self.max_new_tokens)
        texts: list[str] = []
        for start in range(0, len(queries), self.batch_size):
            chunk = queries[start : start + self.batch_size]
            prompts = []
            for q in chunk:
                if q.video is None:
                    ids = self.model.chat_prompt_ids(q.prompt, system=self.system_prompt, media=())
                    prompts.append(self.model.build_prompt(ids))
                    continue
                video = q.video if isinstance(q.video, MediaEmbeds) else self.encode(q.video)
                ids = self.model.chat_prompt_ids(q.prompt, system=self.system_prompt)
                prompts.append(self.model.build_prompt(ids, video))
            outputs = self.engine.generate(prompts, sampling)
            tok = self.model.tokenizer
            texts += [tok.decode(o.token_ids, skip_special_tokens=True) for o in outputs]
        return texts
