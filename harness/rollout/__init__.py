"""Rollout engines: sample G responses per prompt from prompt embeddings (DESIGN.md §3.4)."""

from harness.rollout.engine import RolloutEngine, RolloutOutput, SamplingConfig
from harness.rollout.hf_engine import HFEngine

__all__ = ["HFEngine", "RolloutEngine", "RolloutOutput", "SamplingConfig"]
