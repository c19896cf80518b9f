"""The Python API: everything the command line does, in a few lines.

>>> import nasforge
>>> result = nasforge.search(method="darts", dataset="digits", preset="tiny", out="runs/demo")
>>> print(result.genotype)
>>> trained = nasforge.train(result.genotype, dataset="digits", preset="tiny", out="runs/demo-train")
>>> trained["test_acc"], trained["params"], trained["macs"]
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from ._io import atomic_write_text
from .config import RunConfig, load_preset, merge_dicts, parse_overrides, run_dict
from .costs import count_macs, count_params
from .data import ImageDataset, load_dataset
from .errors import ConfigError
from .genotypes import Genotype, load_genotype, save_genotype
from .models import build_network
from .report import write_search_report, write_train_report
from .interrupts import Interrupted, interruptible
from .parallel import check_executor, make_executor
from .parallel import distributed as ddp
from .run import FollowerRun, RunDir, environment_info
from .search import run_search
from .strategies import STRATEGIES, SearchContext
from .training.brief import DataRecipe, remember_data
from .training.trainer import epoch_lr, train_network

__all__ = ["search", "search_seeds", "train", "describe", "SearchResult", "SeedRun", "resolve_config", "load_data"]

_log = logging.getLogger("nasforge")


@dataclass
class SearchResult:
    """What a search leaves: the genotype, its run folder and the per-epoch metrics."""

    genotype: Genotype
    run_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Genotype] = field(default_factory=dict)
    wall_s: float = 0.0
    #: per epoch, the op weights of every cell key (``[edges][ops]``), as ``arch_weights.png`` draws them
    arch_history: list[dict[str, list[list[float]]]] = field(default_factory=list)


def _merge_cli(overrides: Mapping[str, Any] | Sequence[str] | None, **flags: Any) -> dict[str, Any]:
    """Explicit keyword flags (dataset, seed, ...) first, then ``overrides`` (dotted strings or a nested dict)."""
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    extra = parse_overrides(list(overrides)) if isinstance(overrides, (list, tuple)) else dict(overrides or {})
    return merge_dicts(out, extra)


def resolve_config(kind: str, preset: str, search_cls: type | None,
                   overrides: Mapping[str, Any] | Sequence[str] | None = None, **flags: Any) -> RunConfig:
    """The resolved config of preset ``preset`` of ``kind`` with flags and overrides applied."""
    return load_preset(kind, preset, search_cls, _merge_cli(overrides, **flags))


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available here; use --device cpu")
    return device


def load_data(cfg: RunConfig, device: torch.device, progress: bool = True) -> ImageDataset:
    d = cfg.data
    data = load_dataset(d.dataset, d.data_dir, download=d.download, progress=progress)
    if d.n_train or d.n_test:
        data = data.subset(d.n_train or None, d.n_test or None)
    return data.to(device)


@contextlib.contextmanager
def _seeded(seed: int, deterministic: bool, device: torch.device) -> Iterator[None]:
    """Seed the global torch RNG (dropout, drop-path draw from it) inside a fork, restoring the caller's
    RNG and determinism settings afterwards: the library never leaves global state changed."""
    devices = [device.index or 0] if device.type == "cuda" else []
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


@contextlib.contextmanager
def _distributed(device: torch.device, threads: int | None) -> Iterator[tuple[ddp.DistContext, torch.device]]:
    """Join the torchrun job this process belongs to, if any, for the life of one run: this rank's context and
    device (``cuda`` becomes ``cuda:LOCAL_RANK``). Ranks other than 0 keep quiet: rank 0 speaks for the job."""
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    before = torch.get_num_threads()  # the library leaves the caller's thread count as it found it
    ctx, device, owned = ddp.setup(device, threads)
    if threads and not ddp.launched_by_torchrun():
        torch.set_num_threads(threads)
    level = _log.level
    if not ctx.is_main:
        _log.setLevel(logging.ERROR)
    try:
        yield ctx, device
    finally:
        _log.setLevel(level)
        ddp.teardown(owned)
        torch.set_num_threads(before)


def _check_out(out: Path, resume: bool, ctx: ddp.DistContext) -> None:
    if ctx.is_main:
        RunDir.check(out, resume)


@contextlib.contextmanager
def _run_folder(out: Path, kind: str, resume: bool) -> Iterator[RunDir]:
    """The run folder for the life of a run: locked, interruptible by SIGINT/SIGTERM (between writes), and
    removed again when a fresh run fails before its first checkpoint (nothing to resume, nothing left behind).
    Under torchrun only rank 0 owns the folder; the other ranks get a :class:`FollowerRun` that writes nothing."""
    if not ddp.current().is_main:
        with interruptible():
            yield FollowerRun(out, kind, resume)  # type: ignore[misc]
        return
    run = RunDir(out, kind, resume=resume)
    try:
        with interruptible():
            yield run
    except Interrupted as exc:
        run.discard()
        if run.checkpointed:
            hint = (f"{exc}; the last checkpoint in {run.path} resumes where it left off: rerun the same command "
                    f"with --resume --out {run.path}")
        else:
            hint = f"{exc} before the first checkpoint; nothing was kept, start the run again"
        raise Interrupted(exc.signum, hint) from None
    except BaseException:
        run.discard()
        raise
    finally:
        run.close()


def data_warnings(data: ImageDataset, batch_size: int, train_images: int, what: str) -> list[str]:
    """Legal but suspicious data settings: a split smaller than one batch, fewer images than classes."""
    out = []
    if train_images < batch_size:
        out.append(f"the {what} holds {train_images} images, fewer than one batch (data.batch_size={batch_size}): "
                   f"every step sees the same few images; raise data.n_train or lower data.batch_size")
    if len(data.y_train) < data.num_classes:
        out.append(f"only {len(data.y_train)} training images for {data.num_classes} classes: some classes are never "
                   f"seen; raise data.n_train (0 = all)")
    return out


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        _log.warning(f"nasforge: warning: {line}")


def _default_out(kind: str, name: str, dataset: str) -> Path:
    safe = dataset.replace(":", "-").replace("/", "_")
    return Path("runs") / f"{kind}-{name}-{safe}-{time.strftime('%Y%m%d-%H%M%S')}"


def search(method: str = "darts", dataset: str | None = None, preset: str = "tiny", out: str | Path | None = None,
           seed: int | None = None, device: str = "cpu", resume: bool = False,
           overrides: Mapping[str, Any] | Sequence[str] | None = None, data_dir: str | None = None,
           progress: bool = True, threads: int | None = None) -> SearchResult:
    """Run a search and write its run folder (see :mod:`nasforge.run`). Returns the derived genotype.

    Started by ``torchrun`` (or inside a process group you initialised), the search runs data-parallel: see
    :mod:`nasforge.parallel.distributed`. ``threads``: torch threads of this process (default: torch's own, or
    cores / processes per node under torchrun)."""
    strategy_cls = STRATEGIES.get(method)
    cfg = resolve_config(method, preset, strategy_cls.Config, overrides, method=method, **{
        "data.dataset": dataset, "seed": seed, "device": device, "data.data_dir": data_dir,
        "loop.progress": progress})
    if cfg.method != method:
        raise ConfigError(f"the preset sets method {cfg.method!r} but {method!r} was asked for")
    if resume and out is None:
        raise ConfigError("--resume needs --out pointing at the folder of the run to continue")
    out = Path(out) if out is not None else _default_out("search", method, cfg.data.dataset)
    with _distributed(_device(cfg.device), threads) as (dctx, dev):
        _check_out(out, resume, dctx)
        if dctx.active and not strategy_cls.data_parallel:
            raise ConfigError(f"{method} does not train one supernet, so torchrun cannot split it across processes; "
                              f"run it as one process (its candidates are evaluated in parallel with "
                              f"--set search.workers=N or search.executor=ray where it supports them)")
        return _search(strategy_cls, method, preset, cfg, out, dev, resume, progress, dctx)


def _search(strategy_cls: type, method: str, preset: str, cfg: RunConfig, out: Path, dev: torch.device,
            resume: bool, progress: bool, dctx: ddp.DistContext) -> SearchResult:
    data = load_data(cfg, dev, progress and dctx.is_main)
    recipe = DataRecipe.from_config(cfg, dev)
    remember_data(recipe, data)  # candidates trained in this process reuse the loaded images
    ctx = SearchContext(num_classes=data.num_classes, in_channels=data.in_channels, image_size=data.image_size,
                        steps_per_epoch=0, device=dev, generator=torch.Generator().manual_seed(cfg.seed),
                        data=recipe)
    with _seeded(cfg.seed, cfg.deterministic, dev):
        strategy = strategy_cls(cfg.search, ctx)
        weight_split = round(len(data.y_train) * cfg.data.train_portion) if strategy.needs_val_batch \
            else len(data.y_train)
        _warn(data_warnings(data, cfg.data.batch_size, weight_split, "weight split of the training set")
              + strategy.config_warnings())
        _log.info(f"nasforge: {method} search, preset '{preset}', on {cfg.data.dataset} ({data.num_classes} classes, "
                  f"{len(data.y_train)} training images), device {dev}"
                  + (" — the embedded default; use --dataset cifar10 --preset paper for the paper's search"
                     if preset == "tiny" and cfg.data.dataset == "digits" else ""))
        with _run_folder(out, "search", resume) as run:
            run.write_config(run_dict(cfg, "search"), environment_info(str(dev)))
            outcome = run_search(strategy, data, cfg, run)
            if dctx.is_main:
                save_genotype(outcome.genotype, run.path / "genotype.json")
                for name, g in outcome.extra.items():
                    save_genotype(g, run.path / "genotypes" / f"{name}.json")
                if strategy.results():
                    run.write_json("result.json", strategy.results())
                write_search_report(run.path, cfg, outcome, strategy.op_names(),
                                    strategy.report_sections(run.path))
                run.log(f"done in {outcome.wall_s:.1f} s; genotype: {outcome.genotype}"
                        + (f" ({dctx.world_size} processes)" if dctx.active else ""))
    return SearchResult(outcome.genotype, run.path, outcome.history, outcome.extra, outcome.wall_s,
                        outcome.arch_history)


def describe(genotype: Genotype | str, network: str = "cifar", layers: int | None = None,
             channels: int | None = None, num_classes: int | None = None, in_channels: int = 3,
             image_size: int | None = None) -> dict[str, Any]:
    """Parameter count (without auxiliary head) and multiply-adds of the evaluation network of ``genotype``."""
    g = load_genotype(genotype)
    cifar = network == "cifar"
    nb201 = g.space == "nb201"  # the benchmark's network: N=5 cells per stage, C=16, no auxiliary head
    layers = layers or g.num_cells_required or (5 if nb201 else 20 if cifar else 14)
    channels = channels or (16 if nb201 else 36 if cifar else 48)
    num_classes = num_classes or (10 if cifar else 1000)
    image_size = image_size or (32 if cifar else 224)
    net = build_network(g, dataset_kind=network, num_classes=num_classes, layers=layers, channels=channels,
                        auxiliary=not nb201, in_channels=in_channels)
    return {"genotype": str(g), "hash": g.hash(), "network": network, "layers": layers, "channels": channels,
            "num_classes": num_classes, "image_size": image_size,
            "params": count_params(net), "macs": count_macs(net, (in_channels, image_size, image_size))}


def train(genotype: Genotype | str, dataset: str | None = None, preset: str = "tiny",
          out: str | Path | None = None, seed: int | None = None, device: str = "cpu", resume: bool = False,
          overrides: Mapping[str, Any] | Sequence[str] | None = None, data_dir: str | None = None,
          progress: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Retrain ``genotype`` from scratch with the evaluation recipe; writes and returns ``result.json``.
    Data-parallel under ``torchrun`` as :func:`search` is."""
    g = load_genotype(genotype)
    cfg = resolve_config("train", preset, None, overrides, **{
        "data.dataset": dataset, "seed": seed, "device": device, "data.data_dir": data_dir,
        "loop.progress": progress})
    if resume and out is None:
        raise ConfigError("--resume needs --out pointing at the folder of the run to continue")
    epoch_lr(cfg.train, 0)  # an unknown schedule fails here, before any work
    out = Path(out) if out is not None else _default_out("train", g.hash()[:8], cfg.data.dataset)
    with _distributed(_device(cfg.device), threads) as (dctx, dev):
        _check_out(out, resume, dctx)
        return _train(g, preset, cfg, out, dev, resume, progress, dctx)


