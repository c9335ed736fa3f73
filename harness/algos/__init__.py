"""Pure RL math on tensors: advantages, policy losses, KL estimators, rewards.

No config objects, no process groups, no model code: plain functions with flat arguments,
tested on CPU with hand-computed values (tests/algos).

- advantages: grpo_advantages (and Dr.GRPO), rloo_advantages, reinforce_pp_advantages,
  dapo_keep_mask, broadcast_to_tokens
- losses: policy_loss (PPO clip low/high + dual clip), aggregate, entropy_from_logits
- kl: kl_estimate (k1/k2/k3=low_var_kl/abs), kl_loss, kl_penalty_rewards
- rewards: format_reward, accuracy_reward, combined_reward, load_reward_fn, safe_reward
"""

from harness.algos.advantages import (
    broadcast_to_tokens,
    dapo_keep_mask,
    grpo_advantages,
    last_token_rewards,
    reinforce_pp_advantages,
    reinforce_pp_returns,
    rloo_advantages,
    whiten,
)
from harness.algos.kl import kl_estimate, kl_loss, kl_penalty_rewards
from harness.algos.losses import aggregate, entropy_from_logits, masked_mean, policy_loss
from harness.algos.rewards import (
    accuracy_reward,
    choice_accuracy,
    combined_reward,
    extract_answer,
    extract_choice,
    format_reward,
    load_reward_fn,
    normalize_text,
    numeric_accuracy,
    safe_reward,
    text_accuracy,
)

__all__ = [
    "accuracy_reward",
    "aggregate",
    "broadcast_to_tokens",
    "choice_accuracy",
    "combined_reward",
    "dapo_keep_mask",
    "entropy_from_logits",
    "extract_answer",
    "extract_choice",
    "format_reward",
    "grpo_advantages",
    "kl_estimate",
    "kl_loss",
    "kl_penalty_rewards",
    "last_token_rewards",
    "load_reward_fn",
    "masked_mean",
    "normalize_text",
    "numeric_accuracy",
    "policy_loss",
    "reinforce_pp_advantages",
    "reinforce_pp_returns",
    "rloo_advantages",
    "safe_reward",
    "text_accuracy",
    "whiten",
]
