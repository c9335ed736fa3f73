"""One test per known pitfall of the authors' code (docs/reference.md), each of which would
fail if the pitfall were present. 2 processes, gloo."""

import pytest
import torch

from harness.algos.advantages import grpo_advantages
from tests.parallel import workers
from tests.parallel.launch import run_distributed


@pytest.mark.distributed
def test_pitfall1_trainer_uses_the_rollout_engines_3d_positions():
    for res in run_distributed(workers.pitfall_positions, 2):
        assert res["gap"] < 1e-4, res
        # 1-D positions score a different policy (the random tiny model's logits are flat,
        # so the gap is small in absolute terms but far above float noise)
        assert res["gap_1d"] > max(1e-5, 50 * res["gap"]), res


@pytest.mark.distributed
def test_pitfall2_frames_split_per_video_not_per_micro_batch():
    for res in run_distributed(workers.pitfall_frame_split, 2):
        assert max(res["errors"]) < 1e-5, res


def test_pitfall3_group_statistics_follow_group_ids_not_adjacency():
    """After reordering (load balancing), a sample keeps its own group's advantage."""
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 1.0, 0.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    straight = grpo_advantages(rewards, groups)
    shuffled = grpo_advantages(rewards[perm], groups[perm])
    torch.testing.assert_close(shuffled, straight[perm])


@pytest.mark.distributed
@pytest.mark.parametrize("family", ["vila", "qwen2_5_vl"])
def test_pitfall4_last_rank_slice_scores_its_own_tokens(family):
    for res in run_distributed(workers.pitfall_last_rank_slice, 2, family):
        assert res["boundary_in_video"] and res["odd_length"], res  # the case is the risky one
        assert res["last_slice_tokens"] > 0, res
        assert res["last_slice_err"] < 1e-4, res
