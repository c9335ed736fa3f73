import pytest

from harness.data.synthetic import synthesize


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """6 synthetic videos (sft 2 / rl 3 / test 1) of 30 s, 4 questions each."""
    out = tmp_path_factory.mktemp("toy_data")
    synthesize(out, 6, seed=0, minutes=(0.5, 0.5), progress=False)
    return out


def tiny_overrides(data_dir, out_dir, **extra):
    base = {
        "data.dir": data_dir, "data.num_frames": 4, "run.out_dir": out_dir,
        "run.tensorboard": False, "run.progress": False, "run.eval_max_new_tokens": 8,
    }
    base.update(extra)
    return [f"{k}={'null' if v is None else v}" for k, v in base.items()]
