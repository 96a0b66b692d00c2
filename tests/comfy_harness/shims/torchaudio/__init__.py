"""CPU stand-in for torchaudio (see ../README.md): resampling only."""

from _cpu_stub import install

from . import functional, transforms  # noqa: F401

__version__ = "0.0.0+cpu.stand.in"
install(__name__)