def _train(g: Genotype, preset: str, cfg: RunConfig, out: Path, dev: torch.device, resume: bool, progress: bool,
           dctx: ddp.DistContext) -> dict[str, Any]:
    data = load_data(cfg, dev, progress and dctx.is_main)
    _log.info(f"nasforge: training {g.hash()[:8]}, preset '{preset}', on {cfg.data.dataset} ({len(data.y_train)} "
              f"training images), device {dev}")
    tc = cfg.train
    _warn(data_warnings(data, cfg.data.batch_size, len(data.y_train), "training set"))
    with _seeded(cfg.seed, cfg.deterministic, dev):
        net = build_network(g, dataset_kind=tc.network, num_classes=data.num_classes,
                            layers=g.num_cells_required or tc.layers, channels=tc.channels,
                            auxiliary=tc.auxiliary, in_channels=data.in_channels, dropout=tc.dropout)
        params = count_params(net)
        macs = count_macs(net, (data.in_channels, data.image_size, data.image_size))
        net = net.to(dev)
        with _run_folder(out, "train", resume) as run:
            run.write_config({**run_dict(cfg, "train"), "genotype": g.to_dict()}, environment_info(str(dev)))
            if dctx.is_main:
                save_genotype(g, run.path / "genotype.json")
            run.log(f"network: {tc.network}, {tc.layers} cells, C={tc.channels}: {params:,} parameters "
                    f"(without auxiliary head), {macs:,} multiply-adds")
            outcome = train_network(net, data, cfg, run)
            result = {"test_acc": outcome.test_acc, "test_loss": outcome.test_loss, "params": params, "macs": macs,
                      "wall_s": outcome.wall_s, "epochs": tc.epochs, "dataset": cfg.data.dataset,
                      "network": tc.network, "layers": tc.layers, "channels": tc.channels, "seed": cfg.seed,
                      "genotype": str(g), "genotype_hash": g.hash()}
            if dctx.is_main:
                run.write_json("result.json", result)
                write_train_report(run.path, cfg, g, result, outcome.history)
                run.log(f"done: test accuracy {outcome.test_acc:.2f}% in {outcome.wall_s:.1f} s")
    result["run_dir"] = str(run.path)
    return result


