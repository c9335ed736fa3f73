"""User reward functions for the RL tests, loaded by import path like a user's own."""


def by_length(response: str, answer: str, problem_type: str) -> float:
    # Varies across samples, so advantages are non-zero even for an untrained model.
    return (len(response) % 7) / 6.0


def sometimes_raises(response: str, answer: str, problem_type: str) -> float:
    if len(response) % 2:
        raise RuntimeError("user reward function failed")
    return 1.0


def uniform_for_answer_a(response: str, answer: str, problem_type: str) -> float:
    # The same reward for every sample of a question keyed "A": DAPO drops those groups and
    # refills, so DP ranks that drew different keys refill different numbers of times.
    return 0.0 if answer.strip() == "<answer>A</answer>" else by_length(response, answer, problem_type)


def always_raises(response: str, answer: str, problem_type: str) -> float:
    raise ValueError("broken on purpose")


def constant(response: str, answer: str, problem_type: str) -> float:
    # Every group's rewards are equal, as from a policy that answers nothing right yet.
    return 0.0


def interrupts(response: str, answer: str, problem_type: str) -> float:
    raise KeyboardInterrupt  # as Ctrl-C arriving while the step scores its samples
