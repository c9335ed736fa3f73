"""What a VILA-series checkpoint folder says about its model, read and checked before any
weights load.

The released layout (LongVILA-R1-7B, NVILA; facts from NVlabs/Long-RL
`verl/utils/vila_remote_code/`: `configuration_vila.py`, `modeling_vila.py`,
`siglip_encoder.py`, `media_encoder.py`, `mm_utils.py`, `constants.py`):

    DIR/config.json        VILAConfig: model_type "vila", llm_cfg / vision_tower_cfg /
                           mm_projector_cfg, mm_vision_select_layer / _feature,
                           image_aspect_ratio, video_encoder (a JSON string), s2, ...
    DIR/llm/               Qwen2ForCausalLM weights + the tokenizer (media tokens added)
    DIR/vision_tower/      SiglipVisionModel weights + preprocessor_config.json
    DIR/mm_projector/      config.json (mm_projector_type only) + model.safetensors

A setting this harness does not implement (S2 tiling, time tokens, start/end image
tokens, another tower, a video encoder other than the basic and the one-pool TSP one)
stops the load with its name: a silently different model is worse than none.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from harness.model import vila_projector

log = logging.getLogger(__name__)

# constants.py: the media tokens VILA adds to the Qwen2 tokenizer
MEDIA_TOKENS = {"image": "<image>", "video": "<vila/video>"}
SENTINEL_TOKEN = "<vila/sentinel>"

# configuration_vila.py's default when a config names no video encoder
_DEFAULT_VIDEO_ENCODER = {"_target_": "llava.model.encoders.BasicVideoEncoder"}
_SELECT_FEATURES = ("patch", "cls_patch")
# mm_utils.process_image: what each value does to a video frame (videos never take the
# dynamic tiling paths, which are for single images; SigLIP's processor then resizes)
_ASPECT = {None: "resize", "resize": "resize", "pad": "pad", "dynamic": "resize", "dynamic_s2": "resize"}


@dataclass(frozen=True)
class VideoEncoderSpec:
    """How a video's frame features become its rows in the prompt (media_encoder.py).

    `pool`: (time, rows, cols) mean-pooling sizes of TSPVideoEncoder, (1, 1, 1) for the
    basic encoder. `start_tokens` / `end_tokens`: text embedded before / after each
    (pooled) frame's tokens; the basic encoder's default end is "\\n", the 257th token
    per frame of LongVILA's 256 + 1.
    """

    pool: tuple[int, int, int] = (1, 1, 1)
    start_tokens: str | None = None
    end_tokens: str | None = "\n"


@dataclass(frozen=True)
class VilaSpec:
    projector_type: str
    select_layer: int
    select_feature: str  # "cls_patch": every tower token; "patch": drops the first
    aspect: str  # "resize" | "pad": how a frame becomes the tower's square input
    video_encoder: VideoEncoderSpec
    chat_template: str | None  # a jinja file named by the config, None: the tokenizer's
    # "released": `<vila/video>` in string content, pad/eos ids dropped (the released code);
    # "harness-v0": this harness before it read the released layout (Qwen's `<|video_pad|>`
    # placeholder, every id kept), for checkpoints trained that way
    prompt_format: str = "released"
    # the config's own image_aspect_ratio: "dynamic" tiles a prompt's single image
    # (harness/data/image_tiles.py) into min_tiles..max_tiles tiles; "dynamic_s2" tiles it at
    # several scales for the S2 tower (not implemented: such a model takes no images here);
    # video frames always resize
    image_aspect: str = "resize"
    tiles: tuple[int, int] = (1, 12)  # (min_tiles, max_tiles), VILAConfig's defaults

    @property
    def tiles_images(self) -> bool:
        return self.image_aspect == "dynamic"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: not a VILA checkpoint folder") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def parse_video_encoder(value: object, where: str) -> VideoEncoderSpec:
    """`video_encoder` as configuration_vila.py stores it: a JSON string (or a dict) with a
    `_target_` class path and its constructor arguments."""
    if value is None:
        value = _DEFAULT_VIDEO_ENCODER
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: video_encoder is not JSON ({err})") from None
    if not isinstance(value, dict) or "_target_" not in value:
        raise ValueError(f"{where}: video_encoder must name a _target_, got {value!r}")
    args = dict(value)
    target = str(args.pop("_target_")).rsplit(".", 1)[-1]
    start, end = args.pop("start_tokens", None), args.pop("end_tokens", "\n")
    if target == "BasicVideoEncoder":
        pool = (1, 1, 1)
    elif target == "TSPVideoEncoder":
        pools = args.pop("pool_sizes", None)
        if not isinstance(pools, list) or len(pools) != 1 or len(pools[0]) != 3:
            raise ValueError(f"{where}: TSPVideoEncoder pool_sizes {pools!r} is not implemented "
                             f"(one [time, rows, cols] pool is)")
        pool = tuple(int(p) for p in pools[0])
        if args.pop("sep_tokens", None) is not None:
            raise ValueError(f"{where}: TSPVideoEncoder sep_tokens are not implemented")
        if str(args.pop("embed_time", "False")) != "False":
            raise ValueError(f"{where}: TSPVideoEncoder embed_time is not implemented")
    else:
        raise ValueError(f"{where}: video encoder {target!r} is not implemented "
                         f"(BasicVideoEncoder and TSPVideoEncoder are)")
    if args:
        raise ValueError(f"{where}: video_encoder settings {sorted(args)} are not implemented")
    return VideoEncoderSpec(pool, start, end)


def read_spec(path: str | Path) -> VilaSpec:
    """Read and check DIR/config.json and DIR/mm_projector/config.json."""
    path = Path(path)
    top = _json(path / "config.json")
    where = str(path / "config.json")
    for key in ("s2", "dynamic_s2", "mm_use_im_start_end", "mm_use_im_patch_token"):
        if top.get(key):
            raise ValueError(f"{where}: {key}={top[key]!r} is not implemented (S2 tiling and image "
                             f"start/end tokens are not part of this harness)")
    if (top.get("video_max_tiles") or 1) > 1 and top.get("image_aspect_ratio") in ("dynamic", "dynamic_s2"):
        # modeling_vila.py's generate_content tiles every frame then, its processor does not
        raise ValueError(f"{where}: video_max_tiles={top['video_max_tiles']} (tiled video frames) is not "
                         f"implemented; frames are resized whole")
    if top.get("num_time_tokens"):
        raise ValueError(f"{where}: num_time_tokens={top['num_time_tokens']} (time tokens) is not implemented")
    tower = _json(path / "vision_tower" / "config.json")
    arch = (tower.get("architectures") or [tower.get("model_type", "?")])[0]
    if "siglip" not in str(arch).lower():
        raise ValueError(f"{path / 'vision_tower'}: vision tower {arch!r} is not implemented (SigLIP is)")
    image_size = int(tower.get("image_size", 0))
    resolution = top.get("vision_resolution")
    if resolution not in (None, -1, image_size):
        raise ValueError(f"{where}: vision_resolution={resolution} differs from the tower's image_size "
                         f"{image_size}; interpolating position embeddings is not implemented")
    proj = _json(path / "mm_projector" / "config.json")
    ptype = proj.get("mm_projector_type") or top.get("mm_projector_type")
    if not ptype or not vila_projector.supported(ptype):
        raise ValueError(f"{path / 'mm_projector'}: projector type {ptype!r} is not implemented; "
                         f"supported: {sorted(vila_projector.MERGE)} and mlp<N>x_gelu")
    feature = top.get("mm_vision_select_feature") or "patch"
    if feature not in _SELECT_FEATURES:
        raise ValueError(f"{where}: mm_vision_select_feature {feature!r} is not one of {_SELECT_FEATURES}")
    aspect = top.get("image_aspect_ratio")
    if aspect not in _ASPECT:
        raise ValueError(f"{where}: image_aspect_ratio {aspect!r} is not one of {sorted(map(str, _ASPECT))}")
    layer = top.get("mm_vision_select_layer", -2)
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise ValueError(f"{where}: mm_vision_select_layer must be an integer, got {layer!r}")
    tiles = (top.get("min_tiles", 1), top.get("max_tiles", 12))
    if aspect == "dynamic" and (not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in tiles)
                                or tiles[0] > tiles[1]):
        raise ValueError(f"{where}: min_tiles / max_tiles {tiles} must be integers with 1 <= min_tiles <= "
                         f"max_tiles (image_aspect_ratio 'dynamic' tiles images by them)")
    prompt_format = top.get("harness_prompt_format", "released")
    if "harness_family" in top and "video_encoder" not in top:
        # Written by this harness before it saved the released layout: every tower token
        # (it wrote "patch" but kept all), no end token per frame, Qwen's placeholder
        # prompt. That is what such a checkpoint was trained with, so it is read that way.
        log.info("%s: a checkpoint of the harness's first vila layout; read with its own prompt format", path)
        feature, encoder, prompt_format = "cls_patch", VideoEncoderSpec(end_tokens=None), "harness-v0"
    else:
        encoder = parse_video_encoder(top.get("video_encoder"), where)
    if prompt_format not in ("released", "harness-v0"):
        raise ValueError(f"{where}: harness_prompt_format {prompt_format!r} is not 'released' or 'harness-v0'")
    return VilaSpec(
        projector_type=ptype,
        select_layer=layer,
        select_feature=feature,
        aspect=_ASPECT[aspect],
        image_aspect=aspect or "resize",
        tiles=tiles if aspect == "dynamic" else VilaSpec.tiles,
        video_encoder=encoder,
        chat_template=top.get("chat_template"),
        prompt_format=prompt_format,
    )


def load_chat_template(path: Path, name: str) -> str:
    """A template named by the config (`chat_template`) is a jinja file in the checkpoint
    folder; the released loader strips its indentation and newlines (utils.py)."""
    fpath = path / f"{name}.jinja"
    if not fpath.exists():
        raise FileNotFoundError(f"{path / 'config.json'} names chat_template {name!r} but {fpath} is missing")
    return fpath.read_text().replace("    ", "").replace("\n", "")


# Remote-code entry points of a VILA checkpoint folder (Long-RL copies
# verl/utils/vila_remote_code/*.py into it and loads with trust_remote_code)
AUTO_MAP = {
    "AutoConfig": "configuration_vila.VILAConfig",
    "AutoModel": "modeling_vila.VILAForCausalLM",
    "AutoModelForCausalLM": "modeling_vila.VILAForCausalLM",
    "AutoProcessor": "auto_processor.VILAProcessor",
}


def top_config(spec: VilaSpec, llm_hidden: int, vision_hidden: int, image_size: int,
               loaded: dict | None = None) -> dict:
    """DIR/config.json in the released VILAConfig form (what the authors' code reads): the
    config the model was loaded with, its keys kept, with the keys this harness decides
    written anew. A fresh model gets Long-RL's `auto_map` and script defaults
    (`num_video_frames` 256, `fps` 0: the rollout's settings in longvila_7b_video_grpo.sh)."""
    enc = spec.video_encoder
    if enc.pool == (1, 1, 1):
        video_encoder = {"_target_": "llava.model.encoders.BasicVideoEncoder"}
    else:
        video_encoder = {"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [list(enc.pool)]}
    video_encoder.update(start_tokens=enc.start_tokens, end_tokens=enc.end_tokens)
    out = {k: v for k, v in (loaded or {}).items() if k not in ("harness_family", "harness_prompt_format")}
    out.setdefault("auto_map", dict(AUTO_MAP))
    out.setdefault("num_video_frames", 256)
    out.setdefault("fps", 0.0)
    out.setdefault("llm_cfg", {"architectures": ["Qwen2ForCausalLM"], "_name_or_path": "llm"})
    out.setdefault("vision_tower_cfg", {"architectures": ["SiglipVisionModel"], "_name_or_path": "vision_tower"})
    projector_cfg = out.get("mm_projector_cfg") if isinstance(out.get("mm_projector_cfg"), dict) else {}
    out.update({
        "architectures": ["VILAForCausalLM"],
        "model_type": "vila",
        "mm_projector_cfg": {"architectures": ["MultimodalProjector"], "_name_or_path": "mm_projector",
                             **projector_cfg, "mm_projector_type": spec.projector_type},
        "hidden_size": llm_hidden,
        "mm_hidden_size": vision_hidden,
        "image_aspect_ratio": spec.image_aspect,
        "mm_vision_select_layer": spec.select_layer,
        "mm_vision_select_feature": spec.select_feature,
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "s2": False,
        "dynamic_s2": False,
        "num_time_tokens": 0,
        "vision_resolution": image_size,
        "image_encoder": json.dumps({"_target_": "llava.model.encoders.BasicImageEncoder"}),
        "video_encoder": json.dumps(video_encoder),
        "chat_template": None,  # the tokenizer saved beside carries the template in use
        "model_dtype": out.get("model_dtype", "torch.bfloat16"),
        # truthy, so the released builders load the parts' weights instead of initialising them
        "resume_path": out.get("resume_path") or ".",
    })
    if spec.prompt_format != "released":
        out["harness_prompt_format"] = spec.prompt_format
    if spec.tiles_images:
        out.update(min_tiles=spec.tiles[0], max_tiles=spec.tiles[1])
    return out