@dataclass
class SeedRun:
    """One seed of :func:`search_seeds`: its run folder and genotype, or the one-line error it ended with."""

    seed: int
    run_dir: str
    genotype: str | None = None
    genotype_hash: str | None = None
    valid_acc: float | None = None
    wall_s: float = 0.0
    cached: bool = False
    error: str | None = None


def _finished(run: Path) -> bool:
    """A search run folder whose run ended (its genotype and report are written last)."""
    return (run / "genotype.json").is_file() and (run / "report.md").is_file()


def _seed_summary(seed: int, run: Path, cached: bool) -> SeedRun:
    g = load_genotype(run / "genotype.json")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = rows[-1] if rows else {}
    return SeedRun(seed, str(run), str(g), g.hash(), last.get("valid_acc"), float(last.get("wall_s", 0.0)), cached)


def _search_one_seed(job: dict[str, Any]) -> dict[str, Any]:
    """One seed's search, where an executor runs it (module level, so worker processes can import it)."""
    run = Path(job["out"])
    resume = (run / "checkpoints" / "last.pt").is_file()  # an interrupted run of this seed continues
    search(method=job["method"], dataset=job["dataset"], preset=job["preset"], out=run, seed=job["seed"],
           device=job["device"], resume=resume, overrides=job["overrides"], data_dir=job["data_dir"], progress=False)
    return asdict(_seed_summary(job["seed"], run, cached=False))


