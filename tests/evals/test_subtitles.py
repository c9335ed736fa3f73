"""Subtitle parsing and selection: only cues covering the sampled frames, in time order."""

import numpy as np

from evals.subtitles import NO_SUBTITLES, Cue, cues_for_frames, parse_srt, read_srt, subtitle_block

REAL_STYLE = (
    "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<font color=\"white\" size=\".72c\">Hello there</font>\r\n\r\n"
    "2\r\n00:00:04,000 --> 00:00:05,000\r\n<font color=\"white\" size=\".72c\">second</font>\r\n"
    "<font color=\"white\" size=\".72c\">line</font>\r\n\r\n"
    "3\r\n00:01:00.5 --> 00:01:02.000\r\nplain\r\n"
)


def test_parse_real_style_srt():
    cues = parse_srt(REAL_STYLE)
    assert cues == [Cue(1.0, 2.5, "Hello there"), Cue(4.0, 5.0, "second line"), Cue(60.5, 62.0, "plain")]


def test_only_cues_covering_sampled_frames_in_time_order():
    cues = [Cue(10.0, 12.0, "late"), Cue(0.0, 1.0, "early"), Cue(5.0, 6.0, "middle"), Cue(20, 21, "never")]
    fps = 2.0  # frame i is at i / 2 s; cue [start, end) covers frames int(start*fps) .. int(end*fps)-1
    assert cues_for_frames(cues, np.array([21, 1, 10]), fps) == ["early", "middle", "late"]
    assert cues_for_frames(cues, [2, 12], fps) == []  # frame 2 = 1.0 s: the end is exclusive
    assert cues_for_frames(cues, [1, 1, 1], fps) == ["early"]  # once, even if frames repeat


def test_fallback_when_video_has_no_subtitles(tmp_path):
    assert read_srt(tmp_path / "none.srt") is None
    assert subtitle_block(None, [0, 1], 30.0) == NO_SUBTITLES
    (tmp_path / "a.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    assert subtitle_block(read_srt(tmp_path / "a.srt"), [0, 100], 30.0) == "hi"
    assert subtitle_block(read_srt(tmp_path / "a.srt"), [100], 30.0) == ""
