import pytest

from harness.data.synthetic import synthesize


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """6 synthetic videos (sft 2 / rl 3 / test 1) of 30 s, 4 questions each."""
    out = tmp_path_factory.mktemp("toy_data")
    synthesize(out, 6, seed=0, minutes=(0.5, 0.5), progress=False)
    return out


@pytest.fixture(autouse=True, scope="session")
def _checksum_cache_in_tmp(tmp_path_factory):
    """harness.files remembers checksums under ~/.cache/harness; tests keep theirs apart."""
    import os

    os.environ["HARNESS_CACHE_DIR"] = str(tmp_path_factory.mktemp("harness-cache"))
