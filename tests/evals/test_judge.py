"""The OpenAI-compatible judge client and ActivityNet-QA end to end.

A real LLM judge cannot run here, so the endpoint is a tiny http.server on loopback that
speaks the chat-completions protocol and returns canned judge replies (a stand-in for
`vllm serve`; the HTTP client, request body, reply parsing and scoring are all real).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from evals.judge import JudgeError, OpenAIJudge, parse_verdict
from evals.runner import EvalSettings, predictions_path, run_eval
from evals.tasks import build_benchmark


class Canned(BaseHTTPRequestHandler):
    replies: list[str] = []
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
        reply = type(self).replies.pop(0) if type(self).replies else "{'pred': 'no', 'score': 0}"
        if reply == "HTTP500":
            self.send_response(500)
            self.end_headers()
            return
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    Canned.replies, Canned.seen = [], []
    httpd = HTTPServer(("127.0.0.1", 0), Canned)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_judge_protocol(server):
    Canned.replies = ["{'pred': 'yes', 'score': 4}"]
    v = OpenAIJudge(server + "/", "judge-model", api_key="k").judge("is it red", "yes", "Yes.")
    assert (v.correct, v.score) == (True, 4.0)
    (req,) = Canned.seen
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k"
    assert req["model"] == "judge-model" and req["temperature"] == 0.0
    assert "Question: is it red\nCorrect Answer: yes\nPredicted Answer: Yes." in req["messages"][1]["content"]


@pytest.mark.parametrize("text,ok", [
    ("{'pred': 'no', 'score': 1}", (False, 1.0)),
    ('Sure! {"pred": "YES", "score": 4.8}', (True, 4.8)),
    ("yes, 5", None), ("{'pred': 'maybe', 'score': 3}", None), ("{'pred': 'yes'}", None),
])
def test_parse_verdict(text, ok):
    if ok is None:
        with pytest.raises(JudgeError):
            parse_verdict(text)
    else:
        v = parse_verdict(text)
        assert (v.correct, v.score) == ok


def test_unreachable_judge_is_an_error():
    with pytest.raises(JudgeError, match="failed"):
        OpenAIJudge("http://127.0.0.1:9/v1", "m", timeout=2).judge("q", "a", "p")


@pytest.fixture()
def anet_root(mme_root, tmp_path):
    """ActivityNet-QA layout: 3 questions on 2 synthetic videos."""
    root = tmp_path / "anet"
    (root / "videos").mkdir(parents=True)
    for n, src in enumerate(sorted((mme_root / "videos").glob("*.mp4"))[:2]):
        (root / "videos" / f"v_clip{n}.mp4").write_bytes(src.read_bytes())
    qs = [{"video_name": f"clip{n % 2}", "question_id": f"q{n}", "question": "what moves"} for n in range(3)]
    (root / "test_q.json").write_text(json.dumps(qs))
    (root / "test_a.json").write_text(json.dumps(
        [{"question_id": f"q{n}", "answer": "cube", "type": 5} for n in range(3)]))
    return root


def test_activitynet_qa_end_to_end(server, tiny_ckpt, anet_root, tmp_path):
    from evals.model import HarnessVLM

    root = anet_root
    Canned.replies = ["{'pred': 'yes', 'score': 5}", "HTTP500", "{'pred': 'no', 'score': 2}"]
    bench = build_benchmark("activitynet_qa", OpenAIJudge(server, "judge-7b", timeout=5))
    vlm = HarnessVLM(tiny_ckpt, max_new_tokens=4, batch_size=4)
    out = tmp_path / "anet.json"
    res = run_eval(bench, vlm, root, out, EvalSettings(frames=2, progress=False))
    assert res["counts"]["judge_errors"] == 1 and res["counts"]["answered"] == 3
    assert res["scores"]["accuracy"] == pytest.approx(1 / 3)
    assert res["scores"]["mean_score"] == pytest.approx(3.5)
    assert res["protocol"]["judge"]["model"] == "judge-7b"
    # The next run asks the judge again for the failed one only, from the stored response.
    Canned.replies = ["{'pred': 'yes', 'score': 3}"]
    n_before = len(Canned.seen)
    res = run_eval(bench, vlm, root, out, EvalSettings(frames=2, progress=False))
    assert len(Canned.seen) == n_before + 1 and res["counts"]["judge_errors"] == 0
    assert res["scores"]["accuracy"] == pytest.approx(2 / 3)
    assert len(predictions_path(out).read_text().splitlines()) == 4


def test_verdicts_of_another_judge_are_judged_again(server, tiny_ckpt, anet_root, tmp_path, capsys):
    """A rerun with another judge (model or endpoint) reuses the model's responses but never
    reports the old judge's verdicts under the new judge's name: it asks the new judge."""
    from harness.cli import main

    out = tmp_path / "anet.json"

    def run_with(url, judge_model):
        argv = ["eval", "--task", "activitynet_qa", "--data", str(anet_root), "--model", str(tiny_ckpt),
                "--frames", "2", "--max-new-tokens", "4", "--out", str(out), "--no-progress",
                "--judge-url", url, "--judge-model", judge_model]
        assert main(argv) == 0
        return json.loads(out.read_text())

    Canned.replies = ["{'pred': 'yes', 'score': 5}"] * 3
    first = run_with(server, "yes-judge")
    assert first["scores"]["accuracy"] == 1.0
    responses = {r["qid"]: r["response"] for r in map(json.loads, predictions_path(out).read_text().splitlines())}

    seen = len(Canned.seen)  # the canned judge now says "no" to everything
    second = run_with(server, "no-judge")
    assert [r["model"] for r in Canned.seen[seen:]] == ["no-judge"] * 3
    assert second["scores"]["accuracy"] == 0.0 and second["protocol"]["judge"]["model"] == "no-judge"
    assert second["counts"]["rejudged"] == 3 and second["counts"]["reused_predictions"] == 3
    assert "3 judged again" in capsys.readouterr().out
    newest = {r["qid"]: r for r in map(json.loads, predictions_path(out).read_text().splitlines())}
    assert {q: r["response"] for q, r in newest.items()} == responses  # not generated again
    assert {r["judged_by"]["model"] for r in newest.values()} == {"no-judge"}

    seen = len(Canned.seen)
    assert run_with(server, "no-judge")["counts"]["rejudged"] == 0 and len(Canned.seen) == seen
    # The same judge's name on another endpoint is another judge.
    other_url = server.replace("127.0.0.1", "localhost")
    assert run_with(other_url, "no-judge")["counts"]["rejudged"] == 3 and len(Canned.seen) == seen + 3


def test_a_judged_task_without_a_judge_stops_before_the_model_loads(anet_root, tmp_path, capsys, no_model):
    from harness.cli import main

    assert main(["eval", "--task", "activitynet_qa", "--data", str(anet_root), "--model", str(tmp_path),
                 "--out", str(tmp_path / "res" / "a.json")]) == 2
    assert "activitynet_qa is scored by an LLM judge: give --judge-url and --judge-model" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_an_unreachable_or_wrong_judge_is_named_before_the_model_loads(anet_root, tmp_path, capsys, no_model):
    """--judge-url where nothing listens, or a model the endpoint does not serve (it lists its
    models at GET /models, as vllm serve does): one line before any model loads."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from harness.cli import main
    from harness.parallel.launch import free_port

    def argv(url, model="judge-7b"):
        return ["eval", "--task", "activitynet_qa", "--data", str(anet_root), "--model", str(tmp_path),
                "--out", str(tmp_path / "r.json"), "--judge-url", url, "--judge-model", model]

    assert main(argv(f"http://127.0.0.1:{free_port()}/v1")) == 2
    assert "cannot be reached" in capsys.readouterr().err

    class Lists(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"data": [{"id": "judge-7b"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Lists)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert main(argv(f"http://127.0.0.1:{httpd.server_port}/v1", "judge-70b")) == 2
        assert "serves ['judge-7b'], not --judge-model 'judge-70b'" in capsys.readouterr().err
    finally:
        httpd.shutdown()
    assert not (tmp_path / "r.json").exists()
