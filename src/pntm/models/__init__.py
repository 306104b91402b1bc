"""Sequence models and their registry (see ``base.py`` for the interface)."""

from pntm.models.base import (
    BROKEN_MODELS,
    KNOWN_MODELS,
    MISSING_EXTRAS,
    MODELS,
    MissingExtraError,
    SequenceModel,
    available_models,
    build_model,
    default_model_config,
    get_model_class,
    register_model,
)

__all__ = ["BROKEN_MODELS", "KNOWN_MODELS", "MISSING_EXTRAS", "MODELS", "MissingExtraError",
           "SequenceModel", "available_models", "build_model", "default_model_config",
           "get_model_class", "register_model"]
