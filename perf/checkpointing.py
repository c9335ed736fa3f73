"""Memory of one training pass with and without activation checkpointing
(`model.activation_checkpointing`): the `perf` vila model, one prompt of F frames and its
n responses behind it (the shared-prefix row the RL update runs), forward + backward, in a
fresh process per case; peak anonymous resident memory above the start (perf/mrsp.py's
`AnonPeak`), and the seconds of the pass.

    python -m perf.checkpointing --frames 128 256 512 [--responses 8 --tokens 128]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _one(rank: int, world: int, frames: int, responses: int, tokens: int, checkpointing: bool) -> dict:
    import torch

    from harness.model.batch import pack_groups, response_logprobs
    from harness.model.build import init_model
    from perf.mrsp import AnonPeak

    model = init_model("vila", "perf", seed=0)
    model.set_activation_checkpointing(checkpointing)
    model.train()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        video = model.encode_frames(rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8), np.arange(frames) * 0.5)
        prompt = model.build_prompt(model.chat_prompt_ids("what happened?"), video)
    answers = [torch.from_numpy(rng.integers(5, 500, tokens)) for _ in range(responses)]
    with AnonPeak() as peak:
        start = time.perf_counter()
        response_logprobs(model, pack_groups(model, [prompt], [answers])).sum().backward()
        seconds = time.perf_counter() - start
    return {"frames": frames, "checkpointing": checkpointing, "tokens": len(prompt) + responses * tokens,
            "peak_gib": peak.peak - peak.start, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    from harness.parallel.launch import spawn
    from perf.mrsp import CPU_MMAP_THRESHOLD

    # resident memory that follows the live tensors (perf/mrsp.py's launch explains)
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(CPU_MMAP_THRESHOLD))

    p = argparse.ArgumentParser(prog="python -m perf.checkpointing", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--responses", type=int, default=8)
    p.add_argument("--tokens", type=int, default=128)
    args = p.parse_args(argv)
    print("| frames | tokens in the row | peak GiB, stored | peak GiB, checkpointed | ratio | s, stored | s, checkpointed |")
    print("|---|---|---|---|---|---|---|")
    for frames in args.frames:
        off, on = (spawn(_one, 1, frames, args.responses, args.tokens, ck, backend="gloo")[0] for ck in (False, True))
        print(f"| {frames} | {off['tokens']} | {off['peak_gib']:.3f} | {on['peak_gib']:.3f} | "
              f"{on['peak_gib'] / off['peak_gib']:.2f} | {off['seconds']:.2f} | {on['seconds']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
