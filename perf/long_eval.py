"""One long question answered on 1 process and sequence-parallel on 2 (what `torchrun
--nproc_per_node N -m harness eval` does): per-rank peak memory and seconds of encoding the
frames, the prefill and greedy decoding, and whether the answers agree. The `perf` vila
model (16 tokens per frame), random frames (no decoding).

    python -m perf.long_eval --frames 2048 4096 8192 [--tokens 32]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _one(rank: int, world: int, frames: int, tokens: int) -> dict:
    import torch

    from harness.model.build import init_model
    from harness.parallel.groups import build_layout
    from harness.rollout.engine import SamplingConfig
    from harness.rollout.hf_engine import HFEngine
    from harness.rollout.sp_engine import SPGreedyEngine
    from perf.mrsp import AnonPeak

    group = build_layout(1, world).sp_group if world > 1 else None
    model = init_model("vila", "perf", seed=0).eval()
    # 8,192 frames x 17 rows exceed the perf model's 32,768 positions; rotary embeddings are
    # computed per position, and with random weights nothing was trained on any range anyway
    model.language_model.config.max_position_embeddings = 1 << 18
    pixels_in = np.random.default_rng(0).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    with AnonPeak() as peak, torch.no_grad():
        start = time.perf_counter()
        video = model.encode_frames(pixels_in, np.arange(frames) * 0.5, group=group)
        prompt = model.build_prompt(model.chat_prompt_ids("what happened first?"), video)
        encoded = time.perf_counter()
        engine = SPGreedyEngine(model, group) if group is not None else HFEngine(model)
        (out,) = engine.generate([prompt], SamplingConfig(greedy=True, max_new_tokens=tokens))
        done = time.perf_counter()
    return {"frames": frames, "world": world, "prompt_tokens": len(prompt), "peak_gib": peak.peak - peak.start,
            "encode_s": encoded - start, "answer_s": done - encoded, "tokens": out.token_ids.tolist()}


def main(argv: list[str] | None = None) -> int:
    from harness.parallel.launch import spawn
    from perf.mrsp import CPU_MMAP_THRESHOLD

    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(CPU_MMAP_THRESHOLD))  # RSS follows live tensors
    p = argparse.ArgumentParser(prog="python -m perf.long_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[2048, 4096, 8192])
    p.add_argument("--tokens", type=int, default=32)
    args = p.parse_args(argv)
    print("| frames | prompt tokens | peak GiB, 1 process | peak GiB per rank, SP 2 | s (encode + answer), 1 | "
          "s, SP 2 | same answer |")
    print("|---|---|---|---|---|---|---|")
    for frames in args.frames:
        one = spawn(_one, 1, frames, args.tokens, backend="gloo")[0]
        two = spawn(_one, 2, frames, args.tokens, backend="gloo")
        print(f"| {frames} | {one['prompt_tokens']} | {one['peak_gib']:.2f} | "
              f"{max(r['peak_gib'] for r in two):.2f} | {one['encode_s']:.1f} + {one['answer_s']:.1f} | "
              f"{two[0]['encode_s']:.1f} + {two[0]['answer_s']:.1f} | "
              f"{'yes' if all(r['tokens'] == one['tokens'] for r in two) else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
