"""`python -m reproduce SUBCOMMAND [args]`: reprint a claim of the paper beside our numbers.

    python -m reproduce table1 --results DIR [--out DIR]     Table 1, VideoMME by duration, LongVideo-Reason
    python -m reproduce efficiency --perf FILE [--out PNG]   the efficiency figure (s/step vs frames)
    python -m reproduce toy [args]                           the toy end-to-end reproduction

Each subcommand is a module with `main(argv) -> int`, imported only when asked for, so one
missing or broken module does not take the others down. See reproduce/README.md.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "table1": ("reproduce.table1", "main", "the paper's Table 1, VideoMME by duration and LongVideo-Reason, with deltas"),
    "efficiency": ("reproduce.efficiency", "main", "the efficiency figure (seconds per RL step against frames) as a PNG"),
    "toy": ("reproduce.toy", "main", "the toy end-to-end reproduction on CPU"),
}


def usage() -> str:
    lines = ["usage: python -m reproduce {" + ",".join(SUBCOMMANDS) + "} [args]", ""]
    lines += [f"  {name:<11} {what}" for name, (_, _, what) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"python -m reproduce: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise  # the module exists but something it imports is missing: show the real error
        path = module_name.replace(".", "/") + ".py"
        print(f"python -m reproduce {name}: {path} does not exist yet, so this subcommand is not "
              f"available in this checkout (see reproduce/README.md)", file=sys.stderr)
        return 2
    func = getattr(module, func_name, None)
    if func is None:
        print(f"python -m reproduce {name}: {module_name} has no {func_name}(argv) function", file=sys.stderr)
        return 2
    result = func(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
