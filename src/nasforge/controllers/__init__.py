"""Architecture controllers: models that learn from evaluated architectures and propose new ones (NAO)."""

from .nao import (ControllerConfig, ControllerStats, NAOController, TokenSpec, generate, nao_token_spec,
                  pairwise_accuracy, plain_token_spec, swap_augment, train_controller)

__all__ = ["ControllerConfig", "ControllerStats", "NAOController", "TokenSpec", "generate", "nao_token_spec",
           "pairwise_accuracy", "plain_token_spec", "swap_augment", "train_controller"]
