"""Toy generation models built locally from configs (random weights, local tokenizers):
every part is the released architecture's own diffusers / transformers class at a small
size, assembled into the released pipeline class, so the code paths are the real ones.

    tiny: seconds-scale tests (every weight random)
    toy:  the CPU demo; its VAE is first fit to the toy world (harness/gen/toy_vae.py
          says why), and the transformer pretrained briefly on captioned toy pictures or
          videos (harness/gen/toy_pretrain.py); the text encoders stay random

Sizes (latent channels 4 instead of 16; the VAE downsamples 4x in space for sd3, 2x in
space and time for wan) keep a 32 x 32 image or a 5-frame 16 x 16 video a few hundred
latent elements.
"""

from __future__ import annotations

import torch

from harness.gen.models import GenModel
from harness.gen.tokenizer import clip_tokenizer, t5_tokenizer

SIZES = {"tiny": {"layers": 1, "heads": 2, "head_dim": 8, "text": 16},
         "toy": {"layers": 2, "heads": 4, "head_dim": 16, "text": 32}}
TEXT_TOKENS = 16  # CLIP and T5 / UMT5 tokens per prompt
SHIFT = 3.0  # SD3.5-medium's and Wan2.1's schedule shift
LATENT_CHANNELS = 4


def init_gen_model(kind: str, size: str = "tiny", seed: int = 0) -> GenModel:
    if size not in SIZES:
        raise ValueError(f"unknown generation model size {size!r}; choose one of {', '.join(SIZES)}")
    if kind not in ("sd3", "wan"):
        raise ValueError(f"unknown generation model kind {kind!r}; choose sd3 or wan")
    torch.manual_seed(seed)
    s = SIZES[size]
    pipe = _sd3_pipeline(s) if kind == "sd3" else _wan_pipeline(s)
    model = GenModel(kind, pipe, SHIFT, TEXT_TOKENS)
    if size == "toy":
        from harness.gen.toy_pretrain import pretrain_toy
        from harness.gen.toy_vae import fit_toy_vae

        fit_toy_vae(pipe.vae, kind, seed=seed)
        pretrain_toy(model, seed=seed)
    return model


def _clip(vocab: int, width: int):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=TEXT_TOKENS, projection_dim=width, bos_token_id=0, eos_token_id=1, pad_token_id=1))


def _sd3_pipeline(s: dict):
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import T5Config, T5EncoderModel

    clip_width, t5_width = s["text"], 2 * s["text"] + 16  # T5 wider than both CLIPs together, as in SD3
    tokenizers = [clip_tokenizer(TEXT_TOKENS), clip_tokenizer(TEXT_TOKENS), t5_tokenizer(TEXT_TOKENS)]
    vocab = len(tokenizers[0])
    t5 = T5EncoderModel(T5Config(vocab_size=vocab, d_model=t5_width, d_kv=8, d_ff=2 * t5_width, num_layers=2,
                                 num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        num_layers=s["layers"], attention_head_dim=s["head_dim"], num_attention_heads=s["heads"],
        joint_attention_dim=t5_width, caption_projection_dim=s["heads"] * s["head_dim"],
        pooled_projection_dim=2 * clip_width, pos_embed_max_size=16)
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=LATENT_CHANNELS, norm_num_groups=4,
        layers_per_block=1, sample_size=32, scaling_factor=1.5305, shift_factor=0.0609,
        use_quant_conv=False, use_post_quant_conv=False)  # SD3's VAE has neither
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT), vae=vae,
        text_encoder=_clip(vocab, clip_width), tokenizer=tokenizers[0],
        text_encoder_2=_clip(vocab, clip_width), tokenizer_2=tokenizers[1],
        text_encoder_3=t5, tokenizer_3=tokenizers[2])


def _wan_pipeline(s: dict):
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer(TEXT_TOKENS)
    width = 2 * s["text"]
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=width, d_kv=8, d_ff=2 * width,
                                          num_layers=2, num_heads=2, pad_token_id=0, eos_token_id=1,
                                          decoder_start_token_id=0))
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=s["heads"], attention_head_dim=s["head_dim"],
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, text_dim=width, freq_dim=16,
        ffn_dim=2 * s["heads"] * s["head_dim"], num_layers=s["layers"], rope_max_seq_len=64)
    vae = AutoencoderKLWan(base_dim=8, z_dim=LATENT_CHANNELS, dim_mult=[1, 2], num_res_blocks=1,
                           temperal_downsample=[True], latents_mean=[0.0] * LATENT_CHANNELS,
                           latents_std=[1.0] * LATENT_CHANNELS, scale_factor_temporal=2, scale_factor_spatial=2)
    return WanPipeline(tokenizer=tokenizer, text_encoder=encoder, transformer=transformer, vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT))
