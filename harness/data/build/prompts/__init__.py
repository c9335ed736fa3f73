"""Prompt templates of the dataset build, one versioned file per template.

A template file `<name>_v<N>.txt` has a `[system]` and a `[user]` section; `$placeholders`
are filled with `string.Template` (so JSON braces in a template need no escaping). The
version (the file stem, e.g. "reason_v1") goes into every record the template helped
make. Changing what a template says means adding a new file with the next version number
and pointing `CURRENT` at it: tests pin the text of each version (by hash), so an edit in
place fails them, and the build's resume key includes the version, so a rerun with a new
version redoes the affected items instead of mixing outputs of two prompts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

DIR = Path(__file__).parent
# The version each stage uses now.
CURRENT = {"caption": "caption_v1", "reason": "reason_v1", "blind": "blind_v1"}


@dataclass(frozen=True)
class Prompt:
    version: str  # file stem, e.g. "caption_v1"
    system: str
    user: str  # a string.Template source
    sha: str  # sha256 of the file's bytes

    def render(self, **values: object) -> tuple[str, str]:
        """(system, user) with every $placeholder filled; KeyError names a missing one."""
        try:
            return self.system, Template(self.user).substitute(values)
        except KeyError as err:
            raise KeyError(f"prompt {self.version}: no value for placeholder ${err.args[0]}") from None


def load_prompt(version: str) -> Prompt:
    """Read `prompts/<version>.txt`; ValueError naming the file if a section is missing."""
    path = DIR / f"{version}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in DIR.glob("*.txt"))
        raise FileNotFoundError(f"prompt template {path} does not exist; known versions: {known}")
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    if not text.startswith("[system]\n") or "\n[user]\n" not in text:
        raise ValueError(f"{path}: a template must start with '[system]' and have a '[user]' section")
    system, user = text[len("[system]\n"):].split("\n[user]\n", 1)
    return Prompt(version=version, system=system.strip(), user=user.strip(),
                  sha=hashlib.sha256(raw).hexdigest())


def current(stage: str) -> Prompt:
    return load_prompt(CURRENT[stage])
