"""perf/trl_compare.py's deterministic loss check: our GRPO loss (harness.algos: policy_loss
+ kl_coef x kl_loss) equals TRL's `GRPOTrainer._compute_loss` on the same fixed tensors
(current, old and reference log-probs, advantages, response mask), value and gradient, for
every TRL loss_type with a harness counterpart (perf.trl_compare.PAIRS):

    dapo    <-> token-mean
    bnpo    <-> token-mean (one micro-batch per optimizer step, as here)
    grpo    <-> seq-mean-token-mean
    dr_grpo <-> seq-mean-token-sum-norm (horizon = max_completion_length)

and TRL's default bias-corrected KL (k3 x ratio) is not ours once old != current."""

import dataclasses
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # TRL warns that vLLM 0.32 is newer than it was tested with
    warnings.simplefilter("ignore")
    pytest.importorskip("trl", reason="trl is not installed (the perf extra: pip install -e '.[perf]')")

from perf import trl_compare as tc  # noqa: E402 - after the skip

SHARED = tc.Shared(max_new_tokens=16)  # dr_grpo's constant horizon; batches up to 16 tokens long


@pytest.fixture(scope="module")
def trainer_for(tmp_path_factory):
    """GRPOTrainers on the toy model, one per (loss_type, extra settings), built once."""
    work = tmp_path_factory.mktemp("trl")
    model_dir = tc.save_model(work / "model")
    made = {}

    def get(loss_type: str, **extra):
        key = (loss_type, *sorted(extra.items()))
        if key not in made:
            s = dataclasses.replace(SHARED, loss_type=loss_type)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                made[key] = tc.loss_trainer(model_dir, s, work / f"trainer-{len(made)}", **extra)
        return made[key]

    return get


@pytest.mark.parametrize("loss_type", sorted(tc.PAIRS))
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), groups=st.integers(1, 4), generations=st.integers(2, 8),
       length=st.integers(1, SHARED.max_new_tokens), prompt_len=st.integers(1, 5))
def test_our_loss_equals_trls(trainer_for, loss_type, seed, groups, generations, length, prompt_len):
    batch = tc.fixed_batch(seed, groups, generations, length, prompt_len)
    row = tc.compare_losses(trainer_for(loss_type), batch, SHARED, tc.PAIRS[loss_type].loss_agg)
    assert row["agree"], row
    assert row["grad_max_abs_diff"] <= 1e-6, row


def test_the_batch_exercises_clips_and_kl():
    """Off-policy enough that both clips act, and a reference apart from the policy."""
    batch = tc.fixed_batch(0)
    ratio = (batch.logp - batch.old_logp).exp()[batch.mask]
    assert (ratio < 1 - SHARED.clip_low).any() and (ratio > 1 + SHARED.clip_high).any()
    assert (batch.ref_logp - batch.logp)[batch.mask].abs().max() > 0.5
    assert batch.advantages.abs().max() > 0


def test_trls_default_bias_corrected_kl_is_not_ours(trainer_for):
    """Why the mapping sets use_bias_correction_kl=False: TRL's default weighs k3 by the
    ratio, which changes the loss as soon as old != current log-probs."""
    row = tc.compare_losses(trainer_for("dapo", use_bias_correction_kl=True), tc.fixed_batch(0), SHARED,
                            "token-mean")
    assert not row["agree"], row
