"""The LongVideo-Reason construction pipeline: `harness data build` (pipeline.py).

Modules: scan (find and probe videos), clips (cut into clips, decode frames), backends
(OpenAI-compatible endpoints and local models), prompts/ (versioned templates), state
(per-item resumable stage files, bounded concurrency), parse (reasoner replies ->
questions), filters (dedupe, letter rebalance, text-only check), split (records by video),
pipeline (the stages in order), options (the command's flags and handler).
Kept free of heavy imports so that `harness --help` stays instant.
"""
