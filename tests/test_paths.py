from pathlib import Path

import pytest

from img2latex_lib.paths import project_root

PYPROJECT = '[project]\nname = "img2latex"\nversion = "0.1.0"\n'


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A repository layout: pyproject.toml at the top, notebooks/ and data/ below it."""
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "data" / "notebooks").mkdir(parents=True)
    return tmp_path


def test_found_from_the_root_and_from_a_subfolder(checkout, monkeypatch):
    assert project_root(checkout) == checkout.resolve()
    assert project_root(checkout / "data" / "notebooks") == checkout.resolve()
    monkeypatch.chdir(checkout / "notebooks")
    assert project_root() == checkout.resolve()
    assert (project_root() / "data" / "notebooks").is_dir()


def test_another_projects_pyproject_is_passed_over(checkout):
    inner = checkout / "benchmarks" / "peer"
    inner.mkdir(parents=True)
    (inner / "pyproject.toml").write_text('[project]\nname = "latex-ocr"\n')
    (checkout / "data" / "pyproject.toml").write_text("not [valid toml")
    assert project_root(inner) == checkout.resolve()
    assert project_root(checkout / "data" / "notebooks") == checkout.resolve()


def test_a_copy_without_pyproject_gives_the_current_directory(tmp_path, monkeypatch):
    copy = tmp_path / "copy" / "notebooks"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    assert project_root() == copy.resolve()
    assert project_root(copy.parent) == copy.parent.resolve()


def test_this_repository():
    here = Path(__file__).resolve().parent
    assert project_root(here) == here.parent
    assert (project_root(here) / "img2latex_lib").is_dir()
