"""Synthetic long-video reasoning tasks: the project's toy LongVideo-Reason, as real mp4.

Modules: scene (world rules and ground-truth timeline), schedule (cast and event slots),
render (numpy drawing, PyAV mp4), questions (four categories, balanced letters), oracle
(answers from sampled frames only), videomme (Video-MME layout), teacher (an imperfect CoT
teacher for the SFT split), dataset (`synthesize`).
"""

from harness.data.synthetic.dataset import SynthSummary, parse_minutes, parse_size, synthesize
from harness.data.synthetic.oracle import consistent_options, oracle_answer
from harness.data.synthetic.teacher import ColourConfusion, parse_confusion

__all__ = ["ColourConfusion", "SynthSummary", "consistent_options", "oracle_answer", "parse_confusion",
           "parse_minutes", "parse_size", "synthesize"]
