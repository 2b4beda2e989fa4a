"""Model registry on a folder: ``<root>/<name>/<version>/{model.keras, card.json}`` + ``<root>/<name>/aliases.json``.

Versions are immutable folders; an alias (``production``) points at one. The shipped store inside the package
holds the weights a fresh clone uses; ``LDH_MODEL_STORE`` points at another (e.g. the data dir's ``models/``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai_service.errors import ModelError

SEG_MODEL = "disc-seg"
CLS_MODEL = "herniation-cls"


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    path: Path
    card: dict[str, Any]

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"


class ModelRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def aliases(self, name: str) -> dict[str, str]:
        path = self.root / name / "aliases.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def versions(self, name: str) -> list[str]:
        base = self.root / name
        return sorted(p.name for p in base.iterdir() if (p / "card.json").exists()) if base.exists() else []

    def resolve(self, name: str, version_or_alias: str = "production") -> ModelRef:
        version = self.aliases(name).get(version_or_alias, version_or_alias)
        path = self.root / name / version
        if not (path / "card.json").exists() or not (path / "model.keras").exists():
            known = ", ".join(self.versions(name)) or "none"
            raise ModelError(f"model {name}:{version_or_alias} not found in {self.root} (versions: {known})")
        return ModelRef(name, version, path, json.loads((path / "card.json").read_text()))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.resolve(name, version)
        aliases = self.aliases(name) | {alias: version}
        atomic_write_text(self.root / name / "aliases.json", json.dumps(aliases, indent=2, sort_keys=True) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + fsync + rename so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; cards and aliases are read by other service users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
