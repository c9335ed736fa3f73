"""A Qwen-style tokenizer built locally, for toy models that have no hub checkpoint.

Byte-level BPE (so any text round-trips) trained in a second on a small built-in corpus,
with the special tokens and chat template of Qwen2/Qwen2.5-VL (and VILA's media tokens),
so that prompts render the same way for the toy models as for real checkpoints. Real checkpoints bring their own
tokenizer; this one is only for `harness model init`.

Deviation from Qwen: `<think>`, `</think>`, `<answer>`, `</answer>` are single (non-special)
tokens here, so a tiny model can learn the reasoning format from few examples; decoding
keeps them in the text, so rewards that parse text see the same string either way.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# Qwen's special tokens, in Qwen's order; `<|endoftext|>` doubles as the pad token.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    # VILA's media tokens (NVlabs/Long-RL verl/utils/vila_remote_code/constants.py), so the
    # toy `vila` models prompt as the released LongVILA checkpoints do
    "<vila/sentinel>",
    "<image>",
    "<vila/video>",
]
REASONING_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
VIDEO_TOKEN = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"

# Qwen2.5-VL's chat template, reduced to what the harness uses: string content, or a list
# of {"type": "video"} / {"type": "image"} / {"type": "text", "text": ...} items; a medium
# renders as one placeholder between vision markers (the model expands it to its tokens).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words the toy tasks and prompts use, plus plain English, so that frequent words become
# single tokens. The exact corpus only shapes the merges; any text still encodes.
_CORPUS = """
You are a helpful assistant. Select the best answer to the following multiple-choice
question based on the video. Respond with only the letter (A, B, C, or D) of the correct
option. The best answer is: Answer the question. Think step by step inside think tags,
then give the final answer inside answer tags.
A. B. C. D. A B C D (A) (B) (C) (D) 0 1 2 3 4 5 6 7 8 9 10 11 12 20 30 45 59 0:00 1:30
red green blue yellow white magenta black square circle triangle object objects
top left top right bottom left bottom right centre center middle region corner landmark
appears appeared moves moved changes changed colour color leaves left enters entered
touches touched after before first last then next finally when while during at the end
which what where why how many times order sequence heading toward towards goal reach
because so therefore happened cause caused video frame frames second seconds minute
The red square appears in the top left. At 0:12 the blue circle moves to the bottom right.
After the green triangle touched the yellow circle, the yellow circle changed colour.
Which object appeared first? Where did the white square end up? How many objects appeared?
What was the magenta triangle heading toward? What happened to the blue square after the
red circle touched it? So the answer is B. the of and a to in is it that was for on with as
""".split()


def build_tokenizer(vocab_size: int = 1024, *, special_tokens: list[str] = SPECIAL_TOKENS,
                    chat_template: str = CHAT_TEMPLATE,
                    named_tokens: dict[str, str] | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of at most `vocab_size` entries (specials included) and wrap
    it as a transformers fast tokenizer with Qwen's specials and chat template.

    Another family's toy tokenizer (harness/model/omni_tokenizer.py) passes its own
    `special_tokens` (the first is the pad token, `<|im_end|>` must be among them),
    `chat_template`, and `named_tokens` (attribute name -> token, e.g. "image_token", which
    that family's transformers processor reads off the tokenizer).

    Deterministic: the same arguments give the same vocabulary on every machine.
    """
    n_added = len(special_tokens) + len(REASONING_TOKENS)
    if vocab_size < 256 + n_added:
        raise ValueError(f"vocab_size={vocab_size} is below the {256 + n_added} byte + special tokens")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_added,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    # Repeat the corpus so every pair clears min_frequency; order fixed for determinism.
    bpe.train_from_iterator([" ".join(_CORPUS)] * 4, trainer=trainer)
    # Specials first (ids in Qwen's order right after the BPE vocabulary), then the
    # reasoning tags as ordinary added tokens.
    bpe.add_special_tokens(special_tokens)
    bpe.add_tokens(REASONING_TOKENS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token=special_tokens[0],
        additional_special_tokens=special_tokens[1:],
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
        padding_side="left",  # decoder-only generation pads on the left
        **(named_tokens or {}),
    )
    tok.chat_template = chat_template
    return tok
