"""Downloading the released FLOAT files from the HuggingFace Hub into the folder layout `checkpoint.py` reads.

Two variants, each a list of files in `MODEL_FILES`:
- "float.pth" (default): `float.pth` and the two HuggingFace model folders beside it, from yuvraj108c/float
  (the folders are copies of facebook/wav2vec2-base-960h and r-f/wav2vec-english-speech-emotion-recognition);
- "FLOAT.safetensors": set-soft/float's single 2.47 GB file holding every network.

Files land as plain files at their relative path under the destination folder (huggingface_hub's `local_dir`
mode, which also keeps its resume metadata in a hidden `.cache/huggingface/` there). Every file is checked
against the hash the Hub lists for it: the sha256 of LFS files (the weights), the git blob sha1 of small files
kept in git itself (the JSON configs).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from .config import AUDIO_MODEL_NAME, EMOTION_MODEL_NAME

log = logging.getLogger(__name__)

DEFAULT_VARIANT = "float.pth"
_CHUNK_BYTES = 16 * 1024 * 1024


class DownloadError(Exception):
    """Some model files could not be downloaded or failed their hash check; the message lists each with its
    address and the local path to save it at by hand."""


@dataclass(frozen=True)
class HubFile:
    """One file to fetch: where it goes under the model folder, and where it lives on the Hub."""

    local_path: str  # relative to the model folder, '/'-separated
    repo_id: str
    filename: str  # path inside the repo

    def __post_init__(self) -> None:
        # hf_hub_download(local_dir=...) recreates the repo path, so the repo path must end the local path.
        if not self.local_path.endswith(self.filename):
            raise ValueError(f"{self.local_path!r} must end with the repo path {self.filename!r}")

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"

    def local_dir(self, destination: Path) -> Path:
        """The folder to hand hf_hub_download so that the file lands at `destination / local_path`."""
        return destination / self.local_path[: -len(self.filename)]


def _same_path_in(repo_id: str, *paths: str) -> tuple[HubFile, ...]:
    """Files kept at the same relative path in the repo and in the model folder."""
    return tuple(HubFile(path, repo_id, path) for path in paths)


MODEL_FILES: dict[str, tuple[HubFile, ...]] = {
    "float.pth": _same_path_in(
        "yuvraj108c/float",
        "float.pth",
        f"{AUDIO_MODEL_NAME}/config.json",
        f"{AUDIO_MODEL_NAME}/model.safetensors",
        f"{AUDIO_MODEL_NAME}/preprocessor_config.json",
        f"{EMOTION_MODEL_NAME}/config.json",
        f"{EMOTION_MODEL_NAME}/preprocessor_config.json",
        f"{EMOTION_MODEL_NAME}/pytorch_model.bin",
    ),
    "FLOAT.safetensors": _same_path_in("set-soft/float", "FLOAT.safetensors"),
}


@dataclass(frozen=True)
class RemoteHash:
    """What the Hub lists for a file: its size and a digest of its content."""

    size: int
    algorithm: str  # "sha256" (LFS files) or "git-sha1" (files stored in git itself)
    digest: str


def model_files(variant: str = DEFAULT_VARIANT, emotion: bool = True) -> list[HubFile]:
    """The files of a variant; `emotion=False` leaves out the 1.27 GB speech-emotion model folder.

    FLOAT.safetensors holds every network in one file, so `emotion` changes nothing for that variant.
    """
    if variant not in MODEL_FILES:
        raise ValueError(f"unknown model variant {variant!r}: choose one of {', '.join(map(repr, MODEL_FILES))}")
    files = MODEL_FILES[variant]
    if not emotion:
        files = tuple(file for file in files if not file.local_path.startswith(f"{EMOTION_MODEL_NAME}/"))
    return list(files)


def missing_model_files(destination: str | Path, variant: str = DEFAULT_VARIANT, emotion: bool = True) -> list[str]:
    """Relative paths of the variant's files not yet in `destination` (no network, no hashing)."""
    destination = Path(destination)
    return [file.local_path for file in model_files(variant, emotion) if not (destination / file.local_path).is_file()]


