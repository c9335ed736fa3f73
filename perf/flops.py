"""Forward FLOPs per video frame of the `vila` family's two halves, from the configs alone.

The efficiency figure depends on how the cost of encoding a frame (vision tower + projector)
compares with the cost of the LLM reading that frame's tokens, and on the tokens per frame.
The perf suites state both for the model they run and for LongVILA-7B (size `7b`), so a
toy-scale speedup can be read against the real one.

Counted: 2 FLOPs per multiply-add of every linear layer, the patch-embedding convolution,
attention scores and weighted sums (4 * n * d per token and layer for n keys). The vision
tower runs all its layers (the feature is read from layer -2, but the HF tower computes the
last one too). The LLM cost per frame is its linear layers over the frame's tokens; the
context-dependent attention term and the LM head are reported apart (`llm_attn_per_token_ctx`)
because they depend on the prompt length, not on the frame. Norms, activations and rotary
embeddings are ignored (well under 1%). The LLM reads each frame's tokens plus its end-token
row ("\n", the released basic video encoder's: 256 + 1 rows per LongVILA-7B frame).
"""

from __future__ import annotations


def vision_flops_per_frame(vision) -> dict[str, float]:
    """`vision`: a SiglipVisionConfig. Returns patches, tokens after the 2x2 merge, FLOPs."""
    grid = vision.image_size // vision.patch_size
    n = grid * grid  # patches per frame
    h, i, layers = vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers
    embed = 2 * n * (3 * vision.patch_size**2) * h
    per_layer = n * (2 * 4 * h * h + 2 * 2 * h * i) + 4 * n * n * h
    tokens = ((grid + 1) // 2) ** 2
    return {"patches": n, "tokens": tokens, "tower": embed + layers * per_layer}


def projector_flops_per_frame(vision, llm_hidden: int) -> float:
    tokens = vision_flops_per_frame(vision)["tokens"]
    c4 = 4 * vision.hidden_size
    return 2 * tokens * (c4 * llm_hidden + llm_hidden * llm_hidden)


def llm_linear_flops_per_token(llm) -> float:
    """`llm`: a Qwen2Config. Linear layers of the decoder stack (q, k, v, o, gate, up, down)."""
    h, layers = llm.hidden_size, llm.num_hidden_layers
    kv = llm.num_key_value_heads * (h // llm.num_attention_heads)
    per_layer = 2 * (h * h + 2 * h * kv + h * h) + 2 * 3 * h * llm.intermediate_size
    return layers * per_layer


END_ROWS_PER_FRAME = 1  # the basic video encoder's "\n" after each frame


def vila_frame_costs(vision, llm) -> dict[str, float]:
    """Per-frame forward FLOPs and the vision : LLM ratio (LLM linear layers over the frame's
    rows in the prompt; see the module docstring)."""
    v = vision_flops_per_frame(vision)
    proj = projector_flops_per_frame(vision, llm.hidden_size)
    rows = v["tokens"] + END_ROWS_PER_FRAME
    llm_frame = rows * llm_linear_flops_per_token(llm)
    return {
        "patches_per_frame": v["patches"],
        "tokens_per_frame": v["tokens"],
        "rows_per_frame": rows,
        "vision_gflop_per_frame": (v["tower"] + proj) / 1e9,
        "llm_gflop_per_frame": llm_frame / 1e9,
        "vision_to_llm_ratio": (v["tower"] + proj) / llm_frame,
        # attention of one token over a context of c tokens: this times c, per token
        "llm_attn_flop_per_token_per_ctx": 4 * llm.hidden_size * llm.num_hidden_layers,
        "lm_head_gflop_per_token": 2 * llm.hidden_size * llm.vocab_size / 1e9,
    }


def llm_forward_flops(llm, prefix: int, n: int, response: float) -> float:
    """One forward pass over a prompt of `prefix` tokens and `n` responses of `response`
    tokens each behind it, the prompt computed once: linear layers over every token,
    causal attention (a prompt token at i sees i + 1 keys, a response token at j sees the
    prompt and j + 1 of its own), the LM head over the response tokens."""
    lin = llm_linear_flops_per_token(llm)
    attn = 4 * llm.hidden_size * llm.num_hidden_layers  # per query and key, all layers
    head = 2 * llm.hidden_size * llm.vocab_size
    prompt = lin * prefix + attn * prefix * (prefix + 1) / 2
    responses = n * (lin * response + attn * (response * prefix + response * (response + 1) / 2) + head * response)
    return prompt + responses


def step_flops(vision, llm, *, frames: int, prompts: int, prefix: int, n: int, response: float,
               reference: bool) -> dict[str, float]:
    """Model FLOPs of one GRPO step: the work the step needs done once, whatever the mode
    (each video encoded once, each prompt computed once per pass). Rollout ~ one forward
    (prefill + decode), old-policy and reference log-probs one forward each, the update a
    forward and a backward (2x). The vision tower is frozen: forward only, once."""
    costs = vila_frame_costs(vision, llm)
    encode = prompts * frames * costs["vision_gflop_per_frame"] * 1e9
    forward = prompts * llm_forward_flops(llm, prefix, n, response)
    passes = 1 + 1 + (1 if reference else 0) + 3  # rollout, old, ref, update (fwd + bwd)
    return {"encode": encode, "llm_forward": forward, "total": encode + passes * forward}


def measure_matmul_peak(threads: int, size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` [size x size] matmuls: fp32 on `threads` CPU threads,
    or bf16 on the current GPU (size 8192): what this machine's torch reaches, the
    denominator of MFU (per GPU on GPU machines)."""
    import time

    import torch

    cuda = torch.cuda.is_available()
    size = 8192 if cuda else size
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kw = {"device": "cuda", "dtype": torch.bfloat16} if cuda else {}
        a, b = torch.randn(size, size, **kw), torch.randn(size, size, **kw)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / best


def size_costs(size: str, tokenizer_len: int = 1024) -> dict[str, float]:
    from harness.model.configs import vila_configs

    vision, llm = vila_configs(size, tokenizer_len)
    return vila_frame_costs(vision, llm)


def main() -> None:
    for size in ("perf", "7b"):
        c = size_costs(size)
        print(f"vila/{size}: {c['patches_per_frame']} patches -> {c['tokens_per_frame']} tokens "
              f"+ {END_ROWS_PER_FRAME} end row per frame; "
              f"vision {c['vision_gflop_per_frame']:.4g} GFLOP, LLM {c['llm_gflop_per_frame']:.4g} GFLOP "
              f"per frame; vision : LLM = {c['vision_to_llm_ratio']:.3f}")


if __name__ == "__main__":
    main()
