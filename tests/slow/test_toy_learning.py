"""The recipes must actually learn (issue #3): the toy reproduction's claims, end to end.

Runs `reproduce/toy.py` with the settings and margins of reproduce/targets.yaml (basic
synthetic level, SFT data from the simulated imperfect teacher, toy vila on CPU: ~15-20 min
on 2 cores). The margins sit above the measured noise (reproduce/LOG.md), so a recipe that
stops learning fails here: SFT that does not learn, or RL that does not correct the teacher's
mistakes from its verified rewards.
"""

from __future__ import annotations

import pytest
import yaml

from reproduce.toy import TARGETS, Settings, report, run, verdicts


@pytest.mark.slow
def test_sft_beats_untrained_and_rl_beats_sft(tmp_path):
    t = yaml.safe_load(TARGETS.read_text())["toy"]
    results = run(tmp_path, Settings.from_targets(t), fresh=True)
    rows = verdicts(results, t)
    assert all(ok for *_, ok in rows), report(results, rows)
