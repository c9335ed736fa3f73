"""The one interface every model family implements, for text alone and for prompts that
hold media (`media_kinds`: "image", "video", "audio"; none for the text-only families).

A medium goes through three steps, kept apart so that MR-SP can split and cache them
(described for video; an image is a one-unit video, audio is cut into units of time):

1. `preprocess(frames, timestamps)` -> `VideoPixels`: resize/normalise/patchify into
   *units* that are encoded independently (a frame for `vila`; a temporal patch of two
   frames for `qwen2_5_vl`). Units are the grain at which frames are split across ranks.
2. `encode_video(pixels)` -> `MediaEmbeds` with `[U, T, D]` rows (T tokens per unit).
   Encoding a subset of units gives exactly those rows of encoding all of them.
3. `build_prompt(input_ids, media)` -> `PromptEmbeds`: the prompt's text embeddings with
   each medium's rows spliced in at its placeholder (one per medium, in order), plus the
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

from harness.errors import HarnessError
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


MEDIA_KINDS = ("image", "video", "audio")


@dataclass
class MediaEmbeds:
    """What encoding one medium yields, and all `build_prompt` needs (the cached object)."""

    embeds: torch.Tensor  # [U, T, D]
    grid_hw: tuple[int, int]  # token grid of one unit as the LLM sees it; T = h * w
    seconds_per_unit: float  # image: 0 (one unit, no time axis)
    kind: str = "video"  # one of MEDIA_KINDS

    @property
    def num_tokens(self) -> int:
        return self.embeds.shape[0] * self.embeds.shape[1]


@dataclass
class PromptEmbeds:
    embeds: torch.Tensor  # [L, D]
    positions: torch.Tensor  # [L] (1-D RoPE) or [3, L] (M-RoPE)
    input_ids: torch.Tensor  # [L]; a medium's rows carry its placeholder id
    spans: tuple[tuple[str, int, int], ...] = ()  # (kind, start, end) of each medium's rows, in order

    def __len__(self) -> int:
        return self.embeds.shape[0]


def mean_spacing(timestamps: np.ndarray) -> float:
    """Mean seconds between consecutive sampled frames (1.0 for a single frame)."""
    ts = np.asarray(timestamps, dtype=np.float64)
    return float((ts[-1] - ts[0]) / (len(ts) - 1)) if len(ts) > 1 else 1.0


def splice_media(
    input_ids: torch.Tensor, text_embeds: torch.Tensor, media: list[tuple[str, int, torch.Tensor]],
    placeholder_ids: Mapping[str, int],
) -> tuple[torch.Tensor, torch.Tensor, tuple[tuple[str, int, int], ...]]:
    """Replace each medium's placeholder by its rows.

    input_ids [L], text_embeds [L, D], media: (kind, placeholder id, rows [V, D]) in prompt
    order; `placeholder_ids`: every kind's placeholder id of the family. The placeholders
    found must be exactly the media given, kind by kind: a missing, doubled or misplaced one
    would silently give a prompt without a medium or with the wrong one.
    -> (ids [L'], embeds [L', D], spans).
    """
    is_placeholder = torch.zeros_like(input_ids, dtype=torch.bool)
    for pid in set(placeholder_ids.values()):
        is_placeholder |= input_ids == pid
    (where,) = is_placeholder.nonzero(as_tuple=True)
    found = [int(input_ids[i]) for i in where]
    wanted = [pid for _, pid, _ in media]
    if found != wanted:
        names = {v: k for k, v in placeholder_ids.items()}
        raise ValueError(f"prompt's media placeholders {[names[i] for i in found]} do not match the media "
                         f"given {[kind for kind, _, _ in media]}")
    ids, embeds, spans, cursor, length = [], [], [], 0, 0
    for i, (kind, pid, rows) in zip(where.tolist(), media, strict=True):
        ids += [input_ids[cursor:i], input_ids.new_full((rows.shape[0],), pid)]
        embeds += [text_embeds[cursor:i], rows.to(text_embeds.dtype)]
        start = length + i - cursor
        spans.append((kind, start, start + rows.shape[0]))
        length, cursor = start + rows.shape[0], i + 1
    ids.append(input_ids[cursor:])
    embeds.append(text_embeds[cursor:])
    return torch.cat(ids), torch.cat(embeds), tuple(spans)


class VideoLM(nn.Module, ABC):
    """Common base: the family-specific parts are preprocessing, encoding, the prompt's
    positions, and saving. Scoring and generation are shared. A family that takes no
    video (`media_kinds` without "video") leaves the video methods to raise."""

    family: str
    tokenizer: object
    media_kinds: tuple[str, ...] = ("video",)  # the media a prompt of this family may hold

    def _no_medium(self, kind: str) -> HarnessError:
        return HarnessError(f"the {self.family} family takes no {kind} input (it takes "
                            f"{', '.join(self.media_kinds) or 'text only'})")

    def preprocess(self, frames: np.ndarray, timestamps: np.ndarray,
                   frame_seconds: float | None = None) -> VideoPixels:
        """`frame_seconds`: seconds each frame stands for (`VideoClip.frame_seconds`);
        default the timestamps' mean spacing."""
        raise self._no_medium("video")

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

    def encode_unit_block(self, pixels: VideoPixels) -> torch.Tensor:
        """[U, T, D] embeddings of the given units in one tower call."""
        raise self._no_medium("video")

    def token_grid(self, pixels: VideoPixels) -> tuple[int, int]:
        """(rows, cols) of one unit's tokens as the LLM sees them."""
        raise self._no_medium("video")

    def encoder_settings(self) -> dict:
        """Everything besides the encoder weights that decides a medium's embeddings from its
        samples (resizing, normalisation, pooling, the tower's config), JSON-serialisable: part
        of the on-disk embedding cache's key (harness/trainer/videos.py)."""
        raise self._no_medium("video")

    def encode_video(self, pixels: VideoPixels) -> MediaEmbeds:
        return MediaEmbeds(self.encode_units(pixels), self.token_grid(pixels), pixels.seconds_per_unit)

    def encode_image(self, image: np.ndarray) -> MediaEmbeds:
        """One image [H, W, 3] uint8 -> its embeddings (kind "image")."""
        raise self._no_medium("image")

    def placeholder_id(self, kind: str) -> int:
        """The token id that stands for a medium of `kind` in a prompt."""
        if kind != "video" or "video" not in self.media_kinds:
            raise self._no_medium(kind)
        return self.video_token_id

    @abstractmethod
    def prompt_positions(self, input_ids: torch.Tensor, media: list[MediaEmbeds],
                         spans: tuple[tuple[str, int, int], ...]) -> torch.Tensor:
        """Positions [L] or [3, L] of a prompt whose media rows are already spliced in at
        `spans` (one per medium, in order)."""

    def build_prompt(self, input_ids: torch.Tensor,
                     media: MediaEmbeds | list[MediaEmbeds] | tuple = ()) -> PromptEmbeds:
        """input_ids [L] with one placeholder per medium (in order) -> the LLM's input."""
        media = [media] if isinstance(media, MediaEmbeds) else list(media)
        input_ids = input_ids.cpu()  # token bookkeeping stays on the host
        text, media_text = self.prompt_text_embeds(input_ids)  # [L, D], [E, D]
        placeholders = {kind: self.placeholder_id(kind) for kind in self.media_kinds}
        rows = [(m.kind, self.placeholder_id(m.kind), self.media_rows(m, media_text)) for m in media]
        ids, embeds, spans = splice_media(input_ids.to(text.device), text, rows, placeholders)
        ids = ids.cpu()
        positions = self.prompt_positions(ids, media, spans).to(text.device)
        return PromptEmbeds(embeds, positions, ids, spans)

    # Token ids whose embeddings the media rows hold besides the medium's own (vila's text
    # around each frame); embedded with every prompt, so a cached video stays exact while the
    # LLM trains.
    media_text_ids: tuple[int, ...] = ()

    def prompt_text_embeds(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings [L, D] of the prompt's ids, embeddings [E, D] of `media_text_ids`) from
        one embedding call whatever the prompt's media: under ZeRO-3 each call gathers the
        table, and every DP rank must make as many calls as the others."""
        extra = torch.tensor(self.media_text_ids, dtype=input_ids.dtype)
        embeds = self.embed_tokens(torch.cat([input_ids, extra]).to(self.device))  # [L+E, D]
        return embeds[: input_ids.shape[0]], embeds[input_ids.shape[0]:]

    def media_rows(self, medium: MediaEmbeds, media_text: torch.Tensor) -> torch.Tensor:
        """The rows that replace a medium's placeholder: [U*T, D] here; `vila` adds the text
        around each frame, whose embeddings are `media_text` [E, D] (`media_text_ids`)."""
        return medium.embeds.reshape(-1, medium.embeds.shape[-1]).to(media_text.device)

    @abstractmethod
    def save_pretrained(self, out: str | Path) -> None: ...

    # --- what a rollout engine holding its own weights (vLLM) needs of the family ---------
    # "prompt_embeds": vLLM runs `rollout_llm` on each prompt's rows; "media_embeds": vLLM's
    # own multimodal model takes the token ids and the cached media rows; "token_ids": a
    # text-only family, vLLM takes the prompt's token ids.
    rollout_inputs: str
    rollout_module: str  # the vLLM module that builds this family (it must import)
    rollout_unavailable_reason: str | None = None  # why vLLM cannot run this family at all

    @property
    @abstractmethod
    def rollout_llm(self) -> nn.Module:
        """The transformers model vLLM builds (its config and class name are what vLLM reads)."""

    @abstractmethod
    def rollout_weights(self, state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        """The tensors of `state` (this model's whole state dict) that vLLM holds, under
        `rollout_llm`'s checkpoint names."""

    @property
    def rollout_media_limits(self) -> dict[str, int]:
        """Media per prompt vLLM is built for ("media_embeds" families)."""
        return {kind: 1 if kind in self.media_kinds else 0 for kind in MEDIA_KINDS}

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

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        """(vision tower, projector): the parts frozen during RL by default. A text-only
        family has none: two modules without parameters."""
        return nn.Module(), nn.Module()

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
            if not any(True for _ in module.parameters()):
                continue  # a text-only family's empty tower
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

    def chat_prompt_ids(self, question: str | list[dict], system: str | None = None,
                        media: tuple[str, ...] | list[str] = ("video",),
                        image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Token ids of a one-turn chat with the media (kinds, in order) before the question,
        ending with the assistant header, ready for `build_prompt`. `question` may instead be
        the user content itself, a list of {"type": "text" | "image" ...} items (`media`
        then empty): images placed inside the text. `image_sizes`: each image's (height,
        width), read only by a family whose prompt text depends on them (vila's tiling)."""
        messages = [{"role": "system", "content": system}] if system else []
        if isinstance(question, list):
            if media:
                raise ValueError("give the media either inside the content list or in `media`, not both")
            messages.append({"role": "user", "content": question})
        elif media:
            content = [{"type": kind} for kind in media] + [{"type": "text", "text": question}]
            messages.append({"role": "user", "content": content})
        else:
            messages.append({"role": "user", "content": question})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"])  # [L]

    def encode_frames(self, frames: np.ndarray, timestamps: np.ndarray, frame_seconds: float | None = None,
                      group: dist.ProcessGroup | None = None) -> MediaEmbeds:
        """One whole video: preprocess + encode; with `group` its units are split over the
        group's ranks and every rank gets all the embeddings (MR-SP stage 1)."""
        pixels = self.preprocess(frames, timestamps, frame_seconds)
        if group is None:
            return self.encode_video(pixels)
        embeds = encode_split(pixels.units.shape[0], lambda a, b: self.encode_units(pixels.select(a, b)),
                              group)  # [U, T, D]
        return MediaEmbeds(embeds, self.token_grid(pixels), pixels.seconds_per_unit)

    def encode_medium(self, kind: str, data, group: dist.ProcessGroup | None = None) -> MediaEmbeds:
        """One decoded medium's embeddings: a `VideoClip`, an image [H, W, 3] uint8 or an
        `AudioClip`. `group`: split a video's (or audio's) units over its ranks; an image is
        encoded whole on every rank (one unit)."""
        if kind not in self.media_kinds:
            raise self._no_medium(kind)
        if kind == "video":
            return self.encode_frames(data.frames, data.timestamps, data.frame_seconds, group)
        if kind == "image":
            return self.encode_image(data)
        return self.encode_audio(data, group)

    def encode_audio(self, clip, group: dist.ProcessGroup | None = None) -> MediaEmbeds:
        """An `AudioClip`'s embeddings (kind "audio")."""
        raise self._no_medium("audio")

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
