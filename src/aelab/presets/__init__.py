"""The reference architectures by name: each ``<name>.toml`` here is a run config with the
tutorial's model, data scaling and training settings (plus a ``description``).

``aelab train --preset NAME`` starts from one (flags override it); ``aelab presets`` lists them.
A preset is data: adding one is adding a TOML file.
"""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig, load_toml
from ..errors import ConfigError

HERE = Path(__file__).parent


def preset_names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


def preset_description(name: str) -> str:
    return str(load_toml(_path(name)).get("description", ""))


def load_preset(name: str):
    """The preset's :class:`~aelab.config.RunConfig`."""
    raw = load_toml(_path(name))
    raw.pop("description", None)
    return RunConfig.from_dict(raw)


def _path(name: str) -> Path:
    path = HERE / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names())} (aelab presets lists them)")
    return path
