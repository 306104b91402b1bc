"""The vocabulary every task shares: the special tokens, then the task's symbols."""

from __future__ import annotations

from typing import Sequence

__all__ = ["PAD", "BOS", "SEP", "EOS", "SPECIAL_TOKENS", "UnknownTokenError", "Vocab"]

PAD, BOS, SEP, EOS = "<pad>", "<bos>", "<sep>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, SEP, EOS)


class UnknownTokenError(ValueError):
    """A token that is not in the vocabulary."""


class Vocab:
    """Token <-> id mapping: ``[PAD, BOS, SEP, EOS] + symbols``."""

    pad_id, bos_id, sep_id, eos_id = 0, 1, 2, 3

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        seen: set[str] = set()
        for s in symbols:
            if not isinstance(s, str) or not s:
                raise ValueError(f"vocabulary symbols must be non-empty strings, got {s!r}")
            if s in SPECIAL_TOKENS:
                raise ValueError(f"vocabulary symbol {s!r} clashes with a special token")
            if s in seen:
                raise ValueError(f"duplicate vocabulary symbol {s!r}")
            seen.add(s)
        self.tokens: list[str] = list(SPECIAL_TOKENS) + symbols
        self._index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(tuple(self.tokens))

    def __repr__(self) -> str:
        return f"Vocab({self.tokens[len(SPECIAL_TOKENS):]!r})"

    @property
    def symbols(self) -> list[str]:
        return self.tokens[len(SPECIAL_TOKENS):]

    def _listing(self, limit: int = 60) -> str:
        shown = " ".join(self.tokens[:limit])
        more = len(self.tokens) - limit
        return shown + (f" ... ({more} more)" if more > 0 else "")

    def encode(self, tokens: Sequence[str]) -> list[int]:
        index = self._index
        try:
            return [index[t] for t in tokens]
        except (KeyError, TypeError):
            bad = next(t for t in tokens if not isinstance(t, str) or t not in index)
            raise UnknownTokenError(
                f"unknown token {bad!r}; the vocabulary is: {self._listing()}"
            ) from None

    def decode(self, ids: Sequence[int]) -> list[str]:
        out = []
        n = len(self.tokens)
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is out of range for a vocabulary of {n}")
            out.append(self.tokens[i])
        return out

    def to_list(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "Vocab":
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a stored vocabulary must start with {' '.join(SPECIAL_TOKENS)}, "
                f"got {' '.join(map(str, tokens[:4]))}"
            )
        return cls(tokens[len(SPECIAL_TOKENS):])
