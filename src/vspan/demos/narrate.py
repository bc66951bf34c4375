"""What a demo prints: titles, steps, the commands it runs and their output, an explanation.

Every line goes through one ``write`` callable (the CLI passes one writing to
stdout), so a demo never prints by itself and a test can collect the lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

Write = Callable[[str], None]

INDENT = "    "


@dataclass
class Narrator:
    """Formats a demo's story for a terminal."""

    write: Write

    def title(self, text: str) -> None:
        """The demo's heading."""
        self.write(f"=== {text} ===")

    def step(self, text: str) -> None:
        """A new step of the story."""
        self.write("")
        self.write(f"--- {text}")

    def say(self, text: str) -> None:
        """A plain line of narration."""
        self.write(text)

    def command(self, where: str, cmd: str) -> None:
        """The command about to run, with the prompt of the machine it runs on."""
        self.write(f"{where}$ {cmd}")

    def block(self, text: str | Iterable[str], limit: int | None = None) -> None:
        """Output of a command, indented; at most ``limit`` lines (the rest counted)."""
        lines = text.rstrip("\n").splitlines() if isinstance(text, str) else list(text)
        shown = lines if limit is None or len(lines) <= limit else lines[:limit]
        for line in shown:
            self.write(INDENT + line.rstrip())
        if len(shown) < len(lines):
            self.write(f"{INDENT}... ({len(lines) - len(shown)} more lines)")

    def explain(self, lines: Iterable[str]) -> None:
        """What the user just saw, in a few lines."""
        self.write("")
        self.write("--- what you saw")
        for line in lines:
            self.write(line)
