"""Start a real ComfyUI headless (CPU) with a node pack, and drive it over HTTP and its websocket.

Each ComfyServer gets its own throw-away --base-directory (custom_nodes/<pack> symlink,
input/, output/, temp/, user/, models/), an in-memory database and a free loopback port, so
the ComfyUI tree is never modified and servers can run side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .provision import ComfyInstall
from .ws import EventStream

HOST = "127.0.0.1"


class PromptRejected(Exception):
    """POST /prompt answered 400: the prompt failed ComfyUI's validation."""

    def __init__(self, error: dict, node_errors: dict):
        self.error = error
        self.node_errors = node_errors
        super().__init__(_describe_rejection(error, node_errors))


@dataclass
class ExecutionError:
    """The execution_error ComfyUI recorded for a prompt: which node raised what."""

    node_id: str
    node_type: str
    exception_type: str
    exception_message: str
    traceback: list[str]


@dataclass
class Result:
    prompt_id: str
    status: str  # "success" or "error" (an interrupted prompt is an "error" too)
    outputs: dict[str, dict]  # node id -> its UI output (e.g. {"images": [...]})
    files: list[Path]  # files created or changed under output/ while the prompt ran
    error: ExecutionError | None = None
    interrupted: bool = False
    messages: list = field(default_factory=list)  # the history entry's status messages


