"""How a head's parameters travel in a model artifact: a JSON-safe dict plus named tensors.

Every part of a trained model (the memory bank, the supervised head, the patch classifier, the score
normalisers) implements the :class:`Head` protocol, so the layout of its parameters is written and read
in one place -- the part's own module -- and the artifact only namespaces them (``"bank.entries"``).
"""
from __future__ import annotations

from typing import Any, Protocol, TypeVar

import torch

T = TypeVar("T", bound="Head")


class Head(Protocol):
    """A serialisable model part."""

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-safe configuration, named CPU tensors) that ``from_state`` turns back into the part."""
        ...

    @classmethod
    def from_state(cls: type[T], config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> T:
        """Rebuild the part from what ``state`` returned."""
        ...


def put(name: str, head: Head, heads: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Store ``head`` under ``name``: its configuration in ``heads``, its tensors as ``name.key``."""
    config, own = head.state()
    heads[name] = config
    for key, value in own.items():
        tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous()


def take(name: str, cls: type[T], heads: dict[str, Any], tensors: dict[str, torch.Tensor]) -> T | None:
    """The head stored under ``name`` (None when the model has none)."""
    if name not in heads:
        return None
    return cls.from_state(heads[name], own(name, tensors))


def own(name: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors stored under ``name`` (see ``put``), with the prefix removed."""
    prefix = f"{name}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
