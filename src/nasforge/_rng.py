"""Capture and restore the global RNG states that torch ops draw from (dropout, drop-path)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["get_rng_state", "set_rng_state"]


def get_rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
