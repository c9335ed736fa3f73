from harness import doctor


def test_missing_module_is_reported_with_advice():
    check = doctor._import_check("no_such_module_xyz", "no-such-dist", True, "pip install it")
    assert not check.ok and check.detail == "not installed" and check.advice == "pip install it"


def test_cpu_environment_has_no_cuda_companions():
    """The project's install removes torchvision/torchaudio/torchcodec; if they come back
    (e.g. a dependency change) with CPU torch, this fails with the reason."""
    check = doctor._companion_check(doctor._version("torch"))
    assert check.ok, check.detail
