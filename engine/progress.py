"""A one-line progress bar for long work (rendering, replay, re-analysis)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr (every 10% when stderr is not a terminal)."""

    def __init__(self, label: str, width: int = 30):
        self.label = label
        self.width = width
        self.tty = sys.stderr.isatty()
        self.last_decile = -1
        self.start = time.perf_counter()

    def update(self, done: int, total: int, extra: str = "") -> None:
        fraction = done / total if total else 1.0
        if self.tty:
            filled = int(self.width * fraction)
            bar = "#" * filled + "-" * (self.width - filled)
            print(f"\r{self.label} [{bar}] {done}/{total} {extra} "
                  f"{time.perf_counter() - self.start:5.1f} s", end="", file=sys.stderr, flush=True)
        elif int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            print(f"{self.label}: {done}/{total} {extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
