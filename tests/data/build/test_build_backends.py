"""HTTP backend (retries, errors, model resolution), prompt templates (golden hashes),
clip planning and the video scan."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data.build import prompts
from harness.data.build.backends import (
    BackendError,
    ChatRequest,
    OpenAIBackend,
    clock,
    open_backend,
)
from harness.data.build.clips import ClipDecoder, clip_frame_indices, plan_clips
from harness.data.build.scan import scan_videos
from harness.data.build.state import ItemError, StageState
from harness.parallel.launch import free_port

# A template's text is pinned per version: editing one in place changes what every later
# record was made with, so a change needs a new file (reason_v2.txt) and CURRENT updated.
GOLDEN = {
    "caption_v1": "8858b4ae0389f376eba90d450aa52e8ce6f4d9515652ee8e03bf331128578b76",
    "reason_v1": "e42c273f24cd9dbcfb7c1a957a16daa2bb8d0db00aa3b947f61e2c79005f3b37",
    "blind_v1": "a79649bdb2f356a9ae58dfec465f72ee58ca91944eb782e1ee9ffccb30cc7e60",
}


@pytest.mark.parametrize("version", sorted(GOLDEN))
def test_prompt_templates_are_pinned(version):
    assert prompts.load_prompt(version).sha == GOLDEN[version]


def test_prompt_render_and_errors():
    p = prompts.current("reason")
    system, user = p.render(duration="01:00", captions="[00:00-00:10] x", n_questions=4,
                            plan="1. temporal", n_options=4, option_slots='"...", "..."')
    assert "[00:00-00:10] x" in user and '"answer": "B"' in user and system
    with pytest.raises(KeyError, match=r"reason_v1: no value for placeholder \$captions"):
        p.render(duration="01:00")
    with pytest.raises(FileNotFoundError, match="known versions"):
        prompts.load_prompt("reason_v99")


def test_chat_sends_frames_as_images_and_reads_the_reply(scripted):
    b = open_backend(scripted.url)
    assert b.name == f"{scripted.url}#scripted"  # the server's only model
    frames = np.zeros((3, 32, 48, 3), dtype=np.uint8)
    reply = b.chat(ChatRequest("sys", "Describe.", 16, 0.0, frames, np.array([0.0, 1.5, 70.0])))
    assert reply.text == "A red square moves across 3 frames and then leaves."
    assert reply.finish_reason == "stop"


def test_retries_with_backoff_then_succeeds(scripted):
    scripted.fail_first = 2
    b = OpenAIBackend(scripted.url, "scripted", retries=3, backoff=0.01)
    assert b.chat(ChatRequest("s", "You cannot see the video", 4)).text == "A"
    assert scripted.counts["blind"] == 3


def test_gives_up_after_retries(scripted):
    scripted.fail_first = 100
    b = OpenAIBackend(scripted.url, "scripted", retries=2, backoff=0.01)
    with pytest.raises(BackendError, match=r"gave up after 3 attempts; last: HTTP 503"):
        b.chat(ChatRequest("s", "You cannot see the video", 4))
    assert isinstance(BackendError("x"), ItemError)  # fails one item, not the build


def test_client_errors_are_not_retried(scripted):
    b = OpenAIBackend(scripted.url.replace("/v1", "/nope"), "scripted", retries=3, backoff=0.01)
    with pytest.raises(BackendError, match=r"/nope/chat/completions: HTTP 404"):
        b.chat(ChatRequest("s", "t", 4))


def test_unreachable_server_names_the_url():
    port = free_port()  # closed again: nothing listens there
    b = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(BackendError, match=rf"127.0.0.1:{port}/v1/chat/completions: gave up"):
        b.chat(ChatRequest("s", "t", 4))


def test_bad_specs():
    with pytest.raises(FileNotFoundError, match="not an http"):
        open_backend("/no/such/model")


def test_clock():
    assert (clock(0), clock(12.9), clock(75), clock(3725)) == ("00:00", "00:12", "01:15", "1:02:05")


def test_plan_clips():
    assert [(c.start, c.end) for c in plan_clips(30, 10)] == [(0, 10), (10, 20), (20, 30)]
    # A short tail joins the clip before it; a long one stays its own clip.
    assert [(c.start, c.end) for c in plan_clips(32, 10)] == [(0, 10), (10, 20), (20, 32)]
    assert [(c.start, c.end) for c in plan_clips(36, 10)] == [(0, 10), (10, 20), (20, 30), (30, 36)]
    assert [(c.start, c.end) for c in plan_clips(4, 10)] == [(0, 4)]
    with pytest.raises(ValueError, match="clip length"):
        plan_clips(30, 0)


def test_clip_frames_stay_inside_the_clip():
    (clip,) = [c for c in plan_clips(30, 10) if c.index == 1]
    idx = clip_frame_indices(clip, fps=4.0, total_frames=120, n=8)
    assert idx.tolist() == [42, 47, 52, 57, 62, 67, 72, 77]  # floor(4 * (10 + (k + .5) * 1.25))
    assert idx.min() >= 40 and idx.max() < 80


def test_scan_skips_with_reasons_and_caches(build_videos, tmp_path):
    state = StageState(tmp_path / "scan.jsonl")
    res = scan_videos(build_videos, state, progress=False)
    assert [v.video_id for v in res.videos] == [f"day{1 + i // 3}__v{i:04d}" for i in range(6)]
    assert set(res.skipped) == {"broken.mp4", "old.avi"}
    assert "decord could not open it" in res.skipped["broken.mp4"]
    assert "remux to mp4" in res.skipped["old.avi"]
    assert res.ignored == 1  # notes.txt
    assert all(abs(v.duration - 30) < 0.5 for v in res.videos)
    again = scan_videos(build_videos, StageState(tmp_path / "scan.jsonl"), progress=False)
    assert again.videos == res.videos and again.skipped == res.skipped


def test_clip_decoder_errors_are_item_errors(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    with pytest.raises(ItemError, match="bad.mp4"):
        ClipDecoder().frames(str(bad), plan_clips(10, 10)[0], 4)
