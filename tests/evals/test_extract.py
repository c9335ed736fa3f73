"""Answer extraction: the official Video-MME rule plus the <answer> span, on tricky text."""

import pytest

from evals.extract import EXTRACTION_VERSION, extract_choice, option_letters

LONG = "This video shows many things happening over time and I cannot tell " * 20

TABLE = [
    # plain and lead-ins
    ("B", "ABCD", "B"),
    ("The best answer is C", "ABCD", "C"),
    ("The best answer is: (D) a dog", "ABCD", "D"),
    ("Answer: A", "ABCD", "A"),
    ("The correct option is B.", "ABCD", "B"),
    ("Best option: (C)", "ABCD", "C"),
    ("(B)", "ABCD", "B"),
    ("B. The red cube", "ABCD", "B"),
    # lower case: the official regex reads upper case only
    ("b", "ABCD", ""),
    ("answer: c", "ABCD", ""),
    ("the answer is (c) but maybe D", "ABCD", "D"),
    # the first letter wins, as officially ("A" here is an article)
    ("A dog runs, so the answer is B", "ABCD", "A"),
    # letters outside the question's options
    ("E", "ABCD", ""),
    ("E", "ABCDE", "E"),
    ("The answer is C", "ABC", "C"),
    ("D", "ABC", ""),
    # reasoning models: the <answer> span first
    ("<think>A is wrong; B moves first, not D.</think><answer>C</answer>", "ABCD", "C"),
    ("<think>A or B?</think>\n<answer> (b) </answer>", "ABCD", ""),
    ("<answer>A</answer> then <answer>D</answer>", "ABCD", "D"),
    ("<think>Options A and B are out.</think> The answer is C", "ABCD", "C"),
    ("<think>A seems right, B too, then D", "ABCD", ""),  # cut off while reasoning
    ("<think>x</think><answer>no idea</answer>", "ABCD", ""),
    # empty and over-long
    ("", "ABCD", ""),
    ("   \n ", "ABCD", ""),
    (LONG, "ABCD", ""),
    (LONG + " so B", "ABCD", "B"),
]


@pytest.mark.parametrize("text,letters,expected", TABLE)
def test_tricky_responses(text, letters, expected):
    assert extract_choice(text, letters) == expected


def test_version_and_letters():
    assert EXTRACTION_VERSION.startswith("mc-v1")
    assert option_letters(5) == "ABCDE"
    with pytest.raises(ValueError):
        option_letters(1)