class ComfyServer:
    """Context manager: a running ComfyUI with `pack_dir` linked in as custom_nodes/<pack_name>."""

    def __init__(self, install: ComfyInstall, pack_dir: str | os.PathLike, pack_name: str = "comfyui-float",
                 models_dir: str | os.PathLike | None = None, input_files: Iterable[str | os.PathLike] = (),
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None, start_timeout: float = 120.0):
        self.install = install
        self.pack_dir = Path(pack_dir).resolve()
        self.pack_name = pack_name
        self.models_dir = Path(models_dir).resolve() if models_dir else None
        self.input_files = [Path(p) for p in input_files]
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.client_id = uuid.uuid4().hex
        self.base_dir: Path | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._events: EventStream | None = None
        self._object_info: dict | None = None
        self._snapshots: dict[str, dict[Path, tuple[int, int]]] = {}  # prompt id -> output/ before queueing
        self._final_log: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> ComfyServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """The ComfyUI process (for memory measurements)."""
        return self._proc.pid

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "comfyui.log"

    def start(self) -> None:
        flags = (self.install.comfy_dir / "comfy" / "cli_args.py").read_text()
        if "--base-directory" not in flags:
            raise RuntimeError(f"ComfyUI at {self.install.comfy_dir} ({self.install.version}) has no --base-directory "
                               "option (added in 0.3.12, January 2025); use a newer ComfyUI.")
        self._make_base_dir()
        self.port = _free_port()
        with open(self.log_path, "w") as log:
            self._proc = subprocess.Popen(self._command(flags), cwd=self.install.comfy_dir, env=self._environment(),
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_ready()
        self._events = EventStream(HOST, self.port, self.client_id)

    def stop(self) -> None:
        """SIGTERM the ComfyUI we started (SIGKILL after 10 s), keep its log text, remove the base dir."""
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self.base_dir is not None:
            self._final_log = self.log_text()
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def _make_base_dir(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="comfyui_base_"))
        for name in ("custom_nodes", "input", "output", "temp", "user"):
            (self.base_dir / name).mkdir()
        (self.base_dir / "custom_nodes" / self.pack_name).symlink_to(self.pack_dir, target_is_directory=True)
        if self.models_dir:
            (self.base_dir / "models").symlink_to(self.models_dir, target_is_directory=True)
        else:
            (self.base_dir / "models").mkdir()  # folder_paths registers its standard subfolders itself
        for source in self.input_files:
            target = self.input_dir / source.name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)

    def _command(self, cli_args_source: str) -> list[str]:
        """main.py with only the flags this tree's comfy/cli_args.py knows."""
        cmd = [str(self.install.python), "main.py", "--cpu", "--listen", HOST, "--port", str(self.port),
               "--base-directory", str(self.base_dir)]
        optional = {"--database-url": ["sqlite:///:memory:"], "--disable-auto-launch": []}
        for flag, values in optional.items():
            if f'"{flag}"' in cli_args_source:
                cmd += [flag, *values]
        return cmd + self.extra_args

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        if self.install.shims_dir:
            env["PYTHONPATH"] = str(self.install.shims_dir)
        env.update(self.env)
        return env

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive("during startup")
            try:
                if self._request("GET", "/system_stats", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"ComfyUI did not answer /system_stats within {self.start_timeout} s.\n{self.log_tail()}")

    def _check_alive(self, when: str) -> None:
        if self._proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited {when} with code {self._proc.returncode}.\n{self.log_tail()}")

    # ------------------------------------------------------------------ introspection

    def log_text(self) -> str:
        if self.base_dir is None:
            return self._final_log or ""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "--- ComfyUI log (tail) ---\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def import_failures(self) -> list[str]:
        """Log lines reporting a node module that failed to import (custom packs and core extras)."""
        pattern = re.compile(r"\(IMPORT FAILED\)|^IMPORT FAILED: |Cannot import .* module for custom nodes")
        return [line.strip() for line in self.log_text().splitlines() if pattern.search(line)]

    def object_info(self, refresh: bool = False) -> dict:
        if self._object_info is None or refresh:
            self._object_info = self._get_json("/object_info")
        return self._object_info

    def pack_nodes(self) -> dict[str, dict]:
        module = f"custom_nodes.{self.pack_name}"
        return {name: info for name, info in self.object_info().items() if info.get("python_module") == module}

    def templates(self) -> dict[str, list[str]]:
        return self._get_json("/workflow_templates")

    def template(self, pack_name: str, name: str) -> dict:
        return self._get_json(f"/api/workflow_templates/{_quote(pack_name)}/{_quote(name)}.json")

    def template_thumbnail(self, pack_name: str, name: str) -> bytes:
        return self.get_bytes(f"/api/workflow_templates/{_quote(pack_name)}/{_quote(name)}.jpg")

    def busy(self) -> bool:
        """Whether a prompt is running or waiting (GET /queue)."""
        queue = self._get_json("/queue")
        return bool(queue["queue_running"] or queue["queue_pending"])

    def get_bytes(self, path: str) -> bytes:
        status, body = self._request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {body[:500]!r}")
        return body

    # ------------------------------------------------------------------ prompts

    def queue(self, prompt: dict, workflow: dict | None = None) -> str:
        """POST /prompt; `workflow` (UI format) goes into extra_pnginfo like the frontend sends it."""
        body = {"prompt": prompt, "client_id": self.client_id,
                "extra_data": {"extra_pnginfo": {"workflow": workflow} if workflow else {}}}
        before = self._output_snapshot()
        status, raw = self._request("POST", "/prompt", body)
        answer = _json_or_text(raw)
        if status == 400 and isinstance(answer, dict):
            raise PromptRejected(answer.get("error") or {}, answer.get("node_errors") or {})
        if status != 200:
            raise RuntimeError(f"POST /prompt answered {status}: {answer}")
        self._snapshots[answer["prompt_id"]] = before
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0) -> dict:
        """The /history entry of `prompt_id` once it finished (success or error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(f"while running prompt {prompt_id}")
            entry = self._get_json(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s.\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 120.0, workflow: dict | None = None) -> Result:
        """Queue `prompt` and return its Result once it finished."""
        return self.result(self.queue(prompt, workflow), timeout)

    def result(self, prompt_id: str, timeout: float = 120.0) -> Result:
        """Wait for a queued prompt, then summarise: status, error, outputs, files written since queueing."""
        entry = self.wait(prompt_id, timeout)
        before, after = self._snapshots.get(prompt_id, {}), self._output_snapshot()
        messages = entry["status"].get("messages", [])
        return Result(prompt_id=prompt_id, status=entry["status"]["status_str"], outputs=entry.get("outputs", {}),
                      files=sorted(path for path, stamp in after.items() if before.get(path) != stamp),
                      error=_execution_error(messages), messages=messages,
                      interrupted=any(kind == "execution_interrupted" for kind, _ in messages))

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt: stops the running prompt (only `prompt_id`, when given)."""
        self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def messages(self, prompt_id: str | None = None) -> list[dict]:
        """Websocket messages received so far ({"type", "data"}), optionally of one prompt only."""
        received = self._events.messages()
        if prompt_id is None:
            return received
        return [m for m in received if isinstance(m.get("data"), dict) and m["data"].get("prompt_id") == prompt_id]

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        """Block until a websocket message satisfies `predicate` (messages already received count)."""
        return self._events.wait_for(predicate, timeout)

    def _output_snapshot(self) -> dict[Path, tuple[int, int]]:
        return {path: (path.stat().st_mtime_ns, path.stat().st_size)
                for path in self.output_dir.rglob("*") if path.is_file()}

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def _get_json(self, path: str):
        status, raw = self._request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}: {raw[:500]!r}")
        return json.loads(raw)


def _execution_error(messages: list) -> ExecutionError | None:
    for kind, data in messages:
        if kind == "execution_error":
            return ExecutionError(node_id=str(data.get("node_id")), node_type=data.get("node_type", ""),
                                  exception_type=data.get("exception_type", ""),
                                  exception_message=str(data.get("exception_message", "")).strip(),
                                  traceback=list(data.get("traceback", [])))
    return None


def _describe_rejection(error: dict, node_errors: dict) -> str:
    lines = [f"prompt rejected: {error.get('type')}: {error.get('message')} {error.get('details') or ''}".rstrip()]
    for node_id, info in node_errors.items():
        for item in info.get("errors", []):
            where = (item.get("extra_info") or {}).get("input_name")
            lines.append(f"  node {node_id} ({info.get('class_type')}){f' input {where}' if where else ''}: "
                         f"{item.get('type')}: {item.get('details') or item.get('message')}")
    return "\n".join(lines)


def _json_or_text(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
