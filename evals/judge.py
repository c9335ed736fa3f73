"""An LLM judge for open answers over any OpenAI-compatible chat endpoint (plain HTTP).

Works with `vllm serve MODEL` (http://localhost:8000/v1), OpenAI, or any server that
implements POST {base_url}/chat/completions. The prompt is Video-ChatGPT's QA judge (used
by lmms-eval's ActivityNet-QA task): the judge returns a dict string
`{'pred': 'yes'|'no', 'score': 0..5}`. Decoding is greedy (temperature 0) so a judgement
can be repeated. A reply that cannot be read is an error for that question (counted as
`judge_errors` by the runner), never a silent "no".
"""

from __future__ import annotations

import ast
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from harness.errors import HarnessError

SYSTEM = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative "
    "outputs for question-answer pairs. Your task is to compare the predicted answer with the "
    "correct answer and determine if they match meaningfully. Here's how you can accomplish "
    "the task:\n------\n##INSTRUCTIONS: \n- Focus on the meaningful match between the "
    "predicted answer and the correct answer.\n- Consider synonyms or paraphrases as valid "
    "matches.\n- Evaluate the correctness of the prediction compared to the answer."
)
USER = (
    "Please evaluate the following video-based question-answer pair:\n\n"
    "Question: {question}\nCorrect Answer: {answer}\nPredicted Answer: {pred}\n\n"
    "Provide your evaluation only as a yes/no and score where the score is an integer value "
    "between 0 and 5, with 5 indicating the highest meaningful match. Please generate the "
    "response in the form of a Python dictionary string with keys 'pred' and 'score', where "
    "value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not "
    "STRING.DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python "
    "dictionary string. For example, your response should look like this: "
    "{{'pred': 'yes', 'score': 4.8}}."
)


class JudgeError(HarnessError, RuntimeError):
    """The judge could not be reached or its reply could not be read."""


@dataclass
class Verdict:
    correct: bool
    score: float
    raw: str


class OpenAIJudge:
    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = 60.0, max_tokens: int = 64) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_tokens = max_tokens

    def probe(self) -> None:
        """Before any model loads: the endpoint answers, and where it lists its models
        (`GET .../models`, OpenAI-compatible servers such as `vllm serve` do), it serves this
        one. JudgeError naming the URL or the model otherwise."""
        base = self.url.removesuffix("/chat/completions")
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(base + "/models", headers=headers),
                                        timeout=min(self.timeout, 10.0)) as resp:
                listed = json.loads(resp.read().decode())
        except urllib.error.HTTPError:
            return  # it answers, but does not list models: the first verdicts will tell
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise JudgeError(f"the judge endpoint --judge-url {base} cannot be reached ({getattr(err, 'reason', err)}); "
                             f"start it or fix the URL (nothing was evaluated)") from err
        except json.JSONDecodeError:
            return
        names = [m.get("id") for m in listed.get("data", []) if isinstance(m, dict)] if isinstance(listed, dict) else []
        if names and self.model not in names:
            raise JudgeError(f"the judge endpoint {base} serves {names[:5]}, not --judge-model {self.model!r}")

    def describe(self) -> dict:
        # Everything a verdict depends on: a stored verdict from another judge is asked again.
        return {"endpoint": self.url, "model": self.model, "prompt": "video-chatgpt-qa",
                "temperature": 0.0, "max_tokens": self.max_tokens}

    def judge(self, question: str, answer: str, pred: str) -> Verdict:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": USER.format(question=question, answer=answer, pred=pred)},
            ],
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                reply = json.loads(resp.read().decode())
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as err:
            raise JudgeError(f"judge {self.url} failed: {err}") from err
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise JudgeError(f"judge reply has no choices[0].message.content: {reply!r:.200}") from err
        return parse_verdict(text)


def parse_verdict(text: str) -> Verdict:
    """Read `{'pred': 'yes', 'score': 4}` (Python or JSON dict, possibly inside other text)."""
    m = re.search(r"\{.*?\}", text or "", re.DOTALL)
    if not m:
        raise JudgeError(f"judge reply holds no dict: {text!r:.200}")
    try:
        d = ast.literal_eval(m.group(0))
    except (ValueError, SyntaxError) as err:
        raise JudgeError(f"judge reply is not a dict literal: {m.group(0)!r:.200}") from err
    pred = str(d.get("pred", "")).strip().lower() if isinstance(d, dict) else ""
    if pred not in ("yes", "no"):
        raise JudgeError(f"judge reply has no yes/no 'pred': {text!r:.200}")
    try:
        score = float(d.get("score"))
    except (TypeError, ValueError) as err:
        raise JudgeError(f"judge reply has no numeric 'score': {text!r:.200}") from err
    return Verdict(pred == "yes", score, text)
