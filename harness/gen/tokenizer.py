"""The toy generation models' text tokenizers, built locally (nothing is downloaded): one
word-level vocabulary over the toy prompts' words, wrapped as transformers fast tokenizers
the way the released text encoders' tokenizers behave where the pipelines depend on it:

- CLIP-style (`clip_tokenizer`): `<|startoftext|> ... <|endoftext|>`, padded to
  `model_max_length` (diffusers' SD3 pipeline pads CLIP prompts to it); the text model's
  pooled output is read at the end token, so the tokenizer's end id is the config's
  `eos_token_id`.
- T5-style (`t5_tokenizer`): `... </s>`, pad id 0 (T5 / UMT5).

A real checkpoint brings its own tokenizers (tokenizer/, tokenizer_2/, tokenizer_3/).
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

WORDS = """
a an the photo of in on at to and with one two three four object objects
red green blue yellow white black magenta cyan orange purple pink gray grey brown
square circle triangle ball box shape cube disc dot star
top bottom left right centre center middle corner above below of next
moving moves move slides slide up down towards toward across from into out
sun rises over quiet mountain peaks she found old book hidden attic coffee tastes better rainy mornings
""".split()


def _vocab(specials: list[str]) -> dict[str, int]:
    words = list(dict.fromkeys(WORDS + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-")))
    return {tok: i for i, tok in enumerate(specials + words)}


def _word_level(vocab: dict[str, int], unk: str) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


def clip_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    specials = ["<|startoftext|>", "<|endoftext|>", "<|unk|>"]
    tok = _word_level(_vocab(specials), "<|unk|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)])
    # CLIP pads with its end token (openai/clip-vit-large-patch14's tokenizer does)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|unk|>", model_max_length=max_length,
                                   padding_side="right")


def t5_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    specials = ["<pad>", "</s>", "<unk>"]
    tok = _word_level(_vocab(specials), "<unk>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   model_max_length=max_length, padding_side="right")
