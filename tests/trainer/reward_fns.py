"""User reward functions for the RL tests, loaded by import path like a user's own."""


def by_length(response: str, answer: str, problem_type: str) -> float:
    # Varies across samples, so advantages are non-zero even for an untrained model.
    return (len(response) % 7) / 6.0


def sometimes_raises(response: str, answer: str, problem_type: str) -> float:
    if len(response) % 2:
        raise RuntimeError("user reward function failed")
    return 1.0
