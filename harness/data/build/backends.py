"""Model backends of the build: one narrow method, `chat(request) -> Reply`.

A SPEC names a backend:
- `http://HOST:PORT/v1#MODEL`: any OpenAI-compatible chat-completions endpoint (`vllm serve`,
  SGLang, TGI, OpenAI itself). Without `#MODEL` the server's only model is used (asked
  from `/v1/models`; an error lists them when there are several). A video clip is sent as
  its frames, each an `image_url` part (JPEG data URL) after a text part with its time:
  the most widely supported way to give a chat model a video. vLLM limits images per
  prompt: serve VLMs with `--limit-mm-per-prompt '{"image": N}'` for N frames per clip.
  `OPENAI_API_KEY`, when set, is sent as the bearer token.
- `local:DIR` (or an existing DIR): a model run in this process. A folder whose config.json
  names a `...ForCausalLM` architecture is a text LLM (transformers); a harness VideoLM
  checkpoint (`harness model init` layout, LongVILA-R1 or Qwen2.5-VL folders) is a video
  captioner. Local backends run one request at a time.

Requests retry with exponential backoff and jitter on connection errors, timeouts, HTTP
408/409/425/429 and 5xx; other HTTP errors (400: prompt too long, images not accepted...)
fail at once. A request that gives up raises BackendError, which fails that item only.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.data.build.state import ItemError

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429}


class BackendError(ItemError):
    """A request failed for good (after its retries); names the endpoint and the cause."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat turn. `frames` uint8 [N, H, W, 3] with `timestamps` [N] seconds, or None."""

    system: str
    text: str
    max_tokens: int
    temperature: float = 0.0
    frames: np.ndarray | None = None
    timestamps: np.ndarray | None = None


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str  # "stop", "length" (cut at max_tokens), ...


class Backend(Protocol):
    name: str  # goes into records and the resume key, e.g. "http://127.0.0.1:8000/v1#Qwen3-8B"
    max_concurrency: int | None  # None: as many requests at once as the build asks for

    def chat(self, request: ChatRequest) -> Reply: ...


