"""Types of the C extension (src/vspan/ports/_ring.c)."""

from collections.abc import Callable
from typing import Any

def drain(buffer: Any, offsets: tuple[int, ...], head: int, max_frames: int, frame_size: int,
          frame_type: Callable[..., Any]) -> tuple[list[Any], int, int, int, bool]: ...
def send(fd: int, frames: list[Any], start: int, gso_types: bytes, gso_max_size: int,
         kernel_gso: bool) -> tuple[int, int, int, int, int, int, int, int]: ...
def make_frame(frame_type: Callable[..., Any], data: bytes, vnet: bytes = ..., ts_ns: int = ...,
               port: int = ..., pid: int = ...) -> tuple[Any, bool]: ...
