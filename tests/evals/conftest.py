import pytest

from harness.data.synthetic import synthesize
from harness.model.build import init_model


@pytest.fixture(scope="session")
def mme_root(tmp_path_factory):
    """Synthetic Video-MME layout: 3 short videos (12 questions), all in the test split."""
    out = tmp_path_factory.mktemp("mme")
    summary = synthesize(out, 3, seed=0, minutes=(0.2, 0.3), fps=2.0, formats=("harness", "videomme"),
                         split_fractions=(0.0, 0.0, 1.0), progress=False)
    return summary.videomme_dir


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "vila-tiny"
    init_model("vila", "tiny", seed=0).save_pretrained(path)
    return path


@pytest.fixture()
def no_model(monkeypatch):
    """`harness eval` must stop before it loads a model: loading one fails the test."""
    import evals.model

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(evals.model, "HarnessVLM", refuse)

