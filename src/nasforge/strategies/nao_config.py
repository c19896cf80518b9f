"""NAO-V2's settings (METHODS.md §5.3), each with its valid range; cross-field rules in ``validate``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import option
from ..controllers import ControllerConfig
from ..errors import ConfigError
from ..genotypes.nao_seq import NAO_SMALL_OPS, nao_op_name
from ..parallel.options import ExecutorOptions
from ..spaces.nb201 import NB201_SIZE
from ..supernets.nao import WS_OPS

__all__ = ["NaoV2Config"]


@dataclass
class NaoV2Config(ExecutorOptions):
    """Defaults: NAO-V2's CIFAR-10 search (N=3, C=20, 4 × 50 epochs, 1000 seeds, 300 new, top-100 for
    generation, top-5 re-ranked for 10 epochs). ``balanced`` and ``independent`` both off = NAO-V1-style. The
    executor settings (``workers``, ``executor``, ...) train the finalists of ``rerank=train``."""

    space: str = option("nao", choices=("nao", "nb201"))  # nb201: the sequence is the 6 edge ops
    nodes: int = option(5, ge=1)  # B, nodes per cell (NAO space)
    ops: list[str] = option(factory=lambda: list(NAO_SMALL_OPS))  # NAO space ops ("identity" = skip_connect)
    cells_per_stage: int = option(3, ge=1)  # N: 3N+2 cells (nb201: N cells per stage)
    channels: int = option(20, ge=2)  # C of the supernet
    iterations: int = option(4, ge=1)  # supernet trainings (the controller is trained after all but the last)
    epochs_per_iteration: int = option(50, ge=1)
    seed_archs: int = option(1000, ge=1)  # random architectures of the first pool
    new_archs: int = option(300, ge=1)  # architectures the controller generates per iteration
    generate_top: int = option(100, ge=1)  # best evaluated architectures generation starts from
    max_step_size: int = option(50, ge=1)  # generation tries step sizes 1..max_step_size
    balanced: bool = True  # sample the pool proportionally to model size (else uniformly)
    independent: bool = True  # a fresh supernet and optimiser every iteration
    restart_lr: bool = True  # with independent=false: restart the cosine schedule per iteration (NAO code)
    lr: float = option(0.025, gt=0)
    lr_min: float = option(0.001, ge=0)
    momentum: float = option(0.9, ge=0, lt=1)
    weight_decay: float = option(3e-4, ge=0)
    grad_clip: float = option(5.0, ge=0)
    drop_path: float = option(0.1, ge=0, lt=1)  # 1 - NAO's keep-prob 0.9, scaled by depth, ramped per iteration
    eval_batch_size: int = option(500, ge=1)  # validation images that score one architecture
    eval_pool: int = option(5000, ge=1)  # validation images collected in an iteration's last epoch for scoring
    eval_bn: str = option("code", choices=("code", "train", "eval"))  # BatchNorm mode while scoring
    compare: bool = False  # also train the counterpart (both flags flipped) on the same pools; report both
    rerank: str = option("train", choices=("train", "benchmark"))  # final top-k: brief training or NB201 table
    top_k: int = option(5, ge=0)  # finalists re-ranked (0: the supernet's best is the answer)
    rerank_epochs: int = option(10, ge=1)
    rerank_cells_per_stage: int = option(3, ge=1)
    rerank_channels: int = option(20, ge=2)
    rerank_lr: float = option(0.025, gt=0)
    rerank_weight_decay: float = option(3e-4, ge=0)
    rerank_dropout: float = option(0.4, ge=0, lt=1)  # NAO keep-prob 0.6
    rerank_drop_path: float = option(0.2, ge=0, lt=1)  # NAO drop-path keep 0.8
    rerank_auxiliary: bool = True
    # finalists' accuracies on disk ("" = $NASFORGE_CACHE, else ~/.cache/nasforge/scores; "off" = none)
    cache_dir: str = ""
    benchmark_dataset: str = option("auto", choices=("auto", "cifar10", "cifar100", "imagenet16"))
    table: str = ""  # NB201 table file ("" = $NASFORGE_NB201, else <data root>/nas-bench-201/nb201_table.csv)
    controller: ControllerConfig = field(default_factory=ControllerConfig)

    @property
    def epochs(self) -> int:
        return self.iterations * self.epochs_per_iteration

    def validate(self) -> None:
        """Cross-field rules, each refused in one line naming the field, its value and the valid range."""
        self.validate_executor()
        if self.space == "nao":
            for op in self.ops:
                if nao_op_name(op) not in WS_OPS:
                    raise ConfigError(f"search.ops item {op!r} is not a NAO op; choose from: identity, "
                                      f"{', '.join(WS_OPS)}")
            if len({nao_op_name(o) for o in self.ops}) != len(self.ops) or not self.ops:
                raise ConfigError(f"search.ops={self.ops} must list at least one op, each once")
        if self.space == "nb201" and self.seed_archs > NB201_SIZE:
            raise ConfigError(f"search.seed_archs={self.seed_archs} exceeds the {NB201_SIZE} NB201 architectures")
        for key in ("top_k", "generate_top"):
            if getattr(self, key) > self.seed_archs:
                raise ConfigError(f"search.{key}={getattr(self, key)} exceeds the pool: must be <= "
                                  f"search.seed_archs={self.seed_archs}")
        if self.rerank == "benchmark" and self.space != "nb201":
            raise ConfigError("search.rerank=benchmark needs search.space=nb201 (the table judges NB201 cells "
                              "only); use rerank=train")
        if self.lr_min > self.lr:
            raise ConfigError(f"search.lr_min={self.lr_min} must be <= search.lr={self.lr}")
