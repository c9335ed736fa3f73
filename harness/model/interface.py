"""The one interface both model families implement.

A video goes through three steps, kept apart so that MR-SP can split and cache them:

1. `preprocess(frames, timestamps)` -> `VideoPixels`: resize/normalise/patchify into
   *units* that are encoded independently (a frame for `vila`; a temporal patch of two
   frames for `qwen2_5_vl`). Units are the grain at which frames are split across ranks.
2. `encode_video(pixels)` -> `VideoEmbeds` with `[U, T, D]` rows (T tokens per unit).
   Encoding a subset of units gives exactly those rows of encoding all of them.
3. `build_prompt(input_ids, video)` -> `PromptEmbeds`: the prompt's text
   embeddings with the video's rows spliced in at the single video placeholder, plus the
   positions the LLM must use (1-D or 3-D), computed on the full sequence.

Responses are scored by `model/batch.py` (packed rows) and `response_logprobs` (one
sequence, the reference); rollout engines sample from `PromptEmbeds`.
"""

from __future__ import annotations

import copy
import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from harness.model.positions import next_positions
from harness.model.tokenizer import VIDEO_TOKEN
from harness.parallel.encode import encode_split


@dataclass
class VideoPixels:
    units: torch.Tensor  # vila: [U, t, 3, S, S] (t frames per unit); qwen2_5_vl: [U, h*w, 3*2*p*p]
    num_frames: int  # frames before grouping into units
    seconds_per_unit: float  # mean time between consecutive units (M-RoPE time axis)
    grid_hw: tuple[int, int]  # patch grid of one unit, before the 2x2 token merge

    def select(self, start: int, end: int) -> VideoPixels:
        """Units [start, end): the slice one rank encodes under MR-SP stage 1."""
        return VideoPixels(self.units[start:end], self.num_frames, self.seconds_per_unit, self.grid_hw)


@dataclass
class VideoEmbeds:
    """What encoding one video yields, and all `build_prompt` needs (the cached object)."""

    embeds: torch.Tensor  # [U, T, D]
    grid_hw: tuple[int, int]  # token grid of one unit as the LLM sees it; T = h * w
    seconds_per_unit: float

    @property
    def num_tokens(self) -> int:
        return self.embeds.shape[0] * self.embeds.shape[1]


@dataclass
class PromptEmbeds:
    embeds: torch.Tensor  # [L, D]
    positions: torch.Tensor  # [L] (1-D RoPE) or [3, L] (M-RoPE)
    input_ids: torch.Tensor  # [L]; video rows carry the video placeholder id
    video_span: tuple[int, int]  # [start, end) of the video rows

    def __len__(self) -> int:
        return self.embeds.shape[0]


def mean_spacing(timestamps: np.ndarray) -> float:
    """Mean seconds between consecutive sampled frames (1.0 for a single frame)."""
    ts = np.asarray(timestamps, dtype=np.float64)
    return float((ts[-1] - ts[0]) / (len(ts) - 1)) if len(ts) > 1 else 1.0


