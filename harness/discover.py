"""Find the submissions under a path: each `.ipynb`/`.py` file, or each subfolder holding one, is one submission."""

from __future__ import annotations

from pathlib import Path

from harness.records import Submission

SUFFIXES = (".ipynb", ".py")


class DiscoveryError(ValueError):
    """The path to grade does not exist or contains no submission."""


def _candidates(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and path.suffix in SUFFIXES and not path.name.startswith((".", "_"))
    )


def find_submissions(path: Path) -> tuple[list[Submission], list[str]]:
    """Return the submissions under `path` (sorted by id) and warnings about entries that were passed over.

    Raises:
        DiscoveryError: `path` does not exist, is a file of another type, or contains no submission.
    """
    if not path.exists():
        raise DiscoveryError(f"{path} does not exist; pass a folder of submissions or one .ipynb/.py file")
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise DiscoveryError(f"{path} is not a .ipynb or .py file")
        return [Submission(id=path.stem, path=path)], []

    entries: list[tuple[str, Path]] = []
    warnings: list[str] = []
    for file in _candidates(path):
        entries.append((file.stem, file))
    for folder in sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith((".", "_"))):
        inside = [file for file in _candidates(folder) if "checkpoint" not in file.name]
        notebooks = [file for file in inside if file.suffix == ".ipynb"]
        chosen = notebooks if len(notebooks) == 1 else inside
        if len(chosen) == 1:
            entries.append((folder.name, chosen[0]))
        elif not chosen:
            warnings.append(f"skipped folder {folder}: it holds no .ipynb or .py file")
        else:
            names = ", ".join(file.name for file in chosen)
            warnings.append(f"skipped folder {folder}: it holds several candidates ({names}); keep one")

    stems = [identifier for identifier, _ in entries]
    submissions = [
        Submission(id=file.name if stems.count(identifier) > 1 else identifier, path=file)
        for identifier, file in entries
    ]
    if not submissions:
        raise DiscoveryError(f"no .ipynb or .py submission found in {path}; put one file per student there, or one subfolder each")
    return sorted(submissions, key=lambda submission: submission.id), warnings
