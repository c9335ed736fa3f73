"""Answer extraction for multiple-choice benchmarks: model text -> one option letter or "".

The rule is Video-MME's official `extract_characters_regex` (also used by lmms-eval's
videomme task), generalised from A-D to each benchmark's own option letters, with one step
in front of it for reasoning models:

1. If the text holds an `<answer>...</answer>` span, only the last complete span is read
   (the reasoning before it mentions other letters). Otherwise complete `<think>...</think>`
   blocks are dropped, and an unclosed `<think>` (a response cut off while still reasoning)
   leaves nothing, i.e. unparsed rather than a letter picked out of half a thought.
2. Official rule on what is left: strip it, delete the lead-ins below wherever they occur,
   give up ("") if more than 10 words remain and none of the option letters occurs, else take
   the first option letter (upper case only, as the official regex; "b" alone is unparsed).

"" means unparsed: it is scored wrong and counted separately. Any change to these rules must
bump EXTRACTION_VERSION, which every results file records.
"""

from __future__ import annotations

import re
import string

EXTRACTION_VERSION = "mc-v1 (videomme extract_characters_regex + <answer> span)"

# Official list and order (longer phrases first where one contains another, as upstream).
LEAD_INS = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
    "Answer:",
    "Option:",
    "The correct answer",
    "The correct option",
)

_ANSWER_SPAN = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def option_letters(n_options: int) -> str:
    if not 2 <= n_options <= 26:
        raise ValueError(f"a multiple-choice question needs 2..26 options, got {n_options}")
    return string.ascii_uppercase[:n_options]


def answer_region(text: str) -> str:
    """The part of a response that holds the answer (step 1 above)."""
    spans = _ANSWER_SPAN.findall(text)
    if spans:
        return spans[-1]
    text = _THINK_BLOCK.sub(" ", text)
    if "<think>" in text:  # reasoning never closed: the response was cut off
        return ""
    return text


def extract_choice(text: str, letters: str = "ABCD") -> str:
    """The chosen option letter of `text`, or "" when none can be read (see module doc)."""
    s = answer_region(text or "").strip()
    for lead_in in LEAD_INS:
        s = s.replace(lead_in, "")
    pattern = f"[{re.escape(letters)}]"
    found = re.search(pattern, s)
    if len(s.split()) > 10 and found is None:
        return ""
    return found.group(0) if found else ""
