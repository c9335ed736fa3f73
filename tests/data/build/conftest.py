"""Fixtures for the dataset-build tests: synthetic videos (with broken and foreign files
mixed in) and a scripted OpenAI-compatible HTTP server on loopback.

The scripted server is a PROTOCOL FIXTURE: it speaks the chat-completions wire format and
answers with well-formed canned captions, questions and blind answers, so that the paths
that keep questions run end to end. It stands beside, not instead of, the real
`vllm serve` test (test_e2e_vllm.py), whose random tiny model only exercises the plumbing.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.data.synthetic import synthesize

CLIP_RE = re.compile(r"^\[(\d\d:\d\d)-(\d\d:\d\d)\]", re.MULTILINE)


def canned_questions(user_text: str) -> str:
    """A reasoner reply for one video: four good questions (answers all "A": the rebalance
    has work to do), one duplicate and one whose answer is not among its options."""
    spans = CLIP_RE.findall(user_text) or [("00:00", "00:10")]
    a, b = spans[0], spans[-1]
    cite = f"At [{a[0]}-{a[1]}] the square appears; at [{b[0]}-{b[1]}] it is gone."
    qs = [
        {"category": "temporal", "question": "What happens first?",
         "options": ["The square appears", "The circle leaves", "Nothing", "Both at once"]},
        {"category": "Goal and Purpose", "question": "Why does the square move?",
         "options": ["To reach the corner", "To hide", "To grow", "To change colour"]},
        {"category": "plot", "question": "How does the story end?",
         "options": ["The square leaves", "The circle stays", "It repeats", "It stops"]},
        {"category": "spatial", "question": "Where is the square at the end?",
         "options": ["Top left", "Top right", "Bottom left", "Bottom right"]},
        {"category": "temporal", "question": "What happens  first?",
         "options": ["W", "X", "Y", "Z"]},
        {"category": "plot", "question": "Which one is missing?",
         "options": ["P", "Q", "R", "S"], "answer": "T"},
    ]
    for q in qs:
        q.setdefault("answer", "A")
        q["reasoning"] = cite
    return "<think>Let me look at the captions.</think>\n```json\n" + json.dumps(qs) + "\n```"


class ScriptedServer:
    """Counts requests by kind (caption / reason / blind), so tests can check that nothing
    was asked twice. `fail_first` answers the first N requests with 503
    (retries); `on_request(kind, n)` runs before each answer (e.g. to interrupt the run);
    `reason_reply(user_text)` writes the reasoner's replies."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.fail_first = 0
        self.delay = 0.0
        self.on_request: Callable[[str, int], None] | None = None
        self.blind_letter = "A"
        self.reason_reply: Callable[[str], str] = canned_questions
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, body: dict) -> tuple[int, dict]:
        content = body["messages"][-1]["content"]
        if isinstance(content, list):
            kind = "caption"
            n_images = sum(1 for p in content if p["type"] == "image_url")
            assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,")
                       for p in content if p["type"] == "image_url")
            text = f"A red square moves across {n_images} frames and then leaves."
        elif "captions of consecutive clips" in content:
            kind, text = "reason", self.reason_reply(content)
        else:
            kind, text = "blind", self.blind_letter
        with self.lock:
            self.counts[kind] += 1
            n = self.counts[kind]
            if sum(self.counts.values()) <= self.fail_first:
                return 503, {"error": "warming up"}
        if self.on_request:
            self.on_request(kind, n)
        return 200, {"choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}]}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, data: dict) -> None:
                raw = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": "not found"})
                    return
                if server.delay:
                    import time

                    time.sleep(server.delay)
                self._send(*server.reply(body))

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def make_scripted():
    """Factory for more scripted servers in one test (all closed afterwards)."""
    servers: list[ScriptedServer] = []

    def make() -> ScriptedServer:
        servers.append(ScriptedServer())
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def scripted(make_scripted):
    return make_scripted()


@pytest.fixture(scope="session")
def build_videos(tmp_path_factory) -> Path:
    """6 synthetic 30 s videos (3 clips of 10 s each) in nested folders, plus a corrupt
    mp4, an AVI and a text file that the scan must skip or ignore."""
    root = tmp_path_factory.mktemp("build_videos")
    synth = tmp_path_factory.mktemp("synth")
    synthesize(synth, 6, seed=0, minutes=(0.5, 0.5), progress=False)
    for i, mp4 in enumerate(sorted((synth / "videos").glob("*.mp4"))):
        dest = root / ("day1" if i < 3 else "day2") / mp4.name
        dest.parent.mkdir(exist_ok=True)
        dest.write_bytes(mp4.read_bytes())
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (root / "old.avi").write_bytes(b"RIFF" + bytes(100))
    (root / "notes.txt").write_text("not a video")
    return root
