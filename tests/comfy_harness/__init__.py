"""Run a real ComfyUI headless on CPU from pytest and drive it over HTTP (stdlib only).

    from comfy_harness import ComfyServer, provision_comfyui, ui_to_api

    with ComfyServer(provision_comfyui(), pack_dir=REPO_ROOT, input_files=[png, wav]) as server:
        prompt = ui_to_api(server.template("comfyui-float", "demo"), server.object_info())
        result = server.run(prompt)

or, in a test module / conftest, as fixtures:

    comfy_install = comfy_install_fixture()
    comfy_server = comfy_server_fixture(REPO_ROOT, input_files=[...])

Mark such tests @pytest.mark.comfyui so `-m "not comfyui"` skips them. Provisioning
(first run ~20 s, needs PyPI; then cached) is described in provision.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from .convert import WorkflowConversionError, ui_to_api, widget_slots
from .provision import ComfyInstall, ProvisionError, ensure_requirements_ok, provision_comfyui
from .server import ComfyServer, ExecutionError, PromptRejected, Result

__all__ = [
    "ComfyInstall", "ComfyServer", "ExecutionError", "PromptRejected", "ProvisionError", "Result",
    "WorkflowConversionError", "comfy_install_fixture", "comfy_server_fixture", "ensure_requirements_ok",
    "provision_comfyui", "ui_to_api", "widget_slots",
]


def comfy_install_fixture(scope: str = "session") -> Callable:
    """A fixture returning the provisioned ComfyInstall (provisioned once per process)."""

    @pytest.fixture(scope=scope)
    def comfy_install() -> ComfyInstall:
        return provision_comfyui()

    return comfy_install


def comfy_server_fixture(pack_dir: str | os.PathLike | Callable, scope: str = "module", **server_kwargs) -> Callable:
    """A fixture yielding a running ComfyServer with `pack_dir` loaded; stopped after `scope`.

    `pack_dir` and any ComfyServer keyword argument may be a callable taking the pytest
    `request`; it is called at setup, e.g. to use a directory another fixture builds:
    `pack_dir=lambda request: request.getfixturevalue("my_pack")`.
    """

    @pytest.fixture(scope=scope)
    def comfy_server(request):
        def resolve(value):
            return value(request) if callable(value) else value

        kwargs = {name: resolve(value) for name, value in server_kwargs.items()}
        with ComfyServer(provision_comfyui(), resolve(pack_dir), **kwargs) as server:
            yield server

    return comfy_server
