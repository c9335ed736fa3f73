"""The contract every rollout engine keeps (hf_engine.py, vllm_engine.py).

An engine takes prompts that are already embeddings (`PromptEmbeds`: text rows with the
cached video rows spliced in, plus the harness's own 1-D or M-RoPE positions), samples `n`
responses per prompt, and reports each sampled token's log-prob under the model's *raw*
distribution: `log_softmax(logits)` before temperature and top-p. That is what vLLM reports
by default and what the trainer recomputes as the old-policy log-prob, so the two can be
compared token by token; the log-prob of the tempered, truncated sampling distribution is a
different number and is never reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from harness.errors import HarnessError
from harness.model.interface import PromptEmbeds, VideoLM


class RolloutEngineError(HarnessError, RuntimeError):
    """The rollout engine could not start or could not sample; the message says what to set."""

@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. `greedy` takes the argmax (temperature and top_p are then unused);
    otherwise tokens are drawn from softmax(logits / temperature) restricted to the smallest
    top set whose mass reaches `top_p` (the top token is always kept). `seed` makes a call
    reproducible; None draws a fresh seed. `prompt_keys` name each prompt of the call
    across processes and batches (e.g. its position in the step's global draw): a prompt's
    samples are a function of (seed, its key) only, so data-parallel ranks sampling their
    shares draw what one process sampling all would. Default: the prompt's index in the call.
    (The HF engine seeds sample s of prompt key k by (seed, k * n + s).)"""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    greedy: bool = False
    seed: int | None = None
    prompt_keys: tuple[int, ...] | None = None

    def key(self, prompt_index: int) -> int:
        return prompt_index if self.prompt_keys is None else int(self.prompt_keys[prompt_index])

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 when not greedy, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class RolloutOutput:
    """One sampled response (CPU tensors).

    `token_ids` [R] long: ends with a stop token (`VideoLM.stop_token_ids`) when `finished`, else exactly `max_new_tokens` long.
    `logprobs` [R] float32: log_softmax of the raw logits at each step, at the sampled token.
    """

    prompt_index: int
    sample_index: int
    token_ids: torch.Tensor  # [R]
    logprobs: torch.Tensor  # [R]
    finished: bool


class RolloutEngine(Protocol):
    # True when the engine samples from its own copy of the weights (vLLM): the trainer
    # sends them after every optimizer step. False when it samples from the trainer's module.
    copies_weights: bool

    def generate(
        self, prompts: list[PromptEmbeds], sampling: SamplingConfig
    ) -> list[RolloutOutput]:
        """`sampling.n` responses per prompt, grouped: all samples of prompt 0, then of
        prompt 1, ...; `len(prompts) * sampling.n` outputs in all."""
        ...

    def release(self) -> None:
        """The step's sampling is over until the next `sync_weights`: an engine holding
        memory of its own may give it back to the training passes (vLLM's sleep on GPU)."""
        ...

    def sync_weights(self, model: VideoLM, state: Mapping[str, torch.Tensor] | None = None) -> None:
        """Make the engine sample from `model`'s current weights (after an optimizer step).
        `state`: the model's whole state dict when the caller holds the model sharded (the
        run's `Strategy.full_state_dict`); None: `model.state_dict()`."""
        ...
