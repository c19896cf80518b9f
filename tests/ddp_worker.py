"""Worker of tests/test_distributed.py, started by torchrun (``python -m torch.distributed.run``) on gloo.

    ddp_worker.py step OUT.pt                 one search step of each method on this rank's slice of a fixed batch
    ddp_worker.py search OUT_DIR RUN METHOD [key=value ...] [--resume]
                                              nasforge.search on every rank; each writes OUT_DIR/rank<r>.json

Not a test module itself (no ``test_`` prefix): the test starts it in real processes, as torchrun would.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

from nasforge.config import from_dict, preset_dict
from nasforge.interrupts import Interrupted
from nasforge.ops.norm import sync_batch_norms
from nasforge.parallel import distributed as ddp
from nasforge.strategies import STRATEGIES, SearchContext

#: (method, search overrides) of the one-step equivalence check
STEP_CASES = {"darts-first": ("darts", {"order": "first"}), "darts-second": ("darts", {"order": "second"}),
              "darts-plain-path": ("darts", {"fused": False}), "gold-nas": ("gold-nas", {}),
              "nao-v2": ("nao-v2", {})}  # its supernet's indexed BNs and single-path (partly unused) weights


def build(case: str) -> Any:
    """The tiny preset's strategy of ``case``, built from fixed seeds (the same on every rank)."""
    method, extra = STEP_CASES[case]
    cls = STRATEGIES.get(method)
    raw = {**preset_dict(method, "tiny")["search"], **extra}
    cfg = from_dict(cls.Config, raw, "search.")
    torch.manual_seed(0)
    ctx = SearchContext(num_classes=10, in_channels=1, image_size=8, steps_per_epoch=1,
                        device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    strategy = cls(cfg, ctx)
    strategy.begin_epoch(0)
    return strategy


def batches(n: int = 16) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return ((torch.randn(n, 1, 8, 8, generator=g), torch.randint(10, (n,), generator=g)),
            (torch.randn(n, 1, 8, 8, generator=g), torch.randint(10, (n,), generator=g)))


def one_step(case: str, shard: bool) -> dict[str, Any]:
    """One step of ``case``; returns the gradients each optimizer stepped with, and the state after the step."""
    strategy = build(case)
    model = strategy.replicated_modules()[0]
    if shard:
        sync_batch_norms(model)
    seen: dict[str, list[torch.Tensor]] = {}
    optimizers = ({"weights": strategy.trainees["main"].optimizer} if hasattr(strategy, "trainees") else
                  {name: getattr(strategy, name) for name in ("w_optimizer", "a_optimizer")})
    for name, opt in optimizers.items():
        step = opt.step

        def recording(*a: Any, _opt: Any = opt, _step: Any = step, _name: str = name, **k: Any) -> Any:
            seen[_name] = [p.grad.detach().clone() for grp in _opt.param_groups for p in grp["params"]
                           if p.grad is not None]
            return _step(*a, **k)
        opt.step = recording
    train, val = batches()
    if shard:
        train, val = ddp.shard_batch(train), ddp.shard_batch(val)
    strategy.step(train, val)
    return {"grads": seen, "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def _decisions(value: Any) -> Any:
    """A metrics row without what may differ per rank: times (``*_s``, "3.1 s" in events) and memory
    (``*_mib``)."""
    if isinstance(value, str):
        return re.sub(r"\d+(\.\d+)? s\b", "<time>", value)
    if isinstance(value, dict):
        return {k: _decisions(v) for k, v in value.items() if not k.endswith(("_s", "_mib"))}
    if isinstance(value, list):
        return [_decisions(v) for v in value]
    return value


def main() -> int:
    mode, target = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    if mode == "step":
        torch.distributed.init_process_group("gloo")
        results = {case: one_step(case, shard=True) for case in STEP_CASES}
        if ddp.current().is_main:
            torch.save(results, target)
        torch.distributed.destroy_process_group()
        return 0
    import nasforge

    run, args = sys.argv[3], sys.argv[4:]
    method = args[0]
    overrides = args[1:]
    try:
        result = nasforge.search(method=method, preset="tiny", out=run, resume="--resume" in overrides,
                                 overrides=[o for o in overrides if o != "--resume"], progress=False, threads=1)
    except Interrupted as exc:
        print(exc, file=sys.stderr)
        return 143
    rank = int(__import__("os").environ["RANK"])
    target.mkdir(parents=True, exist_ok=True)
    (target / f"rank{rank}.json").write_text(json.dumps({
        "genotype": str(result.genotype), "arch_history": result.arch_history,
        "losses": [row.get("train_loss") for row in result.history],
        "valid_acc": [row.get("valid_acc") for row in result.history],
        "rows": [_decisions(row) for row in result.history]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
