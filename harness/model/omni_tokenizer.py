"""A locally built tokenizer for toy `qwen2_5_omni` models (no hub checkpoint at hand).

The same byte-level BPE as the other toy families (`tokenizer.build_tokenizer`), with
Qwen2.5-Omni's special-token names instead of Qwen2.5-VL's: `<|AUDIO|>`, `<|audio_bos|>`,
`<|audio_eos|>`, `<|vision_bos|>`, `<|vision_eos|>`, `<|vision_pad|>`, `<|IMAGE|>`,
`<|VIDEO|>`, in the released tokenizer's order (docs/omni-notes.md, "Tokens and the chat
template"; ids differ, they follow this small vocabulary). The tokenizer also carries the
names transformers' `Qwen2_5OmniProcessor` reads off it (`image_token`, `audio_token`, ...).

Chat template: the released one (as transformers'
tests/models/qwen2_5_omni/test_processor_qwen2_5_omni.py copies it), rendering
{"type": "image" | "audio" | "video" | "text"} items exactly as it does, plus one item the
released template has no name for: {"type": "video+audio"}, a video with its own audio
track. The released stack writes that as a plain video item and lets the processor
(`use_audio_in_video=True`) replace `<|VIDEO|>` by `<|audio_bos|>` + interleaved video and
audio chunks + `<|audio_eos|>`; here the item renders that layout with the interleaved
chunks still folded into one `<|VIDEO|>` placeholder:

    <|vision_bos|><|audio_bos|><|VIDEO|><|audio_eos|><|vision_eos|>

so the prompt says by itself which video carries its audio (`OmniModel.build_prompt`
splices the video and audio rows there, interleaved in time).
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from harness.model.omni_positions import TOKEN_NAMES
from harness.model.tokenizer import build_tokenizer

# The released tokenizer's specials in its id order (151643 ...), without the grounding
# tokens (<|object_ref_start|> .. <|quad_end|>) no harness prompt uses; `<|endoftext|>`
# first: it is the pad token.
OMNI_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    TOKEN_NAMES["audio"],
    TOKEN_NAMES["audio_bos"],
    TOKEN_NAMES["audio_eos"],
    TOKEN_NAMES["vision_bos"],
    TOKEN_NAMES["vision_eos"],
    "<|vision_pad|>",
    TOKEN_NAMES["image"],
    TOKEN_NAMES["video"],
]

# What Qwen2_5OmniProcessor.__init__ reads off its tokenizer (attribute -> token).
PROCESSOR_TOKEN_ATTRIBUTES = {
    "image_token": TOKEN_NAMES["image"],
    "audio_token": TOKEN_NAMES["audio"],
    "video_token": TOKEN_NAMES["video"],
    "vision_bos_token": TOKEN_NAMES["vision_bos"],
    "vision_eos_token": TOKEN_NAMES["vision_eos"],
    "audio_bos_token": TOKEN_NAMES["audio_bos"],
    "audio_eos_token": TOKEN_NAMES["audio_eos"],
}

# A video with its audio track, the use_audio_in_video layout with its chunks folded into
# one placeholder (module docstring).
VIDEO_WITH_AUDIO = "<|vision_bos|><|audio_bos|><|VIDEO|><|audio_eos|><|vision_eos|>"

# The released chat template's rendering, item by item, with the "video+audio" item first.
# `add_vision_id` / `add_audio_id` number the media as the released template does (a
# video+audio item counts as a video).
OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'video+audio' %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}" + VIDEO_WITH_AUDIO +
    "{% elif content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_omni_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """The toy omni tokenizer: `build_tokenizer`'s BPE with Qwen2.5-Omni's specials and chat
    template. Deterministic, like `build_tokenizer`."""
    return build_tokenizer(vocab_size, special_tokens=OMNI_SPECIAL_TOKENS, chat_template=OMNI_CHAT_TEMPLATE,
                           named_tokens=PROCESSOR_TOKEN_ATTRIBUTES)


def omni_token_ids(tokenizer) -> dict[str, int]:
    """The ids `omni_config.omni_thinker_config` takes (REQUIRED_TOKEN_IDS) from a tokenizer
    with the released names: <|im_start|> as bos (the released thinker config's choice),
    <|im_end|> as eos, <|endoftext|> as pad."""
    ids = {key: tokenizer.convert_tokens_to_ids(TOKEN_NAMES[name]) for key, name in (
        ("image_token_id", "image"), ("video_token_id", "video"), ("audio_token_id", "audio"),
        ("vision_start_token_id", "vision_bos"), ("vision_end_token_id", "vision_eos"),
        ("audio_start_token_id", "audio_bos"), ("audio_end_token_id", "audio_eos"))}
    ids.update(bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
               eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
               pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    unknown = [k for k, v in ids.items() if v is None or v == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"the tokenizer lacks the tokens of {unknown}")
    return ids
