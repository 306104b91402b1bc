"""Reading YAML config files: a user's ``--config`` file and the configs shipped in
``pntm/configs/`` (one per model). Kept apart from ``pntm.config`` so that the models can read
their shipped config without importing the config machinery that imports them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from pntm.errors import ConfigError


def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML mapping from ``path`` (an empty file is an empty mapping)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file")
    if path.is_file() and path.stat().st_size > 2**24:
        raise ConfigError(f"{what} {path} is larger than 16 MiB; not a config file")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {one_line(err)}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply to read") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def package_config(model: str) -> dict:
    """The shipped run config of ``model`` (``configs/{model}.yaml``), the same for every task;
    empty when the model has none."""
    ref = resources.files("pntm") / "configs" / f"{model}.yaml"
    return load_yaml(Path(str(ref)), "packaged config") if ref.is_file() else {}


def one_line(err: Exception) -> str:
    return " ".join(str(err).split())
