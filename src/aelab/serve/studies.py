"""Studies from the page (being built)."""

from __future__ import annotations


class StudyLauncher:
    def __init__(self, ws) -> None:
        self.ws = ws

    def close(self) -> None:
        pass


def routes(launcher: StudyLauncher) -> list:
    return []
