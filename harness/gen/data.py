"""Prompt files for generation RL, as the anchors ship them, and the toy prompt sets.

Read as they are:
- GenEval metadata JSONL (Flow-GRPO `dataset/geneval/*_metadata.jsonl`, Long-RL
  `examples/diffusion_data/geneval/test_metadata.jsonl`): `{"tag", "include": [{"class",
  "count", "color"?, "position"?}], "exclude"?, "prompt"}`; the whole record is the prompt's
  metadata, handed to the reward;
- prompt-only JSONL: `{"prompt": ...}` (Long-RL's `*.prompts.jsonl`) or `{"text": ...}`
  (Long-RL's video `data.jsonl`);
- plain text, one prompt per line (Flow-GRPO's `dataset/{ocr,pickscore}/{train,test}.txt`).

A line that is not a prompt (bad JSON, no `prompt`/`text` string, empty) is skipped and
counted; a file with none is an error.

`synthesize_gen(root, "gen-image" | "gen-video", n, seed)` writes `train` and `test` files
of toy prompts whose programmatic reward is meaningful: GenEval-style metadata for images
("a red circle in the top left"), `{"text": ...}` lines for videos ("a blue square moving
left"); held-out prompts are combinations never seen in training.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from harness.algos.gen_rewards import DIRECTIONS, PALETTE, REGIONS, SHAPES

log = logging.getLogger(__name__)
PROMPT_KEYS = ("prompt", "text")


@dataclass
class GenPrompt:
    prompt: str
    metadata: dict = field(default_factory=dict)


@dataclass
class PromptSet:
    prompts: list[GenPrompt]
    malformed: int  # lines skipped

    def __len__(self) -> int:
        return len(self.prompts)

    def counters(self) -> dict[str, float]:
        return {"data/malformed_lines": float(self.malformed)}


def read_prompts(path: str | Path) -> PromptSet:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    prompts, bad = [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".txt":
            prompts.append(GenPrompt(line.strip()))
            continue
        try:
            rec = json.loads(line)
            text = next(rec[k] for k in PROMPT_KEYS if isinstance(rec.get(k), str) and rec[k].strip())
        except (json.JSONDecodeError, StopIteration, AttributeError, TypeError):
            bad += 1
            log.warning("%s:%d: not a prompt record (JSON with a 'prompt' or 'text' string); skipped", path, number)
            continue
        prompts.append(GenPrompt(text.strip(), rec))
    if not prompts:
        raise ValueError(f"{path} holds no prompts ({bad} malformed lines): JSONL with 'prompt' or 'text', "
                         f"or .txt with one prompt per line")
    return PromptSet(prompts, bad)


def synthesize_gen(root: str | Path, modality: str, n: int, seed: int = 0, heldout_fraction: float = 0.2) -> dict:
    """Write root/train.jsonl and root/test.jsonl (n prompts in all, test from combinations
    train never has); returns counts."""
    rng = random.Random(seed)
    if modality == "gen-image":
        combos = [(c, s, r) for c, s, r in itertools.product(PALETTE, SHAPES, REGIONS)]
        make = _image_record
    elif modality == "gen-video":
        combos = list(itertools.product(PALETTE, ("square", "circle"), DIRECTIONS))
        make = _video_record
    else:
        raise ValueError(f"unknown generation modality {modality!r}: gen-image or gen-video")
    rng.shuffle(combos)
    cut = max(1, round(len(combos) * heldout_fraction))
    held, seen = combos[:cut], combos[cut:]
    n_test = max(1, round(n * heldout_fraction))
    splits = {"train": [make(*seen[i % len(seen)]) for i in range(n - n_test)],
              "test": [make(*held[i % len(held)]) for i in range(n_test)]}
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, records in splits.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {k: len(v) for k, v in splits.items()}


def _image_record(colour: str, shape: str, region: str) -> dict:
    return {"tag": "color_attr", "include": [{"class": shape, "count": 1, "color": colour}],
            "prompt": f"a photo of a {colour} {shape} in the {region}"}


def _video_record(colour: str, shape: str, direction: str) -> dict:
    return {"text": f"a {colour} {shape} moving {direction}"}
