"""Flow-matching text-to-image and text-to-video models for Flow-GRPO, held as diffusers
pipelines:

- `sd3`: Stable-Diffusion-3 style (`StableDiffusion3Pipeline`: `SD3Transformer2DModel`, a
  2-D `AutoencoderKL`, two CLIP text encoders with projection and a T5 encoder);
- `wan`: Wan2.1 style (`WanPipeline`: `WanTransformer3DModel`, `AutoencoderKLWan`, a UMT5
  encoder).

A released folder (Stable Diffusion 3.5-medium, Wan2.1-T2V-1.3B-Diffusers) loads by path
(`model_index.json` names the pipeline); toy sizes are built locally from configs with
random weights and the tokenizers of harness/gen/tokenizer.py. `save_pretrained` writes the
same diffusers layout, so a trained folder loads in diffusers as it is.

Only the transformer trains: it is this module's one registered child, so `state_dict()`,
the optimizer and the checkpoints hold it alone; the VAE and text encoders are frozen
parts of the pipeline and are written only with the whole folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

KINDS = ("sd3", "wan")
# LoRA's target modules by default: Flow-GRPO's for SD3 (scripts/train_sd3.py: every
# attention projection, the joint text stream's included); for Wan its self- and
# cross-attention projections
LORA_TARGETS = {
    "sd3": ("attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
            "attn.to_k", "attn.to_out.0", "attn.to_q", "attn.to_v"),
    "wan": ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
            "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"),
}
LORA_FILE = "lora.safetensors"
_PIPELINES = {"StableDiffusion3Pipeline": "sd3", "WanPipeline": "wan"}
NUM_TRAIN_TIMESTEPS = 1000  # diffusers' flow-matching schedulers: timestep = sigma * 1000


@dataclass
class TextCond:
    """Text-encoder outputs of prompts: embeds [B, S, D], and for sd3 the pooled [B, P]."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def select(self, idx: list[int] | torch.Tensor) -> TextCond:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TextCond(self.embeds[idx], None if self.pooled is None else self.pooled[idx])

    @staticmethod
    def cat(conds: list[TextCond]) -> TextCond:
        pooled = None if conds[0].pooled is None else torch.cat([c.pooled for c in conds])
        return TextCond(torch.cat([c.embeds for c in conds]), pooled)


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA adapter on the transformer's `targets` (peft through diffusers' adapter
    support; A Gaussian, B zero at the start, so the adapted model starts as the base)."""

    rank: int
    alpha: float
    targets: tuple[str, ...]

    def config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, init_lora_weights="gaussian",
                          target_modules=list(self.targets))


class GenModel(nn.Module):
    def __init__(self, kind: str, pipe, shift: float, max_text_len: int, transformer: nn.Module | None = None,
                 base_only: bool = False):
        """`transformer`: another transformer over the same frozen parts (the reference
        model of the KL term); default the pipeline's. `base_only`: run it with its LoRA
        adapter off (the reference of a LoRA run is the base model)."""
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown generation model kind {kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        self.transformer = pipe.transformer if transformer is None else transformer
        self.pipe = pipe  # a diffusers pipeline, not a module: its frozen parts stay out of state_dict
        self.shift = float(shift)  # the flow schedule's shift (SD3.5 and Wan2.1: 3.0)
        self.max_text_len = max_text_len  # T5 / UMT5 tokens per prompt
        self.base_only = base_only
        self.lora: LoraSpec | None = None
        self.source: Path | None = None  # the folder it was loaded from (a LoRA checkpoint's base)
        for part in self._frozen_parts():
            part.requires_grad_(False).eval()

    def add_lora(self, spec: LoraSpec) -> None:
        """Train a LoRA adapter instead of the whole transformer: only its weights require
        gradients (and so reach the optimizer and the checkpoints)."""
        if self.lora is not None:
            raise ValueError("the transformer already has a LoRA adapter")
        self.transformer.add_adapter(spec.config())
        self.lora = spec

    def frozen_copy(self) -> GenModel:
        """The reference policy: a frozen copy of the transformer over the same frozen parts;
        with LoRA, the same transformer with its adapter off (the base, never trained)."""
        if self.lora is not None:
            return GenModel(self.kind, self.pipe, self.shift, self.max_text_len, self.transformer, base_only=True)
        twin = copy.deepcopy(self.transformer).requires_grad_(False).eval()
        return GenModel(self.kind, self.pipe, self.shift, self.max_text_len, transformer=twin)

    def sharding_units(self) -> list[nn.Module]:
        """ZeRO-2/3 units, inner first: each transformer block, then the transformer itself
        (its patch and time embeddings, norms, output projection and, for Wan, the root's
        `scale_shift_table`). The transformer runs as one call, so the units nest."""
        blocks = self.transformer.transformer_blocks if self.kind == "sd3" else self.transformer.blocks
        return [*blocks, self.transformer]

    def copy_shares(self) -> list[nn.Module]:
        """What a copy of this model shares instead of duplicating (sharding's whole-model
        copies): the pipeline's frozen parts."""
        return self._frozen_parts()

    def set_activation_checkpointing(self, on: bool) -> None:
        if on:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()

    def _frozen_parts(self) -> list[nn.Module]:
        p = self.pipe
        names = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")
        return [getattr(p, n) for n in names if getattr(p, n, None) is not None]

    def place(self, device: str | torch.device, dtype: torch.dtype) -> GenModel:
        """Every part on `device`; the transformer in `dtype` (fp32 master weights with a
        bf16 compute dtype), the frozen parts too, except the VAE, kept in fp32 as
        diffusers' SD3 and Wan pipelines run it."""
        for part in [self.transformer, *self._frozen_parts()]:
            # the VAE stays in fp32 (from_pretrained upcasts it); casting only when needed
            # keeps diffusers from warning about modules it keeps in fp32
            want = torch.float32 if part is self.pipe.vae else dtype
            part.to(device=device)
            if next(part.parameters()).dtype != want:
                part.to(dtype=want)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # --- text ------------------------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> TextCond:
        """The pipeline's own prompt encoding (CLIP x2 + T5 for sd3, UMT5 for wan)."""
        if self.kind == "sd3":
            embeds, _, pooled, _ = self.pipe.encode_prompt(
                prompt=prompts, prompt_2=None, prompt_3=None, do_classifier_free_guidance=False,
                max_sequence_length=self.max_text_len, device=self.device)
            return TextCond(embeds, pooled)
        embeds, _ = self.pipe.encode_prompt(prompt=prompts, do_classifier_free_guidance=False,
                                            max_sequence_length=self.max_text_len, device=self.device)
        return TextCond(embeds)

    # --- the flow --------------------------------------------------------------------

    def sigmas(self, num_steps: int) -> torch.Tensor:
        """The sampling schedule [num_steps + 1], 1 down to 0: diffusers' flow-matching Euler
        scheduler with this model's shift (its `set_timesteps` rule), float64 on the host."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=self.shift)
        sched.set_timesteps(num_steps, device="cpu")
        return sched.sigmas.double()

    def velocity(self, latents: torch.Tensor, sigma: torch.Tensor, cond: TextCond,
                 uncond: TextCond | None, guidance: float) -> torch.Tensor:
        """The transformer's velocity [B, ...] at latents [B, ...] and sigma [B], with
        classifier-free guidance `uncond + g (cond - uncond)` when `uncond` is given (one
        batched call over [uncond; cond], as diffusers' SD3 pipeline does)."""
        t = sigma.to(latents.device, torch.float32) * NUM_TRAIN_TIMESTEPS  # [B]
        if uncond is None:
            return self._forward(latents, t, cond)
        both = self._forward(torch.cat([latents, latents]), torch.cat([t, t]), TextCond.cat([uncond, cond]))
        v_uncond, v_cond = both.chunk(2)
        return v_uncond + guidance * (v_cond - v_uncond)

    def _forward(self, latents: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        if not self.base_only:
            return self._transformer_call(latents, t, cond)
        self.transformer.disable_adapters()
        try:
            return self._transformer_call(latents, t, cond)
        finally:
            self.transformer.enable_adapters()

    def _transformer_call(self, latents: torch.Tensor, t: torch.Tensor, cond: TextCond) -> torch.Tensor:
        dtype = next(self.transformer.parameters()).dtype
        x, text = latents.to(dtype), cond.embeds.to(latents.device, dtype)
        if self.kind == "sd3":
            out = self.transformer(hidden_states=x, encoder_hidden_states=text,
                                   pooled_projections=cond.pooled.to(latents.device, dtype), timestep=t,
                                   return_dict=False)[0]
        else:
            out = self.transformer(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        return out.float()

    # --- pixels ----------------------------------------------------------------------

    def latent_shape(self, height: int, width: int, frames: int = 1) -> tuple[int, ...]:
        """One sample's latent shape: [C, h, w] (sd3) or [C, f, h, w] (wan)."""
        c = self.transformer.config.in_channels
        if self.kind == "sd3":
            f = self.pipe.vae_scale_factor
            _check_multiple("height/width", (height, width), f * self.transformer.config.patch_size)
            return (c, height // f, width // f)
        fs, ft = self.pipe.vae_scale_factor_spatial, self.pipe.vae_scale_factor_temporal
        _check_multiple("height/width", (height, width), fs * self.transformer.config.patch_size[1])
        if (frames - 1) % ft:
            raise ValueError(f"frames={frames}: the Wan VAE takes 1 + {ft}k frames")
        return (c, (frames - 1) // ft + 1, height // fs, width // fs)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (images [B, 3, H, W], videos [B, F, 3, H, W]) -> the latents the
        transformer sees (the VAE posterior's mean, normalised): `decode`'s inverse."""
        vae = self.pipe.vae
        x = pixels.to(self.device, torch.float32) * 2 - 1
        if self.kind == "sd3":
            z = vae.encode(x).latent_dist.mean  # [B, C, h, w]
            return (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor
        z = vae.encode(x.transpose(1, 2)).latent_dist.mean  # [B, C, f, h, w]
        mean, std = _wan_stats(vae, z.device)
        return (z - mean) / std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> pixels in [0, 1]: images [B, 3, H, W] or videos [B, F, 3, H, W]."""
        vae = self.pipe.vae
        z = latents.to(self.device, torch.float32)
        if self.kind == "sd3":
            z = z / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
            pixels = vae.decode(z, return_dict=False)[0]  # [B, 3, H, W]
        else:
            mean, std = _wan_stats(vae, z.device)
            pixels = vae.decode(z * std + mean, return_dict=False)[0].transpose(1, 2)  # [B, F, 3, H, W]
        return (pixels / 2 + 0.5).clamp(0, 1)

    # --- persistence -----------------------------------------------------------------

    def save_pretrained(self, out: str | Path) -> None:
        """The whole pipeline in diffusers' layout. With LoRA: the adapter fused into a copy
        of the transformer (the folder loads as a plain pipeline), and the adapter itself in
        `lora/`, as the pipeline's `save_lora_weights` writes it (for `load_lora_weights`
        onto the base pipeline)."""
        out = Path(out)
        pipe = self.pipe
        if self.lora is not None:
            with torch.no_grad():
                fused = copy.deepcopy(self.transformer)
                fused.fuse_lora()
                fused.unload_lora()
            pipe = copy.copy(pipe)  # the same parts and settings, the fused transformer swapped in
            pipe.register_modules(transformer=fused)
            from peft.utils import get_peft_model_state_dict

            # the pipeline's own LoRA format: `pipe.load_lora_weights(out / "lora")` reads it
            # with the adapter's config (rank, alpha, targets) as its metadata: without it the
            # loader assumes alpha = rank
            type(pipe).save_lora_weights(out / "lora", transformer_lora_layers=get_peft_model_state_dict(
                self.transformer), transformer_lora_adapter_metadata=self.transformer.peft_config["default"].to_dict())
        pipe.save_pretrained(out)
        _write_json(out / "harness_gen.json", {"kind": self.kind, "shift": self.shift,
                                               "max_text_len": self.max_text_len})

    def save_trainable(self, out: str | Path) -> None:
        """What a checkpoint holds: the transformer alone (diffusers' layout, `transformer/`),
        or with LoRA the adapter's weights alone (`lora.safetensors`, keys as `state_dict()`'s);
        the frozen parts (and a LoRA run's base) come back from the run's model folder."""
        out = Path(out)
        if self.lora is None:
            self.transformer.save_pretrained(out / "transformer")
            _write_json(out / "harness_gen.json", {"kind": self.kind, "checkpoint": "transformer"})
            return
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if _is_lora(k)},
                  out / LORA_FILE)
        _write_json(out / "harness_gen.json", {"kind": self.kind, "checkpoint": "lora adapter",
                                               "lora": self._lora_record()})

    def load_trainable(self, folder: str | Path) -> dict[str, torch.Tensor]:
        """The tensors a `save_trainable` folder holds (keys as `state_dict()`'s): the whole
        transformer, or a LoRA adapter alone (the frozen base stays as loaded), checked to be
        this model's adapter (rank, alpha, targets) on this base."""
        folder = Path(folder)
        if self.lora is None:
            dtype = next(self.transformer.parameters()).dtype
            loaded = type(self.transformer).from_pretrained(folder / "transformer", dtype=dtype)
            return {f"transformer.{k}": v for k, v in loaded.state_dict().items()}
        saved = json.loads((folder / "harness_gen.json").read_text()).get("lora")
        if saved != self._lora_record():
            raise ValueError(f"{folder} holds a LoRA adapter of another setting or base ({saved}); this run's is "
                             f"{self._lora_record()}")
        return load_file(folder / LORA_FILE)

    def _lora_record(self) -> dict:
        """What a LoRA checkpoint must match to resume: the adapter's settings and the base
        (its transformer folder's config and weight files by name and size)."""
        base = None
        if self.source is not None:
            folder = self.source / "transformer"
            files = sorted((f.name, f.stat().st_size) for f in folder.glob("*.safetensors"))
            base = hashlib.sha256(json.dumps([(folder / "config.json").read_text(), files]).encode()).hexdigest()
        spec = self.lora
        return {"rank": spec.rank, "alpha": spec.alpha, "targets": list(spec.targets), "base": base}

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> GenModel:
        """A diffusers pipeline folder: a released one, or one this harness wrote."""
        path = Path(path)
        index = path / "model_index.json"
        if not index.is_file():
            raise FileNotFoundError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
        name = json.loads(index.read_text()).get("_class_name")
        if name not in _PIPELINES:
            raise ValueError(f"{index}: pipeline {name!r} is not supported; {', '.join(_PIPELINES)} are")
        kind = _PIPELINES[name]
        import diffusers

        pipe = getattr(diffusers, name).from_pretrained(path, dtype=dtype)
        pipe.vae.to(torch.float32)  # decoded in fp32, as diffusers' SD3 and Wan pipelines upcast it
        ours = path / "harness_gen.json"
        extra = json.loads(ours.read_text()) if ours.is_file() else {}
        sched = pipe.scheduler.config
        shift = extra.get("shift", sched.get("shift", sched.get("flow_shift", 1.0)))
        # the anchors' text lengths: T5 128 tokens for SD3 (Flow-GRPO), UMT5 512 for Wan (diffusers)
        max_len = extra.get("max_text_len", 128 if kind == "sd3" else 512)
        model = cls(kind, pipe, shift, max_len)
        model.source = path
        return model


def _wan_stats(vae, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The Wan VAE's per-channel latent mean and std, shaped [1, C, 1, 1, 1]."""
    shape = (1, -1, 1, 1, 1)
    return (torch.tensor(vae.config.latents_mean, device=device).view(shape),
            torch.tensor(vae.config.latents_std, device=device).view(shape))


def _is_lora(key: str) -> bool:
    return ".lora_A." in key or ".lora_B." in key


def _check_multiple(what: str, values: tuple[int, ...], factor: int) -> None:
    if any(v % factor for v in values):
        raise ValueError(f"{what} {values} must be multiples of {factor} (VAE factor x patch size)")


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")