def search_seeds(seeds: Sequence[int], method: str = "darts", dataset: str | None = None, preset: str = "tiny",
                 out: str | Path | None = None, device: str = "cpu",
                 overrides: Mapping[str, Any] | Sequence[str] | None = None, data_dir: str | None = None,
                 executor: str = "local", workers: int = 1, threads: int | None = None,
                 ray_address: str | None = None) -> list[SeedRun]:
    """The same search once per seed, each an independent run in ``out/seed<k>``, run by an executor
    (``workers`` local processes or Ray tasks; see :mod:`nasforge.parallel`). The DARTS papers pick their cell
    this way: several seeds, then a brief retraining of each.

    Finished seeds are not searched again (a rerun reads their folders); an interrupted seed resumes from its
    checkpoint. A seed that fails is reported with its one-line error and the others still finish. Writes
    ``out/seeds.json`` (one entry per seed, updated as each finishes) and returns the entries in seed order."""
    if not seeds:
        raise ConfigError("--seeds needs at least one seed, e.g. --seeds 0,1,2,3")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {list(seeds)}")
    check_executor(executor, ray_address)
    if workers < 1 or (threads is not None and threads < 1):
        raise ConfigError(f"--workers and --threads must be >= 1, got {workers} and {threads}")
    strategy_cls = STRATEGIES.get(method)
    cfg = resolve_config(method, preset, strategy_cls.Config, overrides, method=method, **{
        "data.dataset": dataset, "device": device, "data.data_dir": data_dir})  # refuse bad input before any work
    root = Path(out) if out is not None else _default_out("seeds", method, cfg.data.dataset)
    plain = list(overrides) if isinstance(overrides, (list, tuple)) else dict(overrides or {})  # picklable
    jobs, results = [], {}
    for seed in seeds:
        run = root / f"seed{seed}"
        if _finished(run):
            results[seed] = _seed_summary(seed, run, cached=True)
        else:
            RunDir.check(run, (run / "checkpoints" / "last.pt").is_file())
            jobs.append({"method": method, "dataset": dataset, "preset": preset, "out": str(run), "seed": seed,
                         "device": device, "overrides": plain, "data_dir": data_dir})
    root.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        atomic_write_text(root / "seeds.json", json.dumps([asdict(results[s]) for s in seeds if s in results],
                                                          indent=2) + "\n")

    write()
    if jobs:
        _log.info(f"nasforge: {len(jobs)} {method} searches (seeds {', '.join(str(j['seed']) for j in jobs)}) on "
                  f"{executor} with {workers} worker{'s' * (workers != 1)}"
                  + (f"; {len(results)} seed(s) already finished" if results else ""))
        with make_executor(executor, workers, threads, ray_address) as ex:
            for i, outcome in ex.as_completed(_search_one_seed, jobs):
                seed = jobs[i]["seed"]
                results[seed] = (SeedRun(**outcome.value) if outcome.ok else
                                 SeedRun(seed, jobs[i]["out"], error=outcome.error, wall_s=outcome.seconds))
                _log.info(f"nasforge: seed {seed}: " + (results[seed].genotype or "") if outcome.ok
                          else f"nasforge: seed {seed} failed: {outcome.error}")
                write()
    return [results[s] for s in seeds]


def read_result(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
