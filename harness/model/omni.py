"""The `qwen2_5_omni` family: transformers' Qwen2.5-Omni *thinker*
(`Qwen2_5OmniThinkerForConditionalGeneration`: audio tower + Qwen2.5-VL's vision tower +
Qwen2 LLM with time-aligned M-RoPE) under the harness interface, for RL on text, images,
video, audio, and video with its own audio track. The talker (speech output) is not built.

Media (docs/omni-notes.md has the facts and where they were read):

* images and video: Qwen2.5-VL's tower, encoded as `qwen_vl.py` does (units of one
  temporal patch = two frames; an image is one unit with its frame repeated);
* audio: `encode_audio` computes the log-mel of the *whole* track, then runs the audio tower
  over units of 200 mel frames (2 s, 50 tokens): the tower windows, convolves, positions
  and attends within 200-frame blocks, so a track cut at those multiples encodes piece by
  piece to exactly its rows, and the units split over an MR-SP group like video frames.
  Its `MediaEmbeds` holds the rows as [1, A, D] (A tokens of 40 ms, `grid_hw` (1, A),
  `seconds_per_unit` 0.04: the time of one token), so `embeds.reshape(-1, D)` is exactly
  the A rows even when the last 2-s unit is short. A track over the feature extractor's
  300 s is refused (`OmniInputError`), not cut: the tower has no length limit, the log-mel
  features do (`audio_features`);
* a video with its audio track (records of data_type "video+audio", media [video, audio]):
  one placeholder group, `<|vision_bos|><|audio_bos|><|VIDEO|><|audio_eos|><|vision_eos|>`
  (omni_tokenizer.VIDEO_WITH_AUDIO, what `chat_prompt_ids(q, media=("video", "audio"))`
  writes), whose `<|VIDEO|>` becomes the video and audio rows interleaved in 2-s chunks as
  transformers' processor lays them out with `use_audio_in_video=True`
  (`omni_positions.video_audio_chunks`). `PromptEmbeds.spans` lists such a group as ONE
  span ("video+audio", start, end) over those rows (its ids say which row is which), every
  other medium as (kind, start, end) as usual: a span per placeholder group, in order.
  A prompt holds videos with their audio or videos without, not both (transformers'
  processor and vLLM take one `use_audio_in_video` flag per prompt); lone audios mix
  with either.

Positions follow transformers' rule (`omni_positions`, rule="transformers"), the reference
code the model was released with; vLLM 0.32 places a video with its audio differently and
takes no cached audio rows, so `rollout_request` refuses and rollouts run on the HF engine.

Checkpoints: a released Qwen2.5-Omni folder (config.json of model_type qwen2_5_omni with a
`thinker_config`, weights named `thinker.*` next to `talker.*` / `token2wav.*`) loads its
thinker alone; `save_pretrained` writes the thinker alone (model_type
qwen2_5_omni_thinker), its tokenizer and preprocessor_config.json (image and audio
feature settings in one file, as released).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from transformers import (
    AutoTokenizer,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    WhisperFeatureExtractor,
)

from harness.data.audio import AudioClip, log_mel_features, omni_feature_extractor
from harness.errors import HarnessError
from harness.model.interface import (
    MediaEmbeds,
    PromptEmbeds,
    VideoLM,
    splice_media,
)
from harness.model.omni_config import POSITION_ID_PER_SECONDS
from harness.model.omni_positions import (
    OmniTiming,
    OmniTokenIds,
    audio_token_count,
    omni_mrope_positions,
    video_audio_chunks,
)
from harness.model.qwen_vl import (
    CLIP_MEAN,
    CLIP_STD,
    VIDEO_TOTAL_PIXELS,
    QwenVision,
    tower_settings,
)
from harness.parallel.encode import encode_split

# The positions the released model was trained with (module docstring; docs/omni-notes.md).
POSITION_RULE = "transformers"
SECONDS_PER_AUDIO_TOKEN = 1 / POSITION_ID_PER_SECONDS  # 40 ms: one audio token, one position id
# config.json model_type of a released Qwen2.5-Omni folder, and of the thinker alone (ours)
OMNI_MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")
# Why vLLM does not sample this family (the rollout engine logs it and takes the HF engine).
VLLM_REFUSAL = (
    "vLLM 0.32 cannot sample qwen2_5_omni prompts as the trainer scores them: it takes no "
    "cached audio-tower rows (only log-mel features), and it places a video with its audio "
    "track at other positions than transformers' rule the model was trained with "
    "(docs/omni-notes.md); use the HF engine"
)
# The Whisper feature-extractor settings a preprocessor_config.json must give (the rest
# of WhisperFeatureExtractor's arguments default to the released values when absent).
FEATURE_KEYS = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft")
OPTIONAL_FEATURE_KEYS = ("padding_value", "dither", "return_attention_mask", "padding_side")


class OmniInputError(HarnessError, ValueError):
    """A medium this family cannot take as given; the message says why and what to do."""


def feature_extractor_from(cfg: Mapping) -> WhisperFeatureExtractor:
    """The log-mel extractor a preprocessor config describes (the released file holds the
    image processor's and the feature extractor's settings together)."""
    missing = [k for k in FEATURE_KEYS if k not in cfg]
    if cfg.get("feature_extractor_type") != "WhisperFeatureExtractor" or missing:
        raise ValueError(f"the preprocessor config holds no WhisperFeatureExtractor settings "
                         f"(feature_extractor_type {cfg.get('feature_extractor_type')!r}, missing {missing}); "
                         "a Qwen2.5-Omni checkpoint's preprocessor_config.json carries them")
    keys = FEATURE_KEYS + tuple(k for k in OPTIONAL_FEATURE_KEYS if k in cfg)
    return WhisperFeatureExtractor(**{k: cfg[k] for k in keys})


def _feature_settings(fe: WhisperFeatureExtractor) -> dict:
    """The JSON settings of a feature extractor (its mel filter bank follows from them)."""
    d = fe.to_dict()
    return {k: d[k] for k in ("feature_extractor_type", *FEATURE_KEYS, *OPTIONAL_FEATURE_KEYS,
                              "n_samples", "nb_max_frames")}


class OmniModel(QwenVision, VideoLM):
    family = "qwen2_5_omni"
    media_kinds = ("image", "video", "audio")

    def __init__(self, model: Qwen2_5OmniThinkerForConditionalGeneration, tokenizer, preprocess_cfg: dict):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess_cfg = preprocess_cfg
        self.tokens = OmniTokenIds.from_tokenizer(tokenizer)
        if self.tokens != OmniTokenIds.from_config(model.config):
            raise ValueError(f"the tokenizer's media token ids {self.tokens} are not the thinker config's "
                             f"{OmniTokenIds.from_config(model.config)}")
        self.timing = OmniTiming.from_config(model.config)
        self.feature_extractor = feature_extractor_from(preprocess_cfg)
        mels = model.config.audio_config.num_mel_bins
        if self.feature_extractor.feature_size != mels:
            raise ValueError(f"the feature extractor makes {self.feature_extractor.feature_size} mel bins, "
                             f"the audio tower takes {mels}")

    # --- modules ------------------------------------------------------------------------

    @property
    def language_model(self) -> nn.Module:
        return self.model.model  # Qwen2_5OmniThinkerTextModel

    @property
    def lm_head(self) -> nn.Module:
        return self.model.lm_head

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        # Qwen2.5-VL's patch merger (2x2 merge + MLP) plays the projector's role.
        return self.model.visual, self.model.visual.merger

    def set_trainable(self, *, vision: bool, projector: bool, llm: bool = True) -> None:
        """As the base, with the audio tower (its output projection included: the tower has
        no separate projector) trained or frozen together with the vision tower (`vision`):
        both are encoders whose rows the MR-SP cache keeps."""
        super().set_trainable(vision=vision, projector=projector, llm=llm)
        for p in self.model.audio_tower.parameters():
            p.requires_grad_(vision)

    def set_activation_checkpointing(self, on: bool) -> None:
        """As the base, and the audio tower's layers too."""
        super().set_activation_checkpointing(on)
        tower = self.model.audio_tower
        if on:
            tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            tower.gradient_checkpointing_disable()

    @property
    def video_token_id(self) -> int:
        return self.tokens.video

    def placeholder_id(self, kind: str) -> int:
        ids = {"image": self.tokens.image, "video": self.tokens.video, "audio": self.tokens.audio}
        if kind not in ids:
            raise self._no_medium(kind)
        return ids[kind]

    # images and video: Qwen2.5-VL's tower (QwenVision)

    def encoder_settings(self) -> dict:
        return {"family": self.family, "preprocess": self.preprocess_cfg, "video_pixels": list(self.video_pixels),
                "audio_features": _feature_settings(self.feature_extractor),
                "vision_tower": tower_settings(self._vision),
                "audio_tower": tower_settings(self.model.config.audio_config)}

    # --- audio -------------------------------------------------------------------------

    @property
    def audio_unit_frames(self) -> int:
        """Mel frames per audio unit: the tower's block, n_window * 2 (200 = 2 s, 50 tokens)."""
        return 2 * self.model.config.audio_config.n_window

    def audio_features(self, clip: AudioClip) -> torch.Tensor:
        """The log-mel frames [mels, F] of the whole clip. Longer than the feature extractor's
        `chunk_length` (300 s) is refused, not cut: `log_mel_features` (like the extractor)
        would keep only the first 300 s. The tower itself has no length limit: it restarts
        its sinusoidal positions every 200-frame block (100 of `max_source_positions` 1500
        used), so the limit is the features'."""
        fe = self.feature_extractor
        if len(clip.samples) > fe.n_samples:
            raise OmniInputError(f"audio of {clip.seconds:.1f} s is longer than the {fe.chunk_length} s the "
                                 "Qwen2.5-Omni feature extractor takes (it would keep only the start); "
                                 f"cut the track into clips of at most {fe.chunk_length} s")
        return torch.from_numpy(log_mel_features(clip, fe))  # [mels, F]

    def encode_audio(self, clip: AudioClip, group: dist.ProcessGroup | None = None) -> MediaEmbeds:
        """An audio clip's rows, [1, A, D] (module docstring). With `group` the 2-s units
        are split over its ranks and every rank gets all rows (MR-SP stage 1 for audio)."""
        features = self.audio_features(clip)  # [mels, F]
        tokens = audio_token_count(features.shape[1])
        if tokens < 1:
            raise OmniInputError(f"audio of {len(clip.samples)} samples gives no audio token "
                                 "(the tower needs at least 3 mel frames, 30 ms)")
        per_unit = audio_token_count(self.audio_unit_frames)  # 50
        units = -(-tokens // per_unit)  # frames past the last token (< 3) form no unit
        rows = encode_split(units, lambda a, b: self.encode_audio_units(features, a, b), group)  # [U, 50, D]
        rows = rows.reshape(-1, rows.shape[-1])[:tokens]  # [A, D]: the last unit's padding dropped
        return MediaEmbeds(rows[None], (1, tokens), SECONDS_PER_AUDIO_TOKEN, kind="audio")

    def encode_audio_units(self, features: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Rows [end-start, T, D] of audio units [start, end) of `features` [mels, F], T tokens
        per full unit; a short last unit is zero-padded to T (`encode_audio` drops that)."""
        step, per_unit = self.audio_unit_frames, audio_token_count(self.audio_unit_frames)
        block = features[:, start * step : end * step]  # [mels, n]
        tower = self.model.audio_tower
        lens = torch.tensor([block.shape[1]], device=self.device)
        rows = tower(block.to(self.device, tower.dtype), feature_lens=lens).last_hidden_state  # [count(n), D]
        padded = rows.new_zeros((end - start) * per_unit, rows.shape[-1])
        padded[: rows.shape[0]] = rows
        return padded.reshape(end - start, per_unit, -1)  # [U', T, D]

    # --- prompts -----------------------------------------------------------------------

    def chat_prompt_ids(self, question: str | list[dict], system: str | None = None,
                        media: tuple[str, ...] | list[str] = ("video",),
                        image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """As the base; `media` ("video", "audio") is a video with its own audio track, one
        placeholder group (module docstring): rendered as a video item, then given its audio
        markers, which is what transformers' processor does to a video with
        `use_audio_in_video=True`, so any template that renders a video item works (the
        released one has no video+audio item)."""
        if isinstance(question, list) or tuple(media) != ("video", "audio"):
            return super().chat_prompt_ids(question, system, media)
        ids = super().chat_prompt_ids(question, system, ("video",)).tolist()
        found = [i for i, tok in enumerate(ids) if tok == self.tokens.video]
        at = found[0] if len(found) == 1 else 0
        if ids[at - 1 : at + 2] != [self.tokens.vision_bos, self.tokens.video, self.tokens.vision_eos]:
            raise ValueError("the chat template does not render a video item as one "
                             "<|vision_bos|><|VIDEO|><|vision_eos|> (with no other <|VIDEO|> in the prompt)")
        ids[at : at + 1] = [self.tokens.audio_bos, self.tokens.video, self.tokens.audio_eos]
        return torch.tensor(ids)  # [L]

    def _placeholder_groups(self, input_ids: torch.Tensor) -> list[str]:
        """The kind of each placeholder group of a rendered prompt, in order: "image",
        "video", "audio", or "video+audio" (a <|VIDEO|> right after <|audio_bos|>)."""
        ids = input_ids.tolist()
        kinds = {self.tokens.image: "image", self.tokens.video: "video", self.tokens.audio: "audio"}
        out = []
        for i, tok in enumerate(ids):
            kind = kinds.get(tok)
            if kind == "video" and i > 0 and ids[i - 1] == self.tokens.audio_bos:
                kind = "video+audio"
            if kind is not None:
                out.append(kind)
        return out

    def _media_groups(self, input_ids: torch.Tensor, media: list[MediaEmbeds]) -> list[tuple[str, list]]:
        """(group kind, its media) for each placeholder group; the media must be the groups'
        kinds in order (a "video+audio" group takes a video then an audio)."""
        kinds = self._placeholder_groups(input_ids)
        wanted = [part for kind in kinds for part in kind.split("+")]
        given = [m.kind for m in media]
        if wanted != given:
            raise ValueError(f"the prompt's placeholders {kinds} take the media {wanted}, but {given} were given")
        if "video+audio" in kinds and "video" in kinds:
            # both processors take one use_audio_in_video flag per prompt (omni_positions too)
            raise ValueError("a prompt cannot hold a video with its audio track and a video without")
        groups, at = [], 0
        for kind in kinds:
            n = len(kind.split("+"))
            groups.append((kind, media[at : at + n]))
            at += n
        return groups

    def _grid_thw(self, medium: MediaEmbeds) -> list[int]:
        """The patch grid [t, h, w] (before the 2x2 merge) of an image or video's rows."""
        m = self._vision.spatial_merge_size
        h, w = medium.grid_hw
        return [medium.embeds.shape[0], h * m, w * m]

    def _interleaved(self, video: MediaEmbeds, audio: MediaEmbeds,
                     media_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A video with its audio track: (rows [V+A, D], ids [V+A]) in the 2-s chunks of
        transformers' processor (`use_audio_in_video`)."""
        rows = {"video": self.media_rows(video, media_text), "audio": self.media_rows(audio, media_text)}
        ids = {"video": self.tokens.video, "audio": self.tokens.audio}
        chunks = video_audio_chunks(self._grid_thw(video), video.seconds_per_unit, rows["audio"].shape[0],
                                    self.timing, rule=POSITION_RULE)
        embeds = torch.cat([rows[kind][a:b] for kind, a, b in chunks])  # [V+A, D]
        chunk_ids = torch.cat([torch.full((b - a,), ids[kind]) for kind, a, b in chunks])  # [V+A]
        return embeds, chunk_ids

    def build_prompt(self, input_ids: torch.Tensor,
                     media: MediaEmbeds | list[MediaEmbeds] | tuple = ()) -> PromptEmbeds:
        """input_ids [L] with one placeholder group per medium, or per video-with-audio pair
        (given as [video, audio]), in order -> the LLM's input (spans: module docstring)."""
        media = [media] if isinstance(media, MediaEmbeds) else list(media)
        input_ids = input_ids.cpu()  # token bookkeeping stays on the host
        groups = self._media_groups(input_ids, media)
        text, media_text = self.prompt_text_embeds(input_ids.cpu())  # [L, D], [0, D]
        rows, pair_ids = [], {}
        for k, (kind, members) in enumerate(groups):
            if kind == "video+audio":
                embeds, pair_ids[k] = self._interleaved(*members, media_text)
                rows.append((kind, self.tokens.video, embeds))
            else:
                rows.append((kind, self.placeholder_id(kind), self.media_rows(members[0], media_text)))
        placeholders = {kind: self.placeholder_id(kind) for kind in self.media_kinds}
        ids, embeds, spans = splice_media(input_ids.to(text.device), text, rows, placeholders)
        ids = ids.cpu()
        for k, chunk_ids in pair_ids.items():  # splice_media gave the group's rows all <|VIDEO|>
            _, start, end = spans[k]
            ids[start:end] = chunk_ids
        positions = self.prompt_positions(ids, media, spans).to(text.device)
        return PromptEmbeds(embeds, positions, ids, spans)

    def prompt_positions(self, input_ids: torch.Tensor, media: list[MediaEmbeds],
                         spans: tuple[tuple[str, int, int], ...]) -> torch.Tensor:
        """transformers' TMRoPE positions [3, L] (`omni_mrope_positions`, rule
        "transformers") of a prompt `build_prompt` spliced, one span per placeholder group."""
        images, videos, seconds, audio_tokens = [], [], [], []
        parts = iter(media)
        for kind, _, _ in spans:
            for part in kind.split("+"):
                medium = next(parts)
                if medium.kind != part:
                    raise ValueError(f"span {kind!r} does not match a {medium.kind} medium")
                if part == "image":
                    images.append(self._grid_thw(medium))
                elif part == "video":
                    videos.append(self._grid_thw(medium))
                    seconds.append(medium.seconds_per_unit)
                else:
                    audio_tokens.append(medium.num_tokens)
        paired = any(kind == "video+audio" for kind, _, _ in spans)
        return omni_mrope_positions(input_ids, self.tokens, images, videos, seconds, audio_tokens,
                                    use_audio_in_video=paired, timing=self.timing, rule=POSITION_RULE)

    # --- vLLM: refused (VLLM_REFUSAL); rollouts run on the HF engine -------------------
    rollout_inputs = "media_embeds"
    rollout_module = "vllm.model_executor.models.qwen2_5_omni_thinker"
    rollout_unavailable_reason = VLLM_REFUSAL

    @property
    def rollout_llm(self) -> nn.Module:
        return self.model

    def rollout_weights(self, state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        # The released checkpoint's names (vLLM maps `thinker.*`), all but the vision tower:
        # vLLM would run the audio tower itself on log-mel features. Unused while
        # rollout_request refuses.
        inner = ((k.removeprefix("model."), v) for k, v in state.items() if k.startswith("model."))
        return [("thinker." + k, v) for k, v in inner if not k.startswith("visual.")]

    def rollout_request(self, prompt: PromptEmbeds) -> dict:
        raise ValueError(VLLM_REFUSAL)

    def write_rollout_files(self, folder: str | Path) -> None:
        raise ValueError(VLLM_REFUSAL)

    # --- persistence -------------------------------------------------------------------

    def save_pretrained(self, out: str | Path) -> None:
        """The thinker alone (config.json of model_type qwen2_5_omni_thinker), the
        tokenizer, and preprocessor_config.json (image + audio feature settings)."""
        out = Path(out)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        (out / "preprocessor_config.json").write_text(json.dumps(self.preprocess_cfg, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> OmniModel:
        """A released Qwen2.5-Omni folder (its thinker; talker and token2wav tensors are
        skipped) or one `save_pretrained` wrote. A thinker tensor missing from the folder
        is an error, not a random initialisation. The chat template: the processor's
        `chat_template.json` where the folder has one (as released), else the tokenizer's."""
        path = Path(path)
        config, pre = path / "config.json", path / "preprocessor_config.json"
        model_type = json.loads(config.read_text()).get("model_type") if config.exists() else None
        if model_type not in OMNI_MODEL_TYPES or not pre.exists():
            raise FileNotFoundError(f"{path} is not a Qwen2.5-Omni checkpoint: needs config.json with model_type "
                                    f"{' or '.join(OMNI_MODEL_TYPES)} (found {model_type!r}) and {pre.name}")
        model, info = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
            path, dtype=dtype, output_loading_info=True)
        _check_loaded(path, info)
        tokenizer = AutoTokenizer.from_pretrained(path)
        template = path / "chat_template.json"
        if template.exists():
            tokenizer.chat_template = json.loads(template.read_text())["chat_template"]
        if not tokenizer.chat_template:
            raise ValueError(f"{path}: no chat template (chat_template.json or the tokenizer's)")
        return cls(model, tokenizer, json.loads(pre.read_text()))

    @classmethod
    def from_config(cls, config: Qwen2_5OmniThinkerConfig, tokenizer, min_pixels: int, max_pixels: int,
                    total_pixels: int = VIDEO_TOTAL_PIXELS) -> OmniModel:
        """Random weights. `min_pixels` / `max_pixels` bound one image or video frame,
        `total_pixels` all frames of a video; the audio features are the released ones."""
        v = config.vision_config
        preprocess_cfg = {
            "processor_class": "Qwen2_5OmniProcessor",
            "image_processor_type": "Qwen2VLImageProcessor",
            "min_pixels": min_pixels,
            "max_pixels": max_pixels,
            "video_min_pixels": min_pixels,
            "video_max_pixels": max_pixels,
            "video_total_pixels": total_pixels,
            "patch_size": v.patch_size,
            "temporal_patch_size": v.temporal_patch_size,
            "merge_size": v.spatial_merge_size,
            "image_mean": list(CLIP_MEAN),
            "image_std": list(CLIP_STD),
            **_feature_settings(omni_feature_extractor()),
        }
        return cls(Qwen2_5OmniThinkerForConditionalGeneration(config), tokenizer, preprocess_cfg)


# tensors of a released folder that are not the thinker's
_OTHER_PARTS = ("talker.", "token2wav.")


def _check_loaded(path: Path, info: dict) -> None:
    """Refuse a folder that left thinker tensors at their random initialisation, or held
    tensors that are neither the thinker's nor the talker's / token2wav's."""
    missing = sorted(info.get("missing_keys", ()))
    stray = sorted(k for k in info.get("unexpected_keys", ()) if not k.startswith(_OTHER_PARTS))
    if missing or stray:
        raise ValueError(f"{path}: the checkpoint does not match the thinker: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected {stray[:5]}{' ...' if len(stray) > 5 else ''}")
