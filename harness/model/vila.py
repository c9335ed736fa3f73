"""The `vila` family: LongVILA's architecture (SigLIP vision tower -> patch-merging MLP
projector -> Qwen2 causal LM with ordinary 1-D positions), read and written in the layout
of the released VILA-series checkpoints (LongVILA-R1-7B), so a downloaded checkpoint loads
from its folder and what we train loads in the authors' code and in vLLM (`llm/`):

    DIR/config.json           VILAConfig (`harness/model/vila_config.py` reads and checks it)
    DIR/llm/                  Qwen2ForCausalLM + tokenizer with VILA's media tokens
    DIR/vision_tower/         SiglipVisionModel + preprocessor_config.json
    DIR/mm_projector/         config.json (mm_projector_type) + model.safetensors

What the released code does, and this class reproduces (NVlabs/Long-RL
`verl/utils/vila_remote_code/`):
- a frame is resized to the tower's square input ("pad" first centres it on a square of the
  mean colour), features are the `mm_vision_select_layer` hidden state (-2), "cls_patch"
  keeping every token, "patch" dropping the first (siglip_encoder.py `feature_select`);
- the projector merges k x k patches into one token (`vila_projector.py`);
- the video encoder named in the config (media_encoder.py): each frame's (or, for
  TSPVideoEncoder, each pool of frames') tokens followed by the embedding of its end text,
  "\\n" by default: LongVILA's 256 + 1 = 257 rows per frame;
- an image (modeling_vila.py `encoders["image"]`, a BasicImageEncoder with its defaults;
  the "resize" / "pad" aspect, one tile per image, mm_utils.py `process_images`) is one
  frame through the same tower and projector, never time-pooled, followed by the "\\n"
  embedding once;
- the prompt is the tokenizer's own chat template over the user text: the content's parts
  in order, `<image>` / `<vila/video>` for each medium and the text as it is (media.py
  `extract_media`), tokenised, and every pad or eos id dropped before the embeddings are
  formed (modeling_vila.py `_embed` skips `pad_token_list`; its third entry is a token
  string, never equal to an id, so only those two ids drop). Each medium's rows replace
  its token.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

from harness.data.image_tiles import dynamic_tiles, tile_count
from harness.data.video import preprocess_siglip
from harness.errors import HarnessError
from harness.model.interface import MediaEmbeds, PromptEmbeds, VideoLM, VideoPixels, mean_spacing
from harness.model.positions import linear_positions
from harness.model.vila_config import (
    MEDIA_TOKENS,
    SENTINEL_TOKEN,
    VideoEncoderSpec,
    VilaSpec,
    load_chat_template,
    read_spec,
    top_config,
)
from harness.model.vila_projector import Projector

log = logging.getLogger(__name__)

# The toy models' defaults: LongVILA-R1-7B's projector and encoder settings.
DEFAULT_SPEC = VilaSpec(
    projector_type="mlp_downsample_2x2_fix",
    select_layer=-2,
    select_feature="cls_patch",
    aspect="resize",
    video_encoder=VideoEncoderSpec(),
    chat_template=None,
)
SIGLIP_MEAN = (0.5, 0.5, 0.5)


# BasicImageEncoder as modeling_vila.py builds it: no start text, "\n" after each image
IMAGE_ENCODER = VideoEncoderSpec()


class VilaModel(VideoLM):
    family = "vila"
    media_kinds = ("image", "video")

    def __init__(
        self,
        vision_tower: SiglipVisionModel,
        projector: Projector,
        llm: Qwen2ForCausalLM,
        tokenizer,
        spec: VilaSpec = DEFAULT_SPEC,
        image_mean: tuple[float, ...] = SIGLIP_MEAN,
        image_std: tuple[float, ...] = SIGLIP_MEAN,
        loaded_config: dict | None = None,
    ):
        """`loaded_config`: the top-level config.json a checkpoint was read from; saving
        keeps its keys (auto_map, num_video_frames, ...)."""
        super().__init__()
        self.vision_tower = vision_tower
        self.mm_projector = projector
        self.llm = llm
        self.tokenizer = tokenizer
        self.spec = spec
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.loaded_config = dict(loaded_config or {})
        if spec.prompt_format == "harness-v0" or spec.image_aspect == "dynamic_s2":
            self.media_kinds = ("video",)  # no image path here for these: see _no_medium
        _check_geometry(spec, vision_tower.config, projector.merge)

    def _no_medium(self, kind: str) -> HarnessError:
        err = super()._no_medium(kind)
        if kind != "image":
            return err
        if self.spec.prompt_format == "harness-v0":
            return HarnessError(f"{err}: a checkpoint of the harness's first vila layout was trained on videos only")
        if self.spec.image_aspect == "dynamic_s2":
            return HarnessError(f"{err}: its image_aspect_ratio 'dynamic_s2' tiles an image at several scales for "
                                f"the S2 vision tower, which is not implemented ('resize', 'pad' and 'dynamic' are)")
        return err

    @property
    def language_model(self) -> nn.Module:
        return self.llm.model

    @property
    def lm_head(self) -> nn.Module:
        return self.llm.lm_head

    def vision_modules(self) -> tuple[nn.Module, nn.Module]:
        return self.vision_tower, self.mm_projector

    @property
    def video_token_id(self) -> int:
        if self.spec.prompt_format == "harness-v0":
            return super().video_token_id
        return self.tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["video"])

    @property
    def image_size(self) -> int:
        return self.vision_tower.config.image_size

    @property
    def patch_grid(self) -> int:
        return self.image_size // self.vision_tower.config.patch_size

    @property
    def frames_per_unit(self) -> int:
        return self.spec.video_encoder.pool[0]

    def preprocess(self, frames: np.ndarray, timestamps: np.ndarray,
                   frame_seconds: float | None = None) -> VideoPixels:
        t = self.frames_per_unit
        if len(frames) % t:
            raise ValueError(f"{len(frames)} frames do not split into the video encoder's time pools of "
                             f"{t} (TSPVideoEncoder pool_sizes); sample a multiple of {t} frames")
        s = self.image_size
        x = preprocess_siglip(frames, s, self.image_mean, self.image_std,
                              pad_square=self.spec.aspect == "pad")  # [N, 3, S, S]
        units = x.reshape(len(frames) // t, t, 3, s, s)  # [U, t, 3, S, S]
        grid = self.patch_grid
        spacing = mean_spacing(timestamps) if frame_seconds is None else frame_seconds
        return VideoPixels(units, len(frames), spacing * t, (grid, grid))

    def encoder_settings(self) -> dict:
        return {"family": self.family, "image_mean": list(self.image_mean), "image_std": list(self.image_std),
                "spec": dataclasses.asdict(self.spec),
                "tower": self.vision_tower.config.to_diff_dict(), "projector_merge": self.mm_projector.merge}

    def encode_image(self, image: np.ndarray) -> MediaEmbeds:
        """One image [H, W, 3] uint8 as the released processor and image encoder see it: the
        tower's square input ("pad" centres it on the mean colour first), projected, unpooled.
        Under "dynamic" tiling: every tile, then the thumbnail (one unit each); which of them
        a prompt takes depends on its other images (`build_prompt`)."""
        s = self.image_size
        if self.spec.tiles_images:
            x = dynamic_tiles(image, s, self.image_mean, self.image_std, *self.spec.tiles)  # [N, 3, S, S]
        else:
            x = preprocess_siglip(image[None], s, self.image_mean, self.image_std,
                                  pad_square=self.spec.aspect == "pad")  # [1, 3, S, S]
        side = _merged_side(self.spec, self.vision_tower.config, self.mm_projector.merge)
        units = VideoPixels(x[:, None], len(x), 0.0, (self.patch_grid, self.patch_grid))  # [N, 1, 3, S, S]
        return MediaEmbeds(self._project(units), (side, side), 0.0, kind="image")  # [N, side*side, D]

    def build_prompt(self, input_ids: torch.Tensor,
                     media: MediaEmbeds | list[MediaEmbeds] | tuple = ()) -> PromptEmbeds:
        """As the base. Under "dynamic" tiling a prompt's only image fills one `<image>` per
        tile (`chat_prompt_ids` wrote them); with several images each takes its last unit,
        the whole image resized, which is what the released processor gives them."""
        media = [media] if isinstance(media, MediaEmbeds) else list(media)
        if self.spec.tiles_images:
            images = sum(m.kind == "image" for m in media)
            media = [one for m in media for one in (
                [m] if m.kind != "image" else _units(m) if images == 1 else _units(m)[-1:])]
        return super().build_prompt(input_ids, media)

    def token_grid(self, pixels: VideoPixels) -> tuple[int, int]:
        side = _merged_side(self.spec, self.vision_tower.config, self.mm_projector.merge)
        _, ph, pw = self.spec.video_encoder.pool
        return side // ph, side // pw

    def encode_unit_block(self, pixels: VideoPixels) -> torch.Tensor:
        return _tsp_pool(self._project(pixels), pixels.units.shape[0], self.spec.video_encoder.pool)  # [U, T', D]

    def _project(self, pixels: VideoPixels) -> torch.Tensor:
        """Every frame of the units through the tower and projector: [U*t, T, D]."""
        tower_dtype = next(self.vision_tower.parameters()).dtype
        u, t = pixels.units.shape[:2]
        frames = pixels.units.reshape(u * t, *pixels.units.shape[2:]).to(self.device, tower_dtype)
        out = self.vision_tower(frames, output_hidden_states=True)
        feats = out.hidden_states[self.spec.select_layer]  # [U*t, P, C]
        if self.spec.select_feature == "patch":
            feats = feats[:, 1:]  # the released feature_select drops the first token
        side = math.isqrt(feats.shape[1])
        return self.mm_projector(feats.reshape(u * t, side, side, -1))  # [U*t, T, D]

    def media_rows(self, medium: MediaEmbeds, media_text: torch.Tensor) -> torch.Tensor:
        """Each unit's tokens between its start and end text embeddings, flattened."""
        rows = medium.embeds.to(media_text.device, media_text.dtype)  # [U, T, D]
        around = [media_text[s].expand(rows.shape[0], -1, -1) if s is not None else None  # [U, E, D]
                  for s in self._markers[1][medium.kind]]
        parts = [around[0], rows, around[1]]
        return torch.cat([p for p in parts if p is not None], dim=1).reshape(-1, rows.shape[-1])

    @functools.cached_property
    def _markers(self) -> tuple[tuple[int, ...], dict[str, tuple[slice | None, slice | None]]]:
        """(token ids of every start / end text, tokenised once; per medium kind, where its
        start and end text lie among them). An image is one unit."""
        ids: list[int] = []
        where = {}
        for kind, enc in (("video", self.spec.video_encoder), ("image", IMAGE_ENCODER)):
            places = []
            for text in (enc.start_tokens, enc.end_tokens):
                tokens = [] if text is None else self.tokenizer(text)["input_ids"]
                places.append(slice(len(ids), len(ids) + len(tokens)) if text is not None else None)
                ids += tokens
            where[kind] = tuple(places)
        return tuple(ids), where

    @property
    def media_text_ids(self) -> tuple[int, ...]:
        return self._markers[0]

    def prompt_positions(self, input_ids: torch.Tensor, media: list[MediaEmbeds],
                         spans: tuple[tuple[str, int, int], ...]) -> torch.Tensor:
        return linear_positions(input_ids.shape[0])  # [L]

    def placeholder_id(self, kind: str) -> int:
        if kind == "image" and kind in self.media_kinds:
            return self.tokenizer.convert_tokens_to_ids(MEDIA_TOKENS["image"])
        return super().placeholder_id(kind)

    def chat_prompt_ids(self, question: str | list[dict], system: str | None = None,
                        media: tuple[str, ...] | list[str] = ("video",),
                        image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        if isinstance(question, list):
            if media:
                raise ValueError("give the media either inside the content list or in `media`, not both")
            content = question
        else:
            content = [{"type": kind} for kind in media] + [{"type": "text", "text": question}]
        kinds = [item["type"] for item in content if item["type"] != "text"]
        if "video" in kinds and (len(kinds) > 1):
            raise HarnessError(f"a vila prompt holds one video alone or images only, not {'+'.join(kinds)}")
        for kind in set(kinds) - set(self.media_kinds):
            raise self._no_medium(kind)
        if self.spec.prompt_format == "harness-v0":
            return super().chat_prompt_ids(question, system, media)
        messages = [{"role": "system", "content": system}] if system else []
        # extract_media: the parts in order, each medium as its token, text as it is
        user = "".join(MEDIA_TOKENS[item["type"]] if item["type"] != "text" else item["text"] for item in content)
        if self.spec.tiles_images and kinds == ["image"]:
            # the prompt's only image becomes its tiles, each its own "<image>\n" (the released
            # processor rewrites the text so; tokenize_conversation strips it afterwards)
            if not image_sizes or len(image_sizes) != 1:
                raise ValueError(f"a prompt's single image is tiled under image_aspect_ratio 'dynamic': give its "
                                 f"(height, width) as image_sizes (got {image_sizes!r})")
            (h, w), = image_sizes
            n = tile_count(w, h, self.image_size, *self.spec.tiles)
            user = user.replace(MEDIA_TOKENS["image"], f"{MEDIA_TOKENS['image']}\n" * n)
        messages.append({"role": "user", "content": user.strip()})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        dropped = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id}
        ids = [i for i in self.tokenizer(text)["input_ids"] if i not in dropped]
        return torch.tensor(ids)  # [L]

    # --- vLLM: the Qwen2 LLM alone, fed each prompt's rows -------------------------------
    rollout_inputs = "prompt_embeds"
    rollout_module = "vllm.model_executor.models.qwen2"

    @property
    def rollout_llm(self) -> nn.Module:
        return self.llm

    def rollout_weights(self, state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        # vision tower and projector stay: frozen in RL, and vLLM's LLM has none
        return [(k.removeprefix("llm."), v) for k, v in state.items() if k.startswith("llm.")]

    def rollout_request(self, prompt: PromptEmbeds) -> dict:
        # vLLM gives a prompt_embeds prompt positions 0..L-1: the vila rule, checked per prompt
        if not torch.equal(prompt.positions.cpu(), torch.arange(len(prompt))):
            raise ValueError("vLLM gives a prompt_embeds prompt positions 0..L-1; this prompt's positions differ")
        return {"prompt_embeds": prompt.embeds.detach()}  # [L, D]

    # --- persistence -------------------------------------------------------------------

    def save_pretrained(self, out: str | Path) -> None:
        out = Path(out)
        self.llm.save_pretrained(out / "llm")
        self.tokenizer.save_pretrained(out / "llm")  # carries the chat template in use
        self.vision_tower.save_pretrained(out / "vision_tower")
        vcfg = self.vision_tower.config
        _write_json(out / "vision_tower" / "preprocessor_config.json", {
            "image_processor_type": "SiglipImageProcessor",
            "do_resize": True, "size": {"height": vcfg.image_size, "width": vcfg.image_size},
            "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(self.image_mean), "image_std": list(self.image_std),
        })
        _write_json(out / "mm_projector" / "config.json", {
            "architectures": ["MultimodalProjector"],
            "model_type": "v2l_projector",
            "mm_projector_type": self.spec.projector_type,
        })
        state = {k: v.contiguous() for k, v in self.mm_projector.state_dict().items()}
        save_file(state, out / "mm_projector" / "model.safetensors")
        _write_json(out / "config.json", top_config(self.spec, self.llm.config.hidden_size, vcfg.hidden_size,
                                                    vcfg.image_size, self.loaded_config))

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> VilaModel:
        path = Path(path)
        for part in ("llm", "vision_tower", "mm_projector"):
            if not (path / part).is_dir():
                raise FileNotFoundError(f"{path} is not a vila checkpoint: missing {part}/")
        spec = read_spec(path)
        llm, info = Qwen2ForCausalLM.from_pretrained(path / "llm", dtype=dtype, output_loading_info=True)
        _check_loaded(path / "llm", info)
        tower, info = SiglipVisionModel.from_pretrained(path / "vision_tower", dtype=dtype,
                                                        output_loading_info=True)
        _check_loaded(path / "vision_tower", info, unused_prefixes=("vision_model.head.",))
        tokenizer = _tokenizer(path, spec, llm)
        projector = Projector(spec.projector_type, tower.config.hidden_size, llm.config.hidden_size).to(dtype)
        weights = path / "mm_projector" / "model.safetensors"
        if not weights.exists():
            raise FileNotFoundError(f"{weights} is missing")
        _load_strict(projector, _strip_prefix(load_file(weights)), path / "mm_projector")
        mean, std = _processor_stats(path / "vision_tower", tower.config.image_size)
        loaded = json.loads((path / "config.json").read_text())
        return cls(tower, projector, llm, tokenizer, spec, mean, std, loaded)

    @classmethod
    def from_configs(cls, vision: SiglipVisionConfig, llm_config, tokenizer,
                     spec: VilaSpec = DEFAULT_SPEC) -> VilaModel:
        tower = SiglipVisionModel(vision)
        llm = Qwen2ForCausalLM(llm_config)
        projector = Projector(spec.projector_type, vision.hidden_size, llm_config.hidden_size)
        return cls(tower, projector, llm, tokenizer, spec)


def _units(medium: MediaEmbeds) -> list[MediaEmbeds]:
    """A medium's units, each a medium of its own: [U, T, D] -> U x [1, T, D]."""
    return [dataclasses.replace(medium, embeds=medium.embeds[u : u + 1]) for u in range(medium.embeds.shape[0])]


def _tsp_pool(tokens: torch.Tensor, units: int, pool: tuple[int, int, int]) -> torch.Tensor:
    """tokens [U*t, T, D] -> [U, T / (ph * pw), D]: mean over each unit's t frames and over
    ph x pw blocks of the token grid (TSPVideoEncoder's `pool`; identity for (1, 1, 1))."""
    pt, ph, pw = pool
    if pool == (1, 1, 1):
        return tokens
    side = math.isqrt(tokens.shape[1])
    x = tokens.reshape(units, pt, side // ph, ph, side // pw, pw, -1)  # [U, t, h, ph, w, pw, D]
    return x.mean(dim=(1, 3, 5)).reshape(units, -1, tokens.shape[-1])


def _merged_side(spec: VilaSpec, vcfg, merge: int) -> int:
    grid = vcfg.image_size // vcfg.patch_size
    count = grid * grid - (1 if spec.select_feature == "patch" else 0)
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(
            f"mm_vision_select_feature={spec.select_feature!r} leaves {count} of the tower's {grid * grid} "
            f"tokens, not a square grid: the released projector cannot merge them (SigLIP has no class "
            f"token; VILA's SigLIP checkpoints use 'cls_patch')")
    return -(-side // merge)


def _check_geometry(spec: VilaSpec, vcfg, merge: int) -> None:
    side = _merged_side(spec, vcfg, merge)
    _, ph, pw = spec.video_encoder.pool
    if side % ph or side % pw:
        raise ValueError(f"TSPVideoEncoder pool {spec.video_encoder.pool} does not divide the "
                         f"{side}x{side} token grid")


def _tokenizer(path: Path, spec: VilaSpec, llm: Qwen2ForCausalLM):
    """The checkpoint's tokenizer as the released builder prepares it: media tokens added
    when absent, the config's chat template if it names one, embeddings resized to the
    tokenizer's length (builder.py, modeling_vila.py `init_llm`)."""
    tokenizer = AutoTokenizer.from_pretrained(path / "llm")
    # the sentinel first (infer_stop_tokens adds it), then the media tokens (builder.py)
    wanted = [SENTINEL_TOKEN, *MEDIA_TOKENS.values()] if spec.prompt_format == "released" else []
    missing = [t for t in wanted if t not in tokenizer.get_vocab()]
    if missing:
        log.info("%s: adding %s to the tokenizer, as the released loader does", path, missing)
        tokenizer.add_tokens(missing, special_tokens=True)
    if spec.chat_template:
        tokenizer.chat_template = load_chat_template(path, spec.chat_template)
    if tokenizer.chat_template is None:
        raise ValueError(f"{path / 'llm'}: the tokenizer has no chat template and config.json names none")
    rows = llm.get_input_embeddings().weight.shape[0]
    if rows != len(tokenizer):
        log.info("%s: resizing the LLM's embeddings from %d to the tokenizer's %d rows, as the released "
                 "loader does", path, rows, len(tokenizer))
        llm.resize_token_embeddings(len(tokenizer))
    return tokenizer


def _check_loaded(where: Path, info: dict, unused_prefixes: tuple[str, ...] = ()) -> None:
    """Every tensor in the files must land in the model and every parameter must come from
    them: transformers would otherwise initialise the missing ones at random, silently."""
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(unused_prefixes)]
    problems = {
        "missing from the files (would be random)": missing,
        "in the files but not in the model": list(info.get("unexpected_keys", [])),
        "of another shape": [str(m) for m in info.get("mismatched_keys", [])],
    }
    found = {k: v for k, v in problems.items() if v}
    if found:
        detail = "; ".join(f"{k}: {', '.join(sorted(v)[:5])}{' ...' if len(v) > 5 else ''}" for k, v in found.items())
        raise ValueError(f"{where}: weights do not match the model ({detail})")


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{where}: weights do not match projector type "
                         f"{module.projector_type!r}: {str(err).splitlines()[0]} ...") from None


def _processor_stats(folder: Path, image_size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pre = folder / "preprocessor_config.json"
    if not pre.exists():
        raise FileNotFoundError(f"{pre} is missing (the frames' size and normalisation come from it)")
    cfg = json.loads(pre.read_text())
    size = cfg.get("size", {})
    sides = {size.get("height"), size.get("width")} if isinstance(size, dict) else {size}
    if sides - {None} and sides != {image_size}:
        raise ValueError(f"{pre}: size {size} differs from the tower's image_size {image_size}")
    return tuple(cfg.get("image_mean", SIGLIP_MEAN)), tuple(cfg.get("image_std", SIGLIP_MEAN))


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Some VILA exports prefix projector keys with the module name.
    return {k.split("mm_projector.", 1)[-1]: v for k, v in state.items()}


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
