"""Long-video RL harness: LongVILA-R1's training system (CoT-SFT, GRPO-family RL, MR-SP)
reimplemented as tested software. See README.md and docs/design.md for the map."""

__version__ = "0.1.0"
