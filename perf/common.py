"""What every perf suite records beside its numbers: the machine, the versions, the date; and
the two places results go (a JSON file under perf/results/, a row in perf/README.md).

A results JSON always has `machine`, `machine_kind`, `versions`, `date`, `notes` and
`figures`: a flat map `name -> {"value", "unit", "better": "lower"|"higher", "threshold"}`
that `harness report` compares with a baseline of the same machine kind (the threshold is
the relative change tolerated before the figure counts as regressed).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("perf/results")
README = Path("perf/README.md")


def machine_kind() -> str:
    """`cpu-2core`, `gpu-8xH100-80GB`, ...: the key of the baseline file in perf/baselines/."""
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            name = torch.cuda.get_device_name(0).replace("NVIDIA ", "").split()[0]
            mem = round(torch.cuda.get_device_properties(0).total_memory / 2**30)
            return f"gpu-{n}x{name}-{mem}GB"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return f"cpu-{os.cpu_count()}core"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages * size / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{machine_kind()} ({cpu}, {os.cpu_count()} cores{mem})"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "vllm"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except Exception:  # noqa: BLE001 - a broken optional import is reported, not raised
            out[name] = "-"
    return out


def short_versions(v: dict[str, str]) -> str:
    return " ".join(f"{k} {v[k]}" for k in ("torch", "transformers", "vllm") if k in v)


def stamp() -> dict[str, Any]:
    return {"machine": machine(), "machine_kind": machine_kind(), "versions": versions(),
            "date": _dt.date.today().isoformat(), "load_avg": _load_avg()}


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def figure(value: float, unit: str, better: str, threshold: float) -> dict[str, Any]:
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    return {"value": float(value), "unit": unit, "better": better, "threshold": float(threshold)}


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def append_row(readme: str | Path, marker: str, cells: list[str]) -> None:
    """Append `| cell | ... |` to the Markdown table that follows `<!-- results:MARKER -->`
    (the header and its separator must already be there)."""
    readme = Path(readme)
    lines = readme.read_text(encoding="utf-8").split("\n")
    tag = f"<!-- results:{marker} -->"
    try:
        at = next(i for i, line in enumerate(lines) if line.strip() == tag)
    except StopIteration:
        raise ValueError(f"{readme}: no '{tag}' marker for the results table") from None
    end = at + 1
    while end < len(lines) and not lines[end].startswith("|"):
        end += 1  # skip to the table
    if end == len(lines):
        raise ValueError(f"{readme}: no table after '{tag}'")
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    row = "| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cells) + " |"
    lines.insert(end, row)
    readme.write_text("\n".join(lines), encoding="utf-8")
