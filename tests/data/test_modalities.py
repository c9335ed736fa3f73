"""`harness data synth --modality M` / `data.synth_modality`: every medium's sft / rl / test
splits, as the recipes read them, with every medium's files decodable."""

from __future__ import annotations

import json

import pytest

from harness.data.dataset import QADataset, SkipLedger
from harness.data.synthetic.modalities import split_sizes, synthesize_modality

KINDS = {"text": (), "image": ("image", "video"), "audio": ("audio",), "video+audio": ("video", "audio")}


@pytest.mark.parametrize("modality", list(KINDS))
def test_every_split_reads_and_its_media_decode(tmp_path, modality):
    files = synthesize_modality(tmp_path, modality, 12, seed=0)
    assert sorted(files) == ["rl", "sft", "test"]
    ids = set()
    for name, path in files.items():
        ds = QADataset(path, 4, SkipLedger(0.0), media_kinds=KINDS[modality])
        assert len(ds) == split_sizes(12)[name] and ds.malformed == 0
        ids |= {r.problem_id for r in ds.records}
        for rec in ds.records:
            assert all(ds.load_medium(rec, m) for m in ds.media(rec))
    assert len(ids) == 12  # no id twice across the splits (they share one media folder)


def test_text_levels_and_their_checks(tmp_path):
    easy = synthesize_modality(tmp_path / "easy", "text", 30, seed=0, text_level="easy")
    rows = [json.loads(line) for line in easy["sft"].read_text().splitlines()]
    assert {r["steps"] for r in rows} == {1}
    with pytest.raises(ValueError, match="text_level is for modality text"):
        synthesize_modality(tmp_path / "img", "image", 6, text_level="easy")
    with pytest.raises(ValueError, match="unknown modality"):
        synthesize_modality(tmp_path / "x", "smell", 6)
    with pytest.raises(ValueError, match="at least 3 items"):
        split_sizes(2)


def test_cli_writes_a_modality(tmp_path, capsys):
    from harness.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "t"), "--modality", "text", "--items", "9",
                 "--difficulty", "easy"]) == 0
    assert "sft:" in capsys.readouterr().out and (tmp_path / "t" / "test.jsonl").is_file()
    assert main(["data", "synth", "--out", str(tmp_path / "a"), "--modality", "audio"]) == 2  # no --items
