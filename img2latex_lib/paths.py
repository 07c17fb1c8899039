"""Where the repository is, so that notebooks and scripts find ``data/``, ``runs/`` and
``checkpoints/`` wherever they are started from."""

from __future__ import annotations

import tomllib
from pathlib import Path

#: The ``[project] name`` in the repository's ``pyproject.toml``.
PROJECT_NAME = "img2latex"


def _names_project(pyproject: Path) -> bool:
    """Whether ``pyproject`` is a readable ``pyproject.toml`` whose project is this one."""
    try:
        settings = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    project = settings.get("project")
    return isinstance(project, dict) and project.get("name") == PROJECT_NAME


def project_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder at or above ``start`` (by default the current
    directory) that holds a ``pyproject.toml`` naming the project ``img2latex``.

    Outside a checkout (no such file above ``start``) it is ``start`` itself. The path is
    absolute: ``project_root() / "data"`` is the data folder from ``notebooks/`` and from the
    repository root alike.
    """
    here = (Path.cwd() if start is None else Path(start)).resolve()
    for folder in (here, *here.parents):
        if _names_project(folder / "pyproject.toml"):
            return folder
    return here
