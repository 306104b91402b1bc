"""Config checks shared by the models: each failure is a one-line ConfigError."""

from __future__ import annotations

from pntm.errors import ConfigError


def check_positive_ints(model: str, cfg: dict, keys) -> None:
    for key in keys:
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{model} model_config.{key} must be a positive integer, "
                              f"got {value!r}")


def check_bools(model: str, cfg: dict, keys) -> None:
    for key in keys:
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{model} model_config.{key} must be true or false, "
                              f"got {cfg[key]!r}")


def check_divisible(model: str, cfg: dict, key: str, by: str) -> None:
    if cfg[key] % cfg[by]:
        raise ConfigError(f"{model} model_config.{key} ({cfg[key]}) must be divisible by "
                          f"{by} ({cfg[by]})")
