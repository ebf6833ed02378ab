"""Training from the page (being built)."""

from __future__ import annotations


class Trainer:
    def __init__(self, ws) -> None:
        self.ws = ws

    def close(self) -> None:
        pass


def routes(trainer: Trainer) -> list:
    return []