def download_models(
    destination: str | Path,
    variant: str = DEFAULT_VARIANT,
    emotion: bool = True,
    progress: bool = True,
    only: Callable[[str], bool] | None = None,
    on_file: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Download the variant's files into `destination` (created if needed) and return it.

    `only` picks files by their local path (e.g. one network's folder); `on_file(local_path, done, total)` is
    called after each file, so a caller can show progress or cancel (by raising).
    Files already there whose hash matches the Hub are kept; a file whose hash differs is downloaded again.
    A downloaded file that fails its hash check is deleted. When the Hub cannot be reached, files already
    there are kept unchecked (with a warning). Raises DownloadError listing every file that could not be
    had, with its address and local path, once the others are done.
    """
    destination = Path(destination).expanduser().resolve()
    destination.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[HubFile, str]] = []
    wanted = [file for file in model_files(variant, emotion) if only is None or only(file.local_path)]
    done = 0
    with _progress_bars(progress):
        for repo_id, files in _by_repo(wanted).items():
            try:
                hashes = _remote_hashes(repo_id, [file.filename for file in files])
            except _network_errors() as error:
                # Without the hashes nothing can be checked: report the repo's missing files, keep what is there.
                reason = f"could not read the file list of {repo_id} from the Hub ({_describe(error)})"
                failures += _unverified(destination, files, reason)
                continue
            for file in files:
                reason = _fetch(destination, file, hashes.get(file.filename))
                if reason:
                    failures.append((file, reason))
                done += 1
                if on_file is not None:
                    on_file(file.local_path, done, len(wanted))
    if failures:
        raise DownloadError(_failure_message(destination, failures))
    return destination


def _by_repo(files: list[HubFile]) -> dict[str, list[HubFile]]:
    grouped: dict[str, list[HubFile]] = {}
    for file in files:
        grouped.setdefault(file.repo_id, []).append(file)
    return grouped


def _remote_hashes(repo_id: str, filenames: list[str]) -> dict[str, RemoteHash]:
    """Size and hash of each file as the Hub lists it, in one request; files the repo lacks are left out."""
    hashes = {}
    for entry in HfApi().get_paths_info(repo_id, filenames):
        if not isinstance(entry, RepoFile):
            continue  # a folder of that name
        if entry.lfs is not None:
            hashes[entry.path] = RemoteHash(entry.size, "sha256", entry.lfs.sha256)
        else:
            hashes[entry.path] = RemoteHash(entry.size, "git-sha1", entry.blob_id)
    return hashes


def _unverified(destination: Path, files: list[HubFile], reason: str) -> list[tuple[HubFile, str]]:
    """The failures to report when a repo's hashes are unknown: its missing files. Present ones stay, unchecked."""
    failures = []
    for file in files:
        if (destination / file.local_path).is_file():
            log.warning("%s: present, not verified: %s", file.local_path, reason)
        else:
            failures.append((file, reason))
    return failures


def _fetch(destination: Path, file: HubFile, expected: RemoteHash | None) -> str | None:
    """Make one file present and verified; None when done, else why not."""
    if expected is None:
        return f"{file.filename} is not in the repo {file.repo_id} (the repo changed; check its file list)"
    target = destination / file.local_path
    if target.is_file():
        if _matches(target, expected):
            log.info("%s: present, %s matches the Hub: skipped", file.local_path, expected.algorithm)
            return None
        log.warning("%s: present but differs from %s's copy: downloading it again", file.local_path, file.repo_id)
    log.info("%s: downloading %.1f MB from %s", file.local_path, expected.size / 1e6, file.repo_id)
    try:
        hf_hub_download(
            file.repo_id,
            file.filename,
            local_dir=file.local_dir(destination),
            # Replace a differing file; otherwise let an interrupted download resume.
            force_download=target.is_file(),
        )
    except _network_errors() as error:
        return f"the download failed ({_describe(error)})"
    if not _matches(target, expected):
        actual = _digest(target, expected.algorithm)
        target.unlink()
        return (
            f"the downloaded file is corrupt and was deleted: its {expected.algorithm} is {actual}, the Hub lists "
            f"{expected.digest} ({expected.size} bytes)"
        )
    log.info("%s: downloaded, %s verified", file.local_path, expected.algorithm)
    return None


# --- Hashes ----------------------------------------------------------------------------------------------


def _matches(path: Path, expected: RemoteHash) -> bool:
    # Comparing sizes first spares hashing gigabytes to find a truncated file.
    return path.stat().st_size == expected.size and _digest(path, expected.algorithm) == expected.digest


def _digest(path: Path, algorithm: str) -> str:
    if algorithm == "sha256":
        return file_sha256(path)
    return git_blob_sha1(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's content: what the Hub lists for LFS files."""
    hasher = hashlib.sha256()
    for chunk in _read_chunks(Path(path)):
        hasher.update(chunk)
    return hasher.hexdigest()


def git_blob_sha1(path: str | Path) -> str:
    """git's object id of a file, sha1(b"blob <size>\\0" + content): what the Hub lists for non-LFS files."""
    path = Path(path)
    hasher = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    for chunk in _read_chunks(path):
        hasher.update(chunk)
    return hasher.hexdigest()


def _read_chunks(path: Path) -> Iterator[bytes]:
    # In pieces: the files reach 2.5 GB.
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            yield chunk


# --- Errors and progress ---------------------------------------------------------------------------------


def _network_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises when the Hub is unreachable, offline mode is on, or a repo or file is missing.

    OSError covers its own errors (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled) and
    requests' connection errors (huggingface_hub 0.x). From 1.x on it uses httpx, then httpx2, whose
    connection errors are not OSErrors and can reach us unwrapped from API calls such as get_paths_info.
    """
    errors: list[type[BaseException]] = [OSError]
    for library in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(library).HTTPError)
        except ImportError:
            pass  # not the HTTP library of this huggingface_hub version
    return tuple(errors)


def _describe(error: BaseException) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else "no details"
    return f"{type(error).__name__}: {first_line}"


def _failure_message(destination: Path, failures: list[tuple[HubFile, str]]) -> str:
    """Each failed file under its reason, with the address to get it from and the path to save it at."""
    by_reason: dict[str, list[HubFile]] = {}
    for file, reason in failures:
        by_reason.setdefault(reason, []).append(file)
    lines = [
        f"{len(failures)} FLOAT model file(s) could not be downloaded into {destination}. Run again once the "
        f"Hub is reachable (unset HF_HUB_OFFLINE if set), or download each file below and save it at the path shown."
    ]
    for reason, files in by_reason.items():
        lines.append(f"{reason}:")
        for file in files:
            lines += [f"  {file.url}", f"    -> {destination / file.local_path}"]
    return "\n".join(lines)


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Hide huggingface_hub's progress bars for the block when not `enabled`, then restore them.

    The enable/disable functions exist under these names from huggingface_hub 0.x to 2.x (only 1.x+ also
    offers disable_progress_bars as a context manager).
    """
    if enabled or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()