def splice_video(
    input_ids: torch.Tensor, text_embeds: torch.Tensor, video_embeds: torch.Tensor, video_id: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Replace the single `video_id` placeholder by the video's rows.

    input_ids [L], text_embeds [L, D], video_embeds [V, D] -> (ids [L-1+V], embeds
    [L-1+V, D], span). Exactly one placeholder is required: a missing or doubled one would
    silently give a prompt without video or with the wrong one.
    """
    (where,) = (input_ids == video_id).nonzero(as_tuple=True)
    if where.numel() != 1:
        raise ValueError(f"prompt must hold exactly one video placeholder, found {where.numel()}")
    i = int(where[0])
    v = video_embeds.shape[0]
    ids = torch.cat([input_ids[:i], input_ids.new_full((v,), video_id), input_ids[i + 1 :]])
    embeds = torch.cat([text_embeds[:i], video_embeds.to(text_embeds.dtype), text_embeds[i + 1 :]])
    return ids, embeds, (i, i + v)


class VideoLM(nn.Module, ABC):
    """Common base: the family-specific parts are preprocessing, encoding, the prompt's
    positions, and saving. Scoring and generation are shared."""

    family: str
    tokenizer: object

    @abstractmethod
    def preprocess(self, frames: np.ndarray, timestamps: np.ndarray,
                   frame_seconds: float | None = None) -> VideoPixels:
        """`frame_seconds`: seconds each frame stands for (`VideoClip.frame_seconds`);
        default the timestamps' mean spacing."""

    # Units per vision-tower call. The tower keeps every layer's hidden states of a call
    # (the feature is read from an inner layer), so one call over thousands of frames would
    # hold tens of GB; units encode independently, so the chunks change nothing.
    encode_chunk: int = 32

    def encode_units(self, pixels: VideoPixels) -> torch.Tensor:
        """[U, T, D] embeddings of the given units, `encode_chunk` units per tower call."""
        u, step = pixels.units.shape[0], self.encode_chunk
        if u <= step:
            return self.encode_unit_block(pixels)
        return torch.cat([self.encode_unit_block(pixels.select(a, min(a + step, u))) for a in range(0, u, step)])

    @abstractmethod
    def encode_unit_block(self, pixels: VideoPixels) -> torch.Tensor:
        """[U, T, D] embeddings of the given units in one tower call."""

    @abstractmethod
    def token_grid(self, pixels: VideoPixels) -> tuple[int, int]:
        """(rows, cols) of one unit's tokens as the LLM sees them."""

    @abstractmethod
    def encoder_settings(self) -> dict:
        """Everything besides the vision weights that decides a video's embeddings from its
        frames (resizing, normalisation, pooling, the tower's config), JSON-serialisable: part
        of the on-disk embedding cache's key (harness/trainer/videos.py)."""

    def encode_video(self, pixels: VideoPixels) -> VideoEmbeds:
        return VideoEmbeds(self.encode_units(pixels), self.token_grid(pixels), pixels.seconds_per_unit)

    @abstractmethod
    def prompt_positions(self, input_ids: torch.Tensor, video: VideoEmbeds) -> torch.Tensor:
        """Positions [L] or [3, L] of a prompt whose video rows are already spliced in."""

    def build_prompt(self, input_ids: torch.Tensor, video: VideoEmbeds) -> PromptEmbeds:
        """input_ids [L] with one video placeholder -> the LLM's input for this prompt."""
        input_ids = input_ids.cpu()  # token bookkeeping stays on the host
        text = self.embed_tokens(input_ids.to(self.device))  # [L, D]
        flat = self.video_rows(video, text)  # [V, D]
        ids, embeds, span = splice_video(input_ids.to(text.device), text, flat, self.video_token_id)
        ids = ids.cpu()
        positions = self.prompt_positions(ids, video).to(text.device)
        return PromptEmbeds(embeds, positions, ids, span)

    def video_rows(self, video: VideoEmbeds, text_embeds: torch.Tensor) -> torch.Tensor:
        """The rows that replace the video placeholder: [U*T, D] here; `vila` adds each
        frame's end-token embedding (formed from the current text embeddings, so a cached
        video stays exact while the LLM trains)."""
        return video.embeds.reshape(-1, video.embeds.shape[-1]).to(text_embeds.device)

    @abstractmethod
    def save_pretrained(self, out: str | Path) -> None: ...

    # --- what a rollout engine holding its own weights (vLLM) needs of the family ---------
    # "prompt_embeds": vLLM runs `rollout_llm` on each prompt's rows; "video_embeds": vLLM's
    # own multimodal model takes the token ids and the cached video rows.
    rollout_inputs: str
    rollout_module: str  # the vLLM module that builds this family (it must import)

    @property
    @abstractmethod
    def rollout_llm(self) -> nn.Module:
        """The transformers model vLLM builds (its config and class name are what vLLM reads)."""

    @abstractmethod
    def rollout_weights(self, state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        """The tensors of `state` (this model's whole state dict) that vLLM holds, under
        `rollout_llm`'s checkpoint names."""

    @abstractmethod
    def rollout_request(self, prompt: PromptEmbeds) -> dict:
        """One prompt as a vLLM request (the video is never encoded again); ValueError when
        vLLM would not see this prompt as the trainer does (positions)."""

    def write_rollout_files(self, folder: str | Path) -> None:
        """What vLLM reads to build the model (no weights): config and tokenizer."""
        config = copy.deepcopy(self.rollout_llm.config)
        config.architectures = [type(self.rollout_llm).__name__]  # how vLLM picks its model class
        config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    @property
    @abstractmethod
    def language_model(self) -> nn.Module:
        """The decoder stack (takes inputs_embeds, position_ids, attention_mask)."""

    @property
    @abstractmethod
    def lm_head(self) -> nn.Module: ...

    @abstractmethod
    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        """(vision tower, projector): the parts frozen during RL by default."""

    def set_trainable(self, *, vision: bool, projector: bool, llm: bool = True) -> None:
        tower, projector_module = self.vision_modules()
        for p in self.parameters():
            p.requires_grad_(llm)
        for p in tower.parameters():
            p.requires_grad_(vision)
        for p in projector_module.parameters():  # after the tower: qwen's merger lives inside it
            p.requires_grad_(projector)

    def use_harness_attention(self) -> None:
        """Route the LLM's attention through model/attention.py: packed-row (and Ulysses)
        attention for calls that pass a row layout, transformers' SDPA for all others."""
        from harness.model.attention import ATTENTION_NAME

        self.language_model.set_attn_implementation(ATTENTION_NAME)

    def set_activation_checkpointing(self, on: bool) -> None:
        """Recompute each decoder layer's (and vision-tower layer's) activations during the
        backward pass instead of keeping them: memory for about one more forward of
        compute. transformers' own mechanism (non-reentrant torch.utils.checkpoint), active
        only in training mode with gradients on, so scoring and rollout passes are unchanged."""
        tower, _ = self.vision_modules()
        for module in (self.language_model, tower):
            if on:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                module.gradient_checkpointing_disable()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def video_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)

    @functools.cached_property
    def end_of_turn_id(self) -> int:
        """The token the chat template writes right after an assistant message (Qwen's
        `<|im_end|>`): what SFT targets end with and where generation stops. Read from the
        template, as the released VILA code infers its stop tokens (tokenizer_utils.py
        `infer_stop_tokens`); the tokenizer's eos where the template writes nothing after."""
        marker = "\x00harness-end-of-turn\x00"
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
        )
        rest = text.split(marker, 1)[1] if marker in text else ""
        ids = self.tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else []
        if ids:
            return int(ids[0])
        if self.tokenizer.eos_token_id is None:
            raise ValueError("the chat template ends an assistant turn with nothing and the tokenizer has no eos")
        return int(self.tokenizer.eos_token_id)

    @property
    def max_positions(self) -> int:
        """Positions the LLM was built for (max_position_embeddings)."""
        return int(self.language_model.config.max_position_embeddings)

    @property
    def frames_per_unit(self) -> int:
        """Frames whose count must divide a video's (VILA's TSP time pool); 1: any count."""
        return 1

    @property
    def stop_token_ids(self) -> list[int]:
        """Generation ends at the end of the turn or at the tokenizer's eos, whichever comes."""
        eos = self.tokenizer.eos_token_id
        return sorted({self.end_of_turn_id} | ({eos} if eos is not None else set()))

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(ids)

    def chat_prompt_ids(self, question: str, system: str | None = None) -> torch.Tensor:
        """Token ids of a one-turn chat with the video before the question, ending with the
        assistant header, ready for `build_prompt`."""
        messages = [{"role": "system", "content": system}] if system else []
        messages.append(
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}
        )
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"])  # [L]

    def encode_frames(self, frames: np.ndarray, timestamps: np.ndarray, frame_seconds: float | None = None,
                      group: dist.ProcessGroup | None = None) -> VideoEmbeds:
        """One whole video: preprocess + encode; with `group` its units are split over the
        group's ranks and every rank gets all the embeddings (MR-SP stage 1)."""
        pixels = self.preprocess(frames, timestamps, frame_seconds)
        if group is None:
            return self.encode_video(pixels)
        embeds = encode_split(pixels.units.shape[0], lambda a, b: self.encode_units(pixels.select(a, b)),
                              group)  # [U, T, D]
        return VideoEmbeds(embeds, self.token_grid(pixels), pixels.seconds_per_unit)

    # --- scoring -----------------------------------------------------------------------

    def hidden_states(self, embeds: torch.Tensor, positions: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The LLM's own forward: embeds [B, L, D], positions [B, L] or [3, B, L],
        attention_mask [B, L] (None: no padding) -> [B, L, D]."""
        return self.language_model(inputs_embeds=embeds, position_ids=positions, attention_mask=attention_mask,
                                   use_cache=False).last_hidden_state

    def response_logprobs(self, prompt: PromptEmbeds, response_ids: torch.Tensor) -> torch.Tensor:
        """Log-probs [R] of one response given its prompt, through the LLM's own attention
        on one unpadded sequence: the plain reference every packed and sequence-parallel
        pass is tested against (training scores batches through model/batch.py)."""
        response_ids = response_ids.to(prompt.embeds.device)
        p, r = len(prompt), response_ids.shape[0]
        embeds = torch.cat([prompt.embeds, self.embed_tokens(response_ids)])  # [L, D]
        positions = torch.cat([prompt.positions, next_positions(prompt.positions, r).to(prompt.embeds.device)], -1)
        hidden = self.hidden_states(embeds[None], positions.unsqueeze(-2))[0]  # [L, D]
        logits = self.lm_head(hidden[p - 1 : p + r - 1]).float()  # [R, V]
        return torch.log_softmax(logits, dim=-1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)  # [R]