def clock(seconds: float) -> str:
    """12.5 -> "00:12"; 3725 -> "1:02:05" (the form captions and reasoning cite)."""
    s = int(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


# ----------------------------------------------------------------------------- OpenAI API


class OpenAIBackend:
    """Chat completions over HTTP (urllib: no extra dependency)."""

    def __init__(self, base_url: str, model: str | None = None, *, timeout: float = 600.0,
                 retries: int = 4, backoff: float = 1.0, max_side: int = 448,
                 api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff, self.max_side = timeout, retries, backoff, max_side
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_concurrency = None
        self.model = model or self._only_model()
        self.name = f"{self.base_url}#{self.model}"

    def _only_model(self) -> str:
        data = self._request("GET", "/models", None)
        ids = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]
        if len(ids) != 1:
            raise ValueError(f"{self.base_url} serves {len(ids)} models {ids}; "
                             f"name one as {self.base_url}#MODEL")
        return ids[0]

    def chat(self, request: ChatRequest) -> Reply:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": request.system},
                         {"role": "user", "content": self._content(request)}],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        data = self._request("POST", "/chat/completions", body)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(f"{self.name}: reply without choices[0].message: {str(data)[:300]}") from None
        return Reply(text=text, finish_reason=str(choice.get("finish_reason") or ""))

    def _content(self, request: ChatRequest) -> str | list[dict[str, Any]]:
        if request.frames is None:
            return request.text
        parts: list[dict[str, Any]] = []
        for frame, t in zip(request.frames, request.timestamps, strict=True):
            parts.append({"type": "text", "text": f"Frame at {clock(float(t))}:"})
            parts.append({"type": "image_url", "image_url": {"url": jpeg_data_url(frame, self.max_side)}})
        parts.append({"type": "text", "text": request.text})
        return parts

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = None if body is None else json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                # Exponential backoff with jitter, so concurrent workers do not retry in step.
                delay = min(30.0, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                log.info("%s: retry %d/%d in %.1f s after: %s", url, attempt, self.retries, delay, last)
                time.sleep(delay)
            req = urllib.request.Request(url, data=payload, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:500]
                last = f"HTTP {err.code}: {detail}"
                if err.code in RETRY_STATUS or err.code >= 500:
                    continue
                raise BackendError(f"{method} {url}: {last}") from None
            except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets
                last = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
                continue
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                raise BackendError(f"{method} {url}: reply is not JSON: {raw[:200]!r}") from None
        raise BackendError(f"{method} {url}: gave up after {self.retries + 1} attempts; last: {last}")


def jpeg_data_url(frame: np.ndarray, max_side: int) -> str:
    """uint8 [H, W, 3] -> "data:image/jpeg;base64,...", the longer side at most max_side."""
    from PIL import Image  # pillow comes with tensorboard and vllm; only needed here

    img = Image.fromarray(np.ascontiguousarray(frame))
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- local models


class LocalCausalLM:
    """A text LLM folder (config.json + weights + tokenizer with a chat template), run with
    transformers in this process."""

    max_concurrency = 1  # one generate() at a time; the model is not shared across threads

    def __init__(self, path: str | Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"local:{Path(path).resolve()}"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if not self.tokenizer.chat_template:
            raise ValueError(f"{path}: the tokenizer has no chat template")
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self._torch = torch

    def chat(self, request: ChatRequest) -> Reply:
        if request.frames is not None:
            raise ValueError(f"{self.name} is a text-only LLM and cannot caption video; "
                             "give a video model as --captioner")
        messages = [{"role": "system", "content": request.system},
                    {"role": "user", "content": request.text}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]  # [1, L]
        sample = request.temperature > 0
        with self._torch.no_grad():
            out = self.model.generate(
                ids, attention_mask=self._torch.ones_like(ids), max_new_tokens=request.max_tokens,
                do_sample=sample, temperature=request.temperature if sample else None,
                top_p=None, top_k=None, pad_token_id=self.tokenizer.pad_token_id)  # [1, L+R]
        new = out[0, ids.shape[1]:]  # [R]
        # HF generate stops at any of the generation config's eos ids (Qwen lists <|im_end|>
        # and <|endoftext|>), not only at the tokenizer's eos
        configured = self.model.generation_config.eos_token_id
        stops = set(configured if isinstance(configured, list) else [configured]) | {self.tokenizer.eos_token_id}
        finished = any(int(t) in stops for t in new)
        return Reply(self.tokenizer.decode(new, skip_special_tokens=True),
                     "stop" if finished else "length")


class LocalVideoLM:
    """A harness VideoLM checkpoint (vila or qwen2_5_vl layout) as an in-process captioner.

    The one place the data layer reaches into `harness.model`, imported only when such a
    folder is given: captioning with a local video model needs its encoder.
    """

    max_concurrency = 1

    def __init__(self, path: str | Path) -> None:
        from harness.model.build import load_model

        self.name = f"local:{Path(path).resolve()}"
        self.model = load_model(path)

    def chat(self, request: ChatRequest) -> Reply:
        from harness.rollout.engine import SamplingConfig
        from harness.rollout.hf_engine import HFEngine

        if request.frames is None:
            raise ValueError(f"{self.name} is a video captioner; give a text LLM as --reasoner")
        model = self.model
        video = model.encode_frames(request.frames, request.timestamps)
        prompt = model.build_prompt(model.chat_prompt_ids(request.text, request.system), video)
        sample = request.temperature > 0
        sampling = SamplingConfig(n=1, greedy=not sample, temperature=request.temperature if sample else 1.0,
                                  max_new_tokens=request.max_tokens)
        (out,) = HFEngine(model).generate([prompt], sampling)
        return Reply(model.tokenizer.decode(out.token_ids, skip_special_tokens=True),
                     "stop" if out.finished else "length")


def _is_causal_lm_folder(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    top = json.loads(cfg.read_text(encoding="utf-8"))
    if top.get("model_type") == "vila" or (path / "llm").is_dir():
        return False  # a VILA-series video model: its config names VILAForCausalLM too
    return any(str(a).endswith("ForCausalLM") for a in top.get("architectures") or [])


def open_backend(spec: str, *, timeout: float = 600.0, retries: int = 4) -> Backend:
    """The backend a SPEC names (see the module docstring); ValueError / FileNotFoundError
    naming the spec when it is neither an http(s) URL nor a model folder."""
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        return OpenAIBackend(url, model or None, timeout=timeout, retries=retries)
    path = Path(spec[len("local:"):] if spec.startswith("local:") else spec)
    if not path.is_dir():
        raise FileNotFoundError(f"model spec {spec!r}: not an http(s)://.../v1 URL and no folder {path}")
    if _is_causal_lm_folder(path):
        return LocalCausalLM(path)
    return LocalVideoLM(path)
