"""nnU-Net v2 file naming: channel files ``{case}_{XXXX}{ending}`` and label files ``{case}{ending}``."""

from __future__ import annotations

import re
from pathlib import Path

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def channel_file_name(case: str, channel: int, ending: str) -> str:
    """``{case}_{channel:04d}{ending}``."""
    if not 0 <= channel <= 9999:
        raise ValueError(f"channel index must be in 0..9999, got {channel}")
    return f"{case}_{channel:04d}{ending}"


def parse_channel_file_name(name: str, ending: str) -> tuple[str, int] | None:
    """``("case", 1)`` for ``"case_0001{ending}"``; None when the name does not follow that pattern."""
    if not name.endswith(ending):
        return None
    match = _CHANNEL.match(name[: -len(ending)])
    if match is None:
        return None
    return match.group("case"), int(match.group("channel"))


def is_hidden(path: Path) -> bool:
    """Dot files: MSD's ``._*`` resource forks, editors' and our own temporary files."""
    return path.name.startswith(".")


def visible_files(folder: Path) -> list[Path]:
    """Files and folders in ``folder`` that are not hidden, sorted by name."""
    return sorted((p for p in folder.iterdir() if not is_hidden(p)), key=lambda p: p.name)
