"""The error of a config value that cannot be resolved."""
from __future__ import annotations

from rnaret.io.errors import InputError


class SettingsError(InputError):
    """A bad config value: the message names the key (dotted, e.g. ``pretrain.overrides.lr``) and,
    where known, the file and line it came from."""

    def __init__(self, key: str | None, what: str, path=None, line: int | None = None,
                 label: str = "config key"):
        super().__init__(path, f"{label} {key}: {what}" if key else what, line=line)
        self.key = key
        self.bare = what     # the message without the key, for a caller that names the key anew
        self.label = label

    def __reduce__(self):
        return type(self), (self.key, self.bare, self.path, self.line, self.label)


def key_path(*parts) -> str:
    """``("finetune", "coding", "models")`` -> ``"finetune.coding.models"`` (list indices as [i])."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
