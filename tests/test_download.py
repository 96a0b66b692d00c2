"""Model download without the network: a fake Hub made of tiny files stands in for huggingface.co."""

import hashlib
import logging
import shutil
import time
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import OfflineModeIsEnabled
from huggingface_hub.hf_api import RepoFile

from float_model import download
from float_model.config import AUDIO_MODEL_NAME, EMOTION_MODEL_NAME
from float_model.download import DownloadError, download_models, git_blob_sha1, missing_model_files


class FakeHub:
    """Repos as folders under `root`; answers get_paths_info and hf_hub_download the way the Hub does."""

    def __init__(self, root: Path):
        self.root = root
        self.listed: dict[tuple[str, str], bytes] = {}  # what the metadata describes
        self.downloads: list[str] = []

    def add(self, repo_id: str, filename: str, content: bytes) -> None:
        path = self.root / repo_id / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.listed[repo_id, filename] = content

    def corrupt(self, repo_id: str, filename: str) -> None:
        """Serve other bytes than the metadata lists, as a broken transfer would."""
        (self.root / repo_id / filename).write_bytes(b"garbage")

    def get_paths_info(self, repo_id, paths, **kwargs):
        entries = []
        for path in paths:
            if (repo_id, path) not in self.listed:
                continue  # the Hub leaves out paths it does not have
            content = self.listed[repo_id, path]
            entry = {"type": "file", "path": path, "size": len(content), "oid": _git_sha1(content)}
            if not path.endswith(".json"):  # weights are LFS files, configs are kept in git
                entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
            entries.append(RepoFile(**entry))
        return entries

    def hf_hub_download(self, repo_id, filename, *, local_dir, force_download=False, **kwargs):
        self.downloads.append(filename)
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / repo_id / filename, target)
        return str(target)


def _git_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub(tmp_path / "hub")
    for variant in download.MODEL_FILES.values():
        for file in variant:
            fake.add(file.repo_id, file.filename, f"content of {file.repo_id}/{file.filename}".encode())
    monkeypatch.setattr(download.HfApi, "get_paths_info", fake.get_paths_info)
    monkeypatch.setattr(download, "hf_hub_download", fake.hf_hub_download)
    return fake


def test_downloads_the_released_layout_as_plain_files(hub, tmp_path):
    models = tmp_path / "models"
    assert download_models(models, progress=False) == models.resolve()
    expected = [file.local_path for file in download.MODEL_FILES["float.pth"]]
    for relative in expected:
        path = models / relative
        assert path.is_file() and not path.is_symlink()
        assert path.read_bytes() == f"content of yuvraj108c/float/{relative}".encode()
    assert sorted(hub.downloads) == sorted(expected)
    assert missing_model_files(models) == []


def test_variants_and_the_emotion_switch(hub, tmp_path):
    assert missing_model_files(tmp_path, "FLOAT.safetensors") == ["FLOAT.safetensors"]
    without_emotion = missing_model_files(tmp_path, emotion=False)
    assert "float.pth" in without_emotion and not any(EMOTION_MODEL_NAME in path for path in without_emotion)

    download_models(tmp_path, emotion=False, progress=False)
    assert missing_model_files(tmp_path, emotion=False) == []
    emotion_files = [file.local_path for file in download.MODEL_FILES["float.pth"] if EMOTION_MODEL_NAME in file.local_path]
    assert missing_model_files(tmp_path) == emotion_files
    with pytest.raises(ValueError, match="FLOAT.safetensors"):
        missing_model_files(tmp_path, "float.ckpt")


def test_present_files_with_matching_hash_are_skipped_and_others_replaced(hub, tmp_path, caplog):
    download_models(tmp_path, progress=False)
    (tmp_path / "float.pth").write_bytes(b"an older float.pth")
    hub.downloads.clear()

    with caplog.at_level(logging.INFO, logger="float_model.download"):
        download_models(tmp_path, progress=False)
    assert hub.downloads == ["float.pth"]
    assert (tmp_path / "float.pth").read_bytes() == b"content of yuvraj108c/float/float.pth"
    assert "wav2vec2-base-960h/config.json: present, git-sha1 matches the Hub: skipped" in caplog.text
    assert "wav2vec2-base-960h/model.safetensors: present, sha256 matches the Hub: skipped" in caplog.text


