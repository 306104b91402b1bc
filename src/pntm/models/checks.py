"""Config relations shared by the models (each value's own range is a rule in
``pntm.models.rules``); each failure is a one-line ConfigError."""

from __future__ import annotations

from pntm.errors import ConfigError


def check_divisible(model: str, cfg: dict, key: str, by: str) -> None:
    if cfg[key] % cfg[by]:
        raise ConfigError(f"{model} model_config.{key} ({cfg[key]}) must be divisible by "
                          f"{by} ({cfg[by]})")
