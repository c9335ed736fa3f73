"""Synthetic tasks for every medium, written as real files with sft / rl / test splits
(`harness data synth --modality M`, `data.synth_modality`): the answer needs the medium,
and each task kind has an oracle that reads the answer from the files alone.

- video: the long-video reasoning tasks (dataset.py; `--videos` counts videos, each with
  several questions);
- text: arithmetic word problems with numeric answers (arithmetic.py);
- image: single-image and image-pair questions on PNG files (image_tasks.py);
- audio: beeps to count, pitch order, tone onset, in WAV files (audio_tasks.py);
- video+audio: what was on screen while the tone sounded, in mp4 files with an audio track.

Every split is `{root}/{split}.jsonl` with media paths relative to `root`.
"""

from __future__ import annotations

from pathlib import Path

MODALITIES = ("video", "text", "image", "audio", "video+audio")
SPLIT_SHARES = {"sft": 1 / 3, "rl": 1 / 2, "test": 1 / 6}  # as the video tasks split their videos


def split_sizes(n: int) -> dict[str, int]:
    """n items over the splits, each at least one."""
    if n < len(SPLIT_SHARES):
        raise ValueError(f"synthesise at least {len(SPLIT_SHARES)} items (one per split), got {n}")
    sizes = {name: max(1, int(n * share)) for name, share in SPLIT_SHARES.items()}
    sizes["test"] = max(1, n - sizes["sft"] - sizes["rl"])
    return sizes


def synthesize_modality(root: str | Path, modality: str, n: int, seed: int = 0, *, text_level: str | None = None,
                        **video_options) -> dict[str, Path]:
    """Write `n` items of `modality` under `root` as sft / rl / test splits; returns the
    split files. `text_level`: the arithmetic difficulty (arithmetic.DIFFICULTIES: easy,
    medium, hard; None: 1-3 operations on numbers up to 10). `video_options` go to the
    video synthesiser (minutes, fps, size, ...)."""
    root = Path(root)
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    if modality == "video":
        from harness.data.synthetic.dataset import synthesize

        synthesize(root, n, seed=seed, **video_options)
        return {name: root / f"{name}.jsonl" for name in SPLIT_SHARES}
    if video_options:
        raise ValueError(f"{', '.join(video_options)}: video options, not for modality {modality}")
    sizes = split_sizes(n)
    if modality == "text":
        from harness.data.synthetic.arithmetic import ArithmeticConfig, write_arithmetic_splits

        return write_arithmetic_splits(root, sizes, seed, ArithmeticConfig.level(text_level) if text_level else None)
    if text_level is not None:
        raise ValueError(f"text_level is for modality text, not {modality}")
    if modality == "image":
        from harness.data.synthetic.image_tasks import write_image_splits

        return write_image_splits(root, sizes, seed)
    from harness.data.synthetic.audio_tasks import write_audio_split, write_video_audio_split

    write = write_audio_split if modality == "audio" else write_video_audio_split
    return {name: write(root, size, seed, filename=f"{name}.jsonl", split=name) for name, size in sizes.items()}