@pytest.mark.parametrize("filename, algorithm", [("float.pth", "sha256"), ("wav2vec2-base-960h/config.json", "git-sha1")])
def test_corrupt_download_is_deleted_and_named(hub, tmp_path, filename, algorithm):
    hub.corrupt("yuvraj108c/float", filename)
    with pytest.raises(DownloadError) as raised:
        download_models(tmp_path, progress=False)
    message = str(raised.value)
    assert message.startswith("1 FLOAT model file(s) could not be downloaded")
    assert f"corrupt and was deleted: its {algorithm} is" in message
    assert f"https://huggingface.co/yuvraj108c/float/resolve/main/{filename}" in message
    assert not (tmp_path / filename).exists()
    assert missing_model_files(tmp_path) == [filename]  # the other files arrived


def test_file_missing_from_the_repo_is_reported(hub, tmp_path):
    del hub.listed["set-soft/float", "FLOAT.safetensors"]
    with pytest.raises(DownloadError, match="FLOAT.safetensors is not in the repo set-soft/float"):
        download_models(tmp_path, "FLOAT.safetensors", progress=False)


@pytest.mark.parametrize("error", [OfflineModeIsEnabled("offline mode is enabled"), ConnectionError("no route to host")])
def test_unreachable_hub_lists_every_file_with_address_and_path(hub, tmp_path, monkeypatch, error):
    def unreachable(*args, **kwargs):
        raise error

    monkeypatch.setattr(download.HfApi, "get_paths_info", unreachable)
    (tmp_path / "float.pth").write_bytes(b"kept as is")
    with pytest.raises(DownloadError) as raised:
        download_models(tmp_path, progress=False)
    message = str(raised.value)
    assert f"{type(error).__name__}: {error}" in message
    for file in download.MODEL_FILES["float.pth"][1:]:
        address_and_path = f"  {file.url}\n    -> {tmp_path.resolve() / file.local_path}"
        assert address_and_path in message
    assert "float.pth\n" not in message  # present files are not listed, and not deleted
    assert (tmp_path / "float.pth").read_bytes() == b"kept as is"
    assert hub.downloads == []


def test_real_download_fails_fast_in_offline_mode(tmp_path):
    assert huggingface_hub.constants.HF_HUB_OFFLINE, "tests/conftest.py sets HF_HUB_OFFLINE=1 before any import"
    start = time.perf_counter()
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE") as raised:
        download_models(tmp_path, "FLOAT.safetensors", progress=False)
    assert time.perf_counter() - start < 2.0
    address = "https://huggingface.co/set-soft/float/resolve/main/FLOAT.safetensors"
    assert f"{address}\n    -> {tmp_path.resolve() / 'FLOAT.safetensors'}" in str(raised.value)


def test_git_blob_sha1_is_gits_object_id(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"a": 1}\n')
    assert git_blob_sha1(path) == "cb5b2f69babc53f9145b45ad20b9a075d48717ef"  # `git hash-object config.json`


def test_one_network_at_a_time_with_per_file_progress(hub, tmp_path):
    reports = []
    download_models(tmp_path, progress=False, only=lambda path: path.startswith(f"{AUDIO_MODEL_NAME}/"), on_file=lambda *r: reports.append(r))
    audio_files = [file.local_path for file in download.MODEL_FILES["float.pth"] if file.local_path.startswith(f"{AUDIO_MODEL_NAME}/")]
    assert sorted(hub.downloads) == sorted(audio_files)
    assert [(done, total) for _, done, total in reports] == [(i + 1, len(audio_files)) for i in range(len(audio_files))]
