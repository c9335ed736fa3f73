"""Qwen2.5-Omni placeholder expansion and M-RoPE positions (harness/model/omni_positions.py),
each rule pinned to its reference:

* `rule="transformers"`: transformers 5.19's processor expansion
  (`Qwen2_5OmniProcessor.replace_multimodal_special_tokens`) and `get_rope_index` on a tiny
  randomly initialised thinker built by harness/model/omni_config.py;
* `rule="vllm"`: vLLM 0.32's own prompt replacement (`omni_get_updates_use_audio_in_video`
  applied by its `_apply_token_matches_with_placeholders`, which also places each item) and
  `Qwen2_5OmniThinkerForConditionalGeneration.get_mrope_input_positions`, run in a
  subprocess: vLLM's Qwen2.5-Omni module imports a transformers module that needs
  torchvision, which the CPU environment removes by design; the subprocess gives that
  import a stand-in and serves vLLM's answers as JSON lines, so no module of this test
  process changes (tests/rollout checks that vLLM's Qwen modules do *not* import here).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model.omni_config import omni_thinker_config
from harness.model.omni_positions import (
    TOKEN_NAMES,
    OmniTiming,
    OmniTokenIds,
    audio_token_count,
    expand_placeholders,
    omni_mrope_positions,
    video_audio_chunks,
)

IDS = dict(image_token_id=10, video_token_id=11, audio_token_id=12, vision_start_token_id=13,
           vision_end_token_id=14, audio_start_token_id=15, audio_end_token_id=16,
           bos_token_id=1, eos_token_id=2, pad_token_id=0)
VOCAB = 100
TOK = OmniTokenIds(image=10, video=11, audio=12, vision_bos=13, vision_eos=14, audio_bos=15, audio_eos=16)
TIMING = OmniTiming()  # 25 ids/s, 2-s chunks, 2x2 merge: the released values
ROOT = Path(__file__).resolve().parents[2]


# --- prompts ---------------------------------------------------------------------------------

def _prompt(items, rng):
    """A compact prompt (each medium one placeholder between its markers) and its media, from
    items ("text", n) / ("image", thw) / ("video", thw, sec) / ("audio", frames) /
    ("av", thw, sec, frames) (a video with its audio track)."""
    ids, media = [], dict(images=[], videos=[], seconds=[], frames=[])
    for item in items:
        kind = item[0]
        if kind == "text":
            ids += rng.integers(20, VOCAB, item[1]).tolist()
        elif kind == "image":
            ids += [TOK.vision_bos, TOK.image, TOK.vision_eos]
            media["images"].append(list(item[1]))
        elif kind == "audio":
            ids += [TOK.audio_bos, TOK.audio, TOK.audio_eos]
            media["frames"].append(item[1])
        else:
            ids += [TOK.vision_bos, TOK.video, TOK.vision_eos]
            media["videos"].append(list(item[1]))
            media["seconds"].append(item[2])
            if kind == "av":
                media["frames"].append(item[3])
    return torch.tensor(ids), media


def _ours(compact, media, use_audio_in_video, rule):
    kw = dict(image_grid_thw=media["images"], video_grid_thw=media["videos"],
              video_seconds_per_grid=media["seconds"],
              audio_tokens=[audio_token_count(f) for f in media["frames"]],
              use_audio_in_video=use_audio_in_video, timing=TIMING, rule=rule)
    expanded = expand_placeholders(compact, TOK, **kw)
    return expanded, omni_mrope_positions(expanded, TOK, **kw)


# --- transformers ----------------------------------------------------------------------------

@functools.cache
def _thinker():
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    torch.manual_seed(0)
    return Qwen2_5OmniThinkerForConditionalGeneration(omni_thinker_config("tiny", VOCAB, IDS)).eval()


_NAMES = {TOK.image: "<|IMAGE|>", TOK.video: "<|VIDEO|>", TOK.audio: "<|AUDIO|>",
          TOK.vision_bos: "<|vision_bos|>", TOK.vision_eos: "<|vision_eos|>",
          TOK.audio_bos: "<|audio_bos|>", TOK.audio_eos: "<|audio_eos|>"}


def _hf_expand(compact, media, use_audio_in_video):
    """transformers' processor expansion, run on the prompt written as text (`<tN>` for a text
    token), on a stand-in processor holding just what the method reads."""
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import Qwen2_5OmniProcessor as P

    merge = SimpleNamespace(merge_size=TIMING.spatial_merge_size)
    proc = SimpleNamespace(audio_token="<|AUDIO|>", image_token="<|IMAGE|>", video_token="<|VIDEO|>",
                           vision_bos_token="<|vision_bos|>", vision_eos_token="<|vision_eos|>",
                           audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>",
                           image_processor=merge, video_processor=merge)
    proc.get_chunked_index = functools.partial(P.get_chunked_index, proc)
    text = "".join(_NAMES.get(i, f"<t{i}>") for i in compact.tolist())
    (out,) = P.replace_multimodal_special_tokens(
        proc, [text], iter([audio_token_count(f) for f in media["frames"]]),
        iter(np.array(media["images"]).reshape(-1, 3)), iter(np.array(media["videos"]).reshape(-1, 3)),
        video_second_per_grid=iter(media["seconds"]), use_audio_in_video=use_audio_in_video,
        position_id_per_seconds=TIMING.position_id_per_seconds, seconds_per_chunk=TIMING.seconds_per_chunk)
    ids = {v: k for k, v in _NAMES.items()}
    return torch.tensor([ids[s] if s in ids else int(s[2:-1])
                         for s in re.findall(r"<\|\w+\|>|<t\d+>", out)])


def _hf_positions(expanded, media, use_audio_in_video):
    def rows(x, dtype=torch.long):
        return torch.tensor(x, dtype=dtype) if len(x) else None

    pos, _ = _thinker().get_rope_index(
        expanded[None], image_grid_thw=rows(media["images"]), video_grid_thw=rows(media["videos"]),
        attention_mask=torch.ones(1, len(expanded), dtype=torch.long), use_audio_in_video=use_audio_in_video,
        audio_seqlens=rows(media["frames"]), second_per_grids=rows(media["seconds"], torch.float32))
    return pos[:, 0]  # [3, L]


def _check_transformers(items, use_audio_in_video=False, seed=0):
    compact, media = _prompt(items, np.random.default_rng(seed))
    expanded, ours = _ours(compact, media, use_audio_in_video, "transformers")
    assert torch.equal(expanded, _hf_expand(compact, media, use_audio_in_video))
    assert torch.equal(ours, _hf_positions(expanded, media, use_audio_in_video))
    return expanded, ours


# --- vLLM (in a subprocess) ------------------------------------------------------------------

def _vllm_worker() -> None:
    """Serve vLLM 0.32's expansion and positions for one compact prompt per input line."""
    out = os.fdopen(os.dup(1), "w")  # answers go here; vLLM's own logging goes to stderr
    os.dup2(2, 1)
    try:
        import transformers.models.qwen2_vl.image_processing_qwen2_vl  # noqa: F401
    except ImportError:  # needs torchvision; vLLM only takes smart_resize from it
        import types

        from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

        stand_in = types.ModuleType("transformers.models.qwen2_vl.image_processing_qwen2_vl")
        stand_in.smart_resize = pil.smart_resize
        stand_in.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
        sys.modules[stand_in.__name__] = stand_in
    from torch import nn
    from transformers import Qwen2_5OmniThinkerConfig
    from vllm.model_executor.models.qwen2_5_omni_thinker import (
        Qwen2_5OmniThinkerForConditionalGeneration as Thinker,
    )
    from vllm.model_executor.models.qwen2_5_omni_thinker import (
        Qwen2_5OmniThinkerMultiModalProcessor as Processor,
    )
    from vllm.model_executor.models.qwen2_audio import _get_feat_extract_output_lengths
    from vllm.multimodal.inputs import (
        MultiModalFeatureSpec,
        MultiModalFieldElem,
        MultiModalKwargsItem,
        MultiModalSharedField,
        PlaceholderRange,
    )
    from vllm.multimodal.processing.processor import (
        PromptReplacement,
        PromptUpdateDetails,
        _apply_token_matches_with_placeholders,
    )

    def elem(x):
        return MultiModalFieldElem(data=torch.as_tensor(x), field=MultiModalSharedField(batch_size=1))

    def answer(req):
        t = req["tokens"]
        cfg = Qwen2_5OmniThinkerConfig(
            image_token_index=t["image"], video_token_index=t["video"], audio_token_index=t["audio"],
            audio_start_token_id=t["audio_bos"], audio_end_token_id=t["audio_eos"],
            vision_start_token_id=t["vision_bos"], vision_end_token_id=t["vision_eos"],
            seconds_per_chunk=req["seconds_per_chunk"],
            vision_config={"spatial_merge_size": req["merge"], "tokens_per_second": req["rate"]})
        merge2 = req["merge"] ** 2
        audio_len = [int(_get_feat_extract_output_lengths(torch.tensor(f))[1]) for f in req["frames"]]
        av = req["use_audio_in_video"]

        def video_tokens(i):
            grid = req["videos"][i]
            if not av:
                return [t["video"]] * (int(np.prod(grid)) // merge2)
            ids = Processor.omni_get_updates_use_audio_in_video(cfg, audio_len[i], torch.tensor(grid), req["seconds"][i])
            return PromptUpdateDetails.select_token_id(ids, embed_token_id=t["video"])

        updates = {
            "image": [[PromptReplacement("image", [t["image"]], lambda i: [t["image"]] * (int(np.prod(req["images"][i])) // merge2)).resolve(i)]
                      for i in range(len(req["images"]))],
            "video": [[PromptReplacement("video", [t["video"]], video_tokens).resolve(i)] for i in range(len(req["videos"]))],
        }
        if not av:  # with use_audio_in_video vLLM drops the audio updates: the videos carry them
            updates["audio"] = [[PromptReplacement("audio", [t["audio"]], lambda i: [t["audio"]] * audio_len[i]).resolve(i)]
                                for i in range(len(audio_len))]
        ids, _, placed = _apply_token_matches_with_placeholders(req["compact"], updates)
        features = []
        for kind, infos in placed.items():
            for p in infos:
                i = p.item_idx
                if kind == "image":
                    data = {"image_grid_thw": elem(req["images"][i])}
                elif kind == "video":
                    data = {"video_grid_thw": elem(req["videos"][i]), "use_audio_in_video": elem(av),
                            "second_per_grid_ts": elem(torch.tensor(req["seconds"][i], dtype=torch.float32))}
                else:
                    data = {"audio_feature_lengths": elem(req["frames"][i])}
                features.append(MultiModalFeatureSpec(data=MultiModalKwargsItem(data), modality=kind, identifier=f"{kind}{i}",
                                                      mm_position=PlaceholderRange(offset=p.start_idx, length=p.length)))
                if kind == "video" and av:  # its audio item sits at the video's placeholder
                    features.append(MultiModalFeatureSpec(
                        data=MultiModalKwargsItem({"audio_feature_lengths": elem(req["frames"][i])}), modality="audio",
                        identifier=f"audio{i}", mm_position=PlaceholderRange(offset=p.start_idx, length=p.length)))
        thinker = Thinker.__new__(Thinker)  # get_mrope_input_positions reads only .config
        nn.Module.__init__(thinker)
        thinker.config = cfg
        positions, _ = thinker.get_mrope_input_positions(ids, features)
        return {"ids": ids, "positions": positions.tolist()}

    print("ready", file=out, flush=True)
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception:  # the test shows vLLM's traceback
            import traceback

            reply = {"error": traceback.format_exc()}
        print(json.dumps(reply), file=out, flush=True)


@pytest.fixture(scope="module")
def vllm():
    pytest.importorskip("vllm")
    env = dict(os.environ, PYTHONPATH=str(ROOT), VLLM_LOGGING_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, __file__, "--vllm-worker"], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        pytest.fail("vLLM's Qwen2.5-Omni module did not import in the worker (its stderr is above)")

    def ask(compact, media, use_audio_in_video):
        req = dict(compact=compact.tolist(), images=media["images"], videos=media["videos"],
                   seconds=media["seconds"], frames=media["frames"], use_audio_in_video=use_audio_in_video,
                   tokens=TOK.__dict__, merge=TIMING.spatial_merge_size, rate=TIMING.position_id_per_seconds,
                   seconds_per_chunk=TIMING.seconds_per_chunk)
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        if "error" in answer:
            raise AssertionError("vLLM failed on this prompt:\n" + answer["error"])
        return torch.tensor(answer["ids"]), torch.tensor(answer["positions"])

    yield ask
    proc.stdin.close()
    proc.wait(timeout=30)


def _check_vllm(vllm, items, use_audio_in_video=False, seed=0):
    compact, media = _prompt(items, np.random.default_rng(seed))
    expanded, ours = _ours(compact, media, use_audio_in_video, "vllm")
    ids, positions = vllm(compact, media, use_audio_in_video)
    assert torch.equal(expanded, ids)
    assert torch.equal(ours, positions)
    return expanded, ours


# --- fixed prompts, both references ------------------------------------------------------------

CASES = {
    "text only": ([("text", 7)], False),
    "one image": ([("text", 3), ("image", (1, 4, 6)), ("text", 2)], False),
    "two images": ([("text", 2), ("image", (1, 4, 4)), ("text", 1), ("image", (1, 8, 2)), ("text", 3)], False),
    "one video": ([("text", 3), ("video", (3, 4, 4), 1.0), ("text", 4)], False),
    "long video, time past the grid": ([("text", 1), ("video", (6, 2, 2), 2.0), ("text", 2)], False),
    "one audio": ([("text", 2), ("audio", 250), ("text", 3)], False),
    "image, video, audio": ([("text", 2), ("image", (1, 4, 4)), ("video", (2, 4, 6), 0.5), ("audio", 99), ("text", 2)], False),
    "video with audio, 1 chunk": ([("text", 3), ("av", (2, 4, 4), 1.0, 120), ("text", 2)], True),
    "video with audio, 3 chunks, audio longer": ([("text", 3), ("av", (5, 2, 4), 1.0, 575), ("text", 2)], True),
    "video with audio, video longer": ([("text", 1), ("av", (8, 4, 2), 1.0, 101), ("text", 1)], True),
    "image and two videos with audio": ([("text", 2), ("image", (1, 2, 2)), ("av", (3, 2, 2), 0.5, 333),
                                         ("text", 1), ("av", (2, 4, 4), 1.0, 207), ("text", 2)], True),
}


@pytest.mark.parametrize("name", CASES)
def test_transformers_rule_is_transformers(name):
    _check_transformers(*CASES[name])


@pytest.mark.parametrize("name", CASES)
def test_vllm_rule_is_vllm(name, vllm):
    _check_vllm(vllm, *CASES[name])


@pytest.mark.parametrize("name", [n for n, (_, av) in CASES.items() if not av])
def test_the_rules_agree_without_audio_in_video(name):
    items, _ = CASES[name]
    compact, media = _prompt(items, np.random.default_rng(0))
    a, pa = _ours(compact, media, False, "vllm")
    b, pb = _ours(compact, media, False, "transformers")
    assert torch.equal(a, b) and torch.equal(pa, pb)


# --- varied grids and lengths --------------------------------------------------------------

SECONDS = st.sampled_from([0.25, 0.5, 2 / 3, 1.0, 1.5, 2.0])  # 2/3: float32 and float64 round apart
GRID = st.tuples(st.integers(1, 6), st.sampled_from([2, 4, 6]), st.sampled_from([2, 4, 8]))
FRAMES = st.integers(3, 700)  # 1 to 175 audio tokens (up to 4 chunks)


@st.composite
def _av_prompts(draw, with_audio):
    items = [("text", draw(st.integers(0, 4)))]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["image", "video"] + ([] if with_audio else ["audio"])))
        if kind == "image":
            items.append(("image", (1, draw(st.sampled_from([2, 4])), draw(st.sampled_from([2, 6])))))
        elif kind == "audio":
            items.append(("audio", draw(FRAMES)))
        elif with_audio:
            items.append(("av", draw(GRID), draw(SECONDS), draw(FRAMES)))
        else:
            items.append(("video", draw(GRID), draw(SECONDS)))
        items.append(("text", draw(st.integers(0, 3))))
    return items


@settings(max_examples=40, deadline=None)
@given(items=_av_prompts(with_audio=True), seed=st.integers(0, 9))
def test_transformers_rule_on_varied_audio_in_video_prompts(items, seed):
    _check_transformers(items, True, seed)


@settings(max_examples=40, deadline=None)
@given(items=_av_prompts(with_audio=False), seed=st.integers(0, 9))
def test_transformers_rule_on_varied_prompts(items, seed):
    _check_transformers(items, False, seed)


@settings(max_examples=40, deadline=None)
@given(items=_av_prompts(with_audio=True), seed=st.integers(0, 9))
def test_vllm_rule_on_varied_audio_in_video_prompts(vllm, items, seed):
    _check_vllm(vllm, items, True, seed)


@settings(max_examples=40, deadline=None)
@given(items=_av_prompts(with_audio=False), seed=st.integers(0, 9))
def test_vllm_rule_on_varied_prompts(vllm, items, seed):
    _check_vllm(vllm, items, False, seed)


@settings(max_examples=25, deadline=None)
@given(grid=GRID, sec=st.sampled_from([2.5, 3.0, 5.0, 14.0]), frames=st.integers(3, 3000))
def test_long_time_steps_match_each_reference(vllm, grid, sec, frames):
    """More than 2 s per temporal grid (under 1 frame/s: long videos): the layouts differ."""
    items = [("text", 2), ("av", grid, sec, frames), ("text", 2)]
    _check_transformers(items, True)
    _check_vllm(vllm, items, True)


# --- the disagreement, by hand ---------------------------------------------------------------

def test_the_rules_place_a_video_with_audio_differently():
    """2 text tokens, a video of 2 temporal grids of 1x1 token 1 s apart (time 0, 25) with
    3 audio tokens (0.12 s): one chunk, [V V A A A]."""
    compact, media = _prompt([("text", 2), ("av", (2, 2, 2), 1.0, 11), ("text", 2)], np.random.default_rng(0))
    assert audio_token_count(11) == 3
    ids, hf = _ours(compact, media, True, "transformers")
    names = [{13: "vb", 15: "ab", 11: "V", 12: "A", 16: "ae", 14: "ve"}.get(i, "t") for i in ids.tolist()]
    assert names == ["t", "t", "vb", "ab", "V", "V", "A", "A", "A", "ae", "ve", "t", "t"]
    # transformers: the bos pair share 2; V at 3+{0, 25}; A at 3, 4, 5; the eos pair share
    # the last chunk's max + 1 = 6 (below the video's 28); text goes on at 7
    assert hf[0].tolist() == [0, 1, 2, 2, 3, 28, 3, 4, 5, 6, 6, 7, 8]
    # vLLM: the same block starts one token early, at the audio_bos; the last audio token and
    # the eos pair continue as text after the block's max (28)
    _, vl = _ours(compact, media, True, "vllm")
    assert vl[0].tolist() == [0, 1, 2, 3, 28, 3, 4, 5, 29, 30, 31, 32, 33]
    # rows and columns: the video's stay at its start (1x1 grid); the rest follow time
    assert hf[1].tolist() == [0, 1, 2, 2, 3, 3, 3, 4, 5, 6, 6, 7, 8] and torch.equal(hf[2], hf[1])
    assert vl[1].tolist() == [0, 1, 2, 3, 3, 3, 4, 5, 29, 30, 31, 32, 33] and torch.equal(vl[2], vl[1])


def test_layouts_differ_past_one_grid_per_chunk():
    """3 s per temporal grid, 2-s chunks (time buckets 0, 1, 3): vLLM's processor keeps 2 s of
    audio per bucket, the empty bucket 2 included; transformers' adds one-token video chunks
    instead; vLLM's positions skip the empty bucket, so they follow neither layout."""
    grid, frames = (3, 4, 2), 600  # 2 tokens per grid at times 0, 75, 150; 6 s of audio
    assert audio_token_count(frames) == 150
    vl = video_audio_chunks(grid, 3.0, 150, TIMING, "vllm")
    hf = video_audio_chunks(grid, 3.0, 150, TIMING, "transformers")
    assert vl == [("video", 0, 2), ("audio", 0, 50), ("video", 2, 4), ("audio", 50, 100),
                  ("audio", 100, 150), ("video", 4, 6)]
    assert hf == [("video", 0, 2), ("audio", 0, 50), ("video", 2, 4), ("audio", 50, 100),
                  ("video", 4, 5), ("audio", 100, 150), ("video", 5, 6)]
    compact, media = _prompt([("av", grid, 3.0, frames)], np.random.default_rng(0))
    ids, pos = _ours(compact, media, True, "vllm")
    # vLLM's positions, from the audio_bos on: V V A*50 V V A*50 V V A*50; its tokens from
    # there: ab V V A*50 V V A*50 A*50 V V. The second grid's first position lands on the
    # 50th audio token (the one-token shift), the last grid's two on the 100th and 101st
    # (the skipped bucket); the last video tokens get an audio and a text position.
    video_like = (pos[1] != pos[0]) & (ids == TOK.audio)  # a spatial index on an audio token
    audio = (ids == TOK.audio).nonzero().flatten()
    assert torch.equal(video_like.nonzero().flatten(), audio[[49, 99, 100]])
    assert (pos[0, ids == TOK.video][-2:] == pos[1, ids == TOK.video][-2:]).all()


def test_chunks_cover_every_row_once():
    for rule in ("vllm", "transformers"):
        for grid, sec, audio in [((5, 4, 4), 1.0, 130), ((2, 2, 2), 14.0, 700), ((7, 2, 6), 2 / 3, 1)]:
            chunks = video_audio_chunks(grid, sec, audio, TIMING, rule)
            for kind, total in (("video", grid[0] * grid[1] * grid[2] // 4), ("audio", audio)):
                spans = [(a, b) for k, a, b in chunks if k == kind]
                assert [a for a, _ in spans] == [0] + [b for _, b in spans[:-1]] and spans[-1][1] == total


def test_mismatched_spans_are_errors():
    compact, media = _prompt([("text", 2), ("av", (2, 4, 4), 1.0, 300), ("text", 1)], np.random.default_rng(0))
    kw = dict(video_grid_thw=media["videos"], video_seconds_per_grid=[1.0], use_audio_in_video=True)
    ids = expand_placeholders(compact, TOK, audio_tokens=[audio_token_count(300)], **kw)
    with pytest.raises(ValueError, match="video with audio"):
        omni_mrope_positions(ids, TOK, audio_tokens=[audio_token_count(300) - 1], **kw)
    with pytest.raises(ValueError, match="more placeholders"):
        expand_placeholders(compact, TOK, audio_tokens=[], **kw)
    with pytest.raises(ValueError, match="more image_grid_thw"):
        omni_mrope_positions(ids, TOK, image_grid_thw=[[1, 2, 2]], audio_tokens=[audio_token_count(300)], **kw)


def test_token_ids_from_a_tokenizer_with_the_released_names():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    names = list(TOKEN_NAMES.values())
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
                                  unk_token="[UNK]")
    with pytest.raises(ValueError, match="lacks"):
        OmniTokenIds.from_tokenizer(tok)
    tok.add_special_tokens({"additional_special_tokens": names})
    ids = OmniTokenIds.from_tokenizer(tok)
    assert tok.convert_ids_to_tokens([ids.image, ids.audio_bos, ids.vision_eos]) == ["<|IMAGE|>", "<|audio_bos|>", "<|vision_eos|>"]


if __name__ == "__main__" and sys.argv[1:] == ["--vllm-worker"]:
    _vllm_worker()
