"""The interface every sequence model implements, and the registry that names them.

A model reads token ids and predicts the next token at every position. It has two modes that
must agree exactly (tests/test_models_interface.py checks it):

* parallel mode, ``forward(tokens[B, T]) -> logits[B, T, V]``, used for teacher-forced training;
* recurrent mode, ``init_state(B, max_length, device)`` then ``step(tokens[B], state)`` once per
  token, used for greedy decoding (``pntm eval`` / ``pntm generate``).

A model file registers its class with ``@register_model("name")``. Model modules are imported
lazily, the first time the registry is consulted, so a model that is not written yet (or fails
to import for lack of an optional dependency) never stops the others from working.

A model whose module needs an optional extra (the peers: ``mamba`` needs ``mambapy``,
``slstm`` needs ``xlstm``) raises ``MissingExtraError`` when that package is absent; selecting
it is then the one-line error ``model 'mamba' needs the 'peers' extra: pip install
'pntm[peers]'``, and the other models are unaffected.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import Tensor, nn

from pntm.errors import ConfigError
from pntm.models.rules import check_model_config

# Every model the command line contract names, and the module that implements it.
KNOWN_MODELS = {
    "pntm": "pntm.models.pntm",
    "ntm": "pntm.models.ntm",
    "lstm": "pntm.models.lstm",
    "transformer": "pntm.models.transformer",
    "mamba": "pntm.models.mamba",
    "deltanet": "pntm.models.deltanet",
    "slstm": "pntm.models.slstm",
}

MODELS: dict[str, type["SequenceModel"]] = {}
BROKEN_MODELS: dict[str, str] = {}  # name -> why its module failed to import
MISSING_EXTRAS: dict[str, str] = {}  # name -> the optional extra its module needs


class MissingExtraError(ImportError):
    """Raised by a model module whose optional dependencies (the extra ``extra``) are absent."""

    def __init__(self, extra: str):
        super().__init__(f"needs the '{extra}' extra")
        self.extra = extra


class SequenceModel(nn.Module):
    """Base class. Subclasses take ``(vocab_size, sep_id, **config)`` and call ``resolve_config``."""

    #: ``model_config`` keys whose value may also be null (None), besides their default's type.
    nullable_config: frozenset[str] = frozenset()
    #: the name ``register_model`` gave the class (its value rules are ``rules.MODEL_RULES[name]``)
    registry_name: str | None = None

    @classmethod
    def default_config(cls) -> dict:
        """Every hyper-parameter the model accepts, with its default value."""
        return {}

    @classmethod
    def upgrade_config(cls, config: dict) -> dict:
        """``config`` (a ``model_config`` mapping) with keys renamed since a run was made read
        under their current names; a model that renamed keys overrides it."""
        return config

    @classmethod
    def check_config(cls, cfg: dict) -> None:
        """Relations between a resolved config's values (each value's own range is a rule in
        ``pntm.models.rules``); a model with such relations overrides it and raises ConfigError."""

    @classmethod
    def resolve_config(cls, config: dict) -> dict:
        """Defaults overridden by ``config``; an unknown key, a value outside its rule
        (``pntm.models.rules``) or values that break ``check_config`` is a ConfigError."""
        defaults = cls.default_config()
        config = cls.upgrade_config(config)
        unknown = sorted(set(config) - set(defaults))
        if unknown:
            raise ConfigError(f"unknown model_config key '{unknown[0]}' for {cls.__name__} "
                              f"(known: {', '.join(defaults) or 'none'})")
        resolved = {**defaults, **config}
        if cls.registry_name is not None:
            check_model_config(cls.registry_name, resolved)
        cls.check_config(resolved)
        return resolved

    def set_training_progress(self, fraction: float, step: int | None = None) -> None:
        """Called before every training step with ``step / steps`` in (0, 1] and the step; a
        model with a training-time schedule (P-NTM relaxes its hard heads early in training)
        overrides it."""

    def forward(self, tokens: Tensor) -> Tensor:
        """Parallel mode: LongTensor[B, T] -> logits FloatTensor[B, T, V]."""
        raise NotImplementedError

    def init_state(self, batch_size: int, max_length: int, device) -> Any:
        """Recurrent state before the first token; ``max_length`` is how many tokens will be fed."""
        raise NotImplementedError

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Recurrent mode: one token per row, LongTensor[B] -> (logits FloatTensor[B, V], state)."""
        raise NotImplementedError


def register_model(name: str):
    """Class decorator: make a SequenceModel selectable as ``--model name``."""
    def decorator(cls):
        cls.registry_name = name
        MODELS[name] = cls
        return cls
    return decorator


def _import_models() -> None:
    """Import every known model module that exists.

    An absent module is skipped. A module that exists but cannot import one of *its*
    dependencies is remembered in ``BROKEN_MODELS`` (selecting it reports why) rather than
    breaking every other model; the interface test fails on any broken model.
    """
    for name, module in KNOWN_MODELS.items():
        if name in MODELS:
            continue
        try:
            importlib.import_module(module)
            MISSING_EXTRAS.pop(name, None)
        except MissingExtraError as err:
            MISSING_EXTRAS[name] = err.extra
        except ImportError as err:
            if not (isinstance(err, ModuleNotFoundError) and err.name == module):
                BROKEN_MODELS[name] = f"{type(err).__name__}: {err}"


def available_models() -> list[str]:
    """Names of the models that are implemented and import cleanly, sorted."""
    _import_models()
    return sorted(MODELS)


def get_model_class(name: str) -> type[SequenceModel]:
    """The class registered as ``name``; an unknown or unimplemented name is a ConfigError."""
    available = ", ".join(available_models())
    if name in MODELS:
        return MODELS[name]
    if name in MISSING_EXTRAS:
        extra = MISSING_EXTRAS[name]
        raise ConfigError(f"model '{name}' needs the '{extra}' extra: pip install 'pntm[{extra}]'")
    if name in BROKEN_MODELS:
        raise ConfigError(f"model '{name}' failed to import ({BROKEN_MODELS[name]}); "
                          f"available: {available}")
    what = "is not implemented yet" if name in KNOWN_MODELS else "is unknown"
    raise ConfigError(f"model '{name}' {what} (available: {available})")


def default_model_config(name: str) -> dict:
    """The default ``model_config`` of model ``name``."""
    return get_model_class(name).default_config()


def build_model(name: str, vocab_size: int, sep_id: int, config: dict | None = None) -> SequenceModel:
    """Instantiate model ``name``; keys of ``config`` override its defaults."""
    cls = get_model_class(name)
    return cls(vocab_size, sep_id, **cls.resolve_config(config or {}))
