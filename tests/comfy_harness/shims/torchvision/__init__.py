"""CPU stand-in for torchvision (see ../README.md): importable, mostly not callable."""

from _cpu_stub import install

from . import transforms  # noqa: F401

__version__ = "0.0.0+cpu.stand.in"
install(__name__)
