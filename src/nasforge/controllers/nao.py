"""NAO's controller: encoder → predictor, encoder → decoder (METHODS.md §5.2; METHODS-ADDENDUM.md §7 N5–N7).

* **Tokens.** An architecture is a sequence of small integers; :class:`TokenSpec` maps position ``t``'s value
  ``v`` to token ``offset[t] + v`` (token 0 is SOS/EOS) and says which tokens are valid there. For NAO's space
  (B nodes, K ops) ids take tokens ``1..B+1`` and ops ``B+2..B+1+K`` (12 tokens for B=5, K=5).
* **Encoder.** Token embedding (``embed``); consecutive pairs concatenated (length L → L/2, width 2·embed);
  1-layer LSTM (``hidden``); outputs L2-normalised per step; their mean, normalised again, is the embedding.
* **Predictor.** ``mlp_layers`` hidden ReLU layers (0 in NAO-V2), a linear layer and a sigmoid: the predicted
  min–max-normalised accuracy.
* **Decoder.** 1-layer LSTM (token embedding = hidden size), initial state (embedding, embedding); attention
  whose query passes a bias-free H×H map before the dot product with the encoder outputs; tanh of a bias-free
  linear map of [context; h]; a linear map to the vocabulary; log-softmax. Teacher forcing feeds
  ``[SOS] + seq[:-1]``. Greedy decoding only ever emits tokens valid at each position, so every decoded
  sequence is an architecture.
* **Training.** Loss ``trade_off·MSE + (1−trade_off)·NLL`` (0.8 / 0.2), Adam, gradient clipping; the weights
  persist across calls, the optimiser is new each call (N7).
* **Generation.** Encode the seeds once; for step sizes η = 1, 2, …: one gradient step of the predicted accuracy
  from the *original* encoder outputs, h' = normalise(h + η ∂f/∂h), decode from h' and its normalised mean; keep
  sequences that are neither excluded nor already produced (N6).

All randomness (initialisation, batches, the train/validation split, augmentation) comes from the generator the
caller passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..config import option
from ..errors import ConfigError

__all__ = ["TokenSpec", "ControllerConfig", "NAOController", "ControllerStats", "train_controller", "generate",
           "pairwise_accuracy", "swap_augment", "nao_token_spec", "plain_token_spec"]


@dataclass(frozen=True)
class TokenSpec:
    """How architecture values become tokens: ``token = offsets[t] + value``, ``0 <= value < sizes[t]``."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.sizes) or not self.offsets or len(self.offsets) % 2:
            raise ConfigError(f"token layout needs an even, non-zero length, got {len(self.offsets)} positions")

    @property
    def length(self) -> int:
        return len(self.offsets)

    @property
    def vocab(self) -> int:
        return 1 + max(o + s - 1 for o, s in zip(self.offsets, self.sizes))

    def tokens(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """``[n, L]`` long tensor of tokens."""
        return torch.tensor([[o + v for o, v in zip(self.offsets, s)] for s in seqs], dtype=torch.long)

    def values(self, tokens: torch.Tensor) -> list[tuple[int, ...]]:
        off = torch.tensor(self.offsets)
        return [tuple(int(v) for v in row) for row in (tokens.cpu() - off)]

    def mask(self) -> torch.Tensor:
        """``[L, V]`` bool: the tokens valid at each position."""
        m = torch.zeros(self.length, self.vocab, dtype=torch.bool)
        for t, (o, s) in enumerate(zip(self.offsets, self.sizes)):
            m[t, o:o + s] = True
        return m


def nao_token_spec(nodes: int, n_ops: int) -> TokenSpec:
    """NAO's layout for B = ``nodes``: per node [x_id, x_op, y_id, y_op], ids 1..node+2, ops after the ids."""
    offsets, sizes = [], []
    for _cell in range(2):
        for i in range(nodes):
            for _slot in range(2):
                offsets += [1, nodes + 2]
                sizes += [i + 2, n_ops]
    return TokenSpec(tuple(offsets), tuple(sizes))


def plain_token_spec(length: int, n_values: int) -> TokenSpec:
    """Every position takes one of ``n_values`` values (NAS-Bench-201: 6 edge ops out of 5)."""
    return TokenSpec((1,) * length, (n_values,) * length)


def swap_augment(seq: Sequence[int], nodes: int, generator: torch.Generator) -> tuple[int, ...]:
    """Swap the (x_id, x_op) and (y_id, y_op) pairs of one random node in each cell: the same architecture."""
    out = list(seq)
    for cell in range(2):
        i = int(torch.randint(nodes, (1,), generator=generator))
        base = cell * 4 * nodes + 4 * i
        out[base:base + 2], out[base + 2:base + 4] = out[base + 2:base + 4], out[base:base + 2]
    return tuple(out)


@dataclass
class ControllerConfig:
    """Controller sizes and schedule; defaults are NAO-V2's (METHODS.md §5.2)."""

    embed: int = option(32, ge=1)
    hidden: int = option(64, ge=1)
    mlp_layers: int = option(0, ge=0)
    mlp_hidden: int = option(200, ge=1)
    lr: float = option(1e-3, gt=0)
    weight_decay: float = option(0.0, ge=0)
    batch_size: int = option(100, ge=1)
    epochs: int = option(1000, ge=0)
    grad_clip: float = option(5.0, ge=0)
    trade_off: float = option(0.8, ge=0, le=1)  # weight of the predictor's MSE (the decoder's NLL gets the rest)
    augment: int = option(10, ge=1)  # copies of each training architecture (the original + swapped ones)
    val_fraction: float = option(0.1, ge=0, lt=1)
    init_range: float = option(0.1, gt=0)  # every weight starts uniform in ±init_range


class NAOController(nn.Module):
    """Encoder, predictor and decoder over the tokens of ``spec`` (see the module docstring)."""

    def __init__(self, spec: TokenSpec, cfg: ControllerConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.spec = spec
        h = cfg.hidden
        self.enc_embedding = nn.Embedding(spec.vocab, cfg.embed)
        self.encoder = nn.LSTM(2 * cfg.embed, h, batch_first=True)
        layers: list[nn.Module] = []
        width = h
        for _ in range(cfg.mlp_layers):
            layers += [nn.Linear(width, cfg.mlp_hidden), nn.ReLU()]
            width = cfg.mlp_hidden
        self.predictor = nn.Sequential(*layers, nn.Linear(width, 1))
        self.dec_embedding = nn.Embedding(spec.vocab, h)
        self.decoder = nn.LSTM(h, h, batch_first=True)
        self.attn_query = nn.Linear(h, h, bias=False)
        self.attn_out = nn.Linear(2 * h, h, bias=False)
        self.vocab_out = nn.Linear(h, spec.vocab)
        self.register_buffer("valid", spec.mask(), persistent=False)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-cfg.init_range, cfg.init_range, generator=generator)

    # -- encoder / predictor ---------------------------------------------------------------------------------
    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-step encoder outputs ``[n, L/2, H]``, each L2-normalised."""
        e = self.enc_embedding(tokens)  # [n, L, E]
        e = e.reshape(e.shape[0], e.shape[1] // 2, 2 * e.shape[2])
        out, _ = self.encoder(e)
        return F.normalize(out, dim=-1)

    @staticmethod
    def embedding(enc: torch.Tensor) -> torch.Tensor:
        """The architecture embedding: the normalised mean of the encoder outputs."""
        return F.normalize(enc.mean(dim=1), dim=-1)

    def predict(self, emb: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.predictor(emb)).squeeze(-1)

    # -- decoder -------------------------------------------------------------------------------------------
    def _attend(self, h: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """h ``[n, T, H]`` → log-probabilities ``[n, T, V]``."""
        scores = torch.bmm(self.attn_query(h), enc.transpose(1, 2))  # [n, T, S]
        context = torch.bmm(torch.softmax(scores, dim=-1), enc)  # [n, T, H]
        combined = torch.tanh(self.attn_out(torch.cat([context, h], dim=-1)))
        return F.log_softmax(self.vocab_out(combined), dim=-1)

    def _state(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = emb.unsqueeze(0).contiguous()
        return s, s

    def decode_teacher(self, tokens: torch.Tensor, enc: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every position given the true previous token (teacher forcing)."""
        inputs = torch.cat([torch.zeros_like(tokens[:, :1]), tokens[:, :-1]], dim=1)
        out, _ = self.decoder(self.dec_embedding(inputs), self._state(emb))
        return self._attend(out, enc)

    @torch.no_grad()
    def decode_greedy(self, enc: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Constrained greedy decoding: at each position the most likely *valid* token."""
        n = enc.shape[0]
        token = torch.zeros(n, 1, dtype=torch.long, device=enc.device)
        state = self._state(emb)
        out = []
        for t in range(self.spec.length):
            h, state = self.decoder(self.dec_embedding(token), state)
            logp = self._attend(h, enc)[:, 0]
            logp = logp.masked_fill(~self.valid[t].to(logp.device), float("-inf"))
            token = logp.argmax(dim=-1, keepdim=True)
            out.append(token)
        return torch.cat(out, dim=1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted accuracy ``[n]``, teacher-forced log-probabilities ``[n, L, V]``)."""
        enc = self.encode(tokens)
        emb = self.embedding(enc)
        return self.predict(emb), self.decode_teacher(tokens, enc, emb)


@dataclass
class ControllerStats:
    """What one controller training reached."""

    train_loss: float
    pairwise_acc: float  # held-out pairs ranked as the targets rank them (NaN without a validation split)
    val_hamming: float  # mean per-architecture decoder Hamming distance on held-out architectures
    train_token_acc: float  # share of tokens greedy decoding reconstructs on the training architectures
    n_train: int
    n_val: int


def pairwise_accuracy(pred: Sequence[float], target: Sequence[float]) -> float:
    """Share of pairs (i < j, distinct targets) that the predictions order as the targets do."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    iu = np.triu_indices(len(t), k=1)
    dt, dp = (t[:, None] - t[None, :])[iu], (p[:, None] - p[None, :])[iu]
    keep = dt != 0
    return float(((dt[keep] * dp[keep]) > 0).mean()) if keep.any() else math.nan


def _normalise(values: Sequence[float]) -> torch.Tensor:
    v = torch.tensor(list(values), dtype=torch.float32)
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi > lo else torch.full_like(v, 0.5)


def train_controller(ctrl: NAOController, seqs: Sequence[Sequence[int]], accuracies: Sequence[float],
                     cfg: ControllerConfig, generator: torch.Generator,
                     augment: Callable[[Sequence[int], torch.Generator], tuple[int, ...]] | None = None,
                     device: torch.device | None = None) -> ControllerStats:
    """Train ``ctrl`` on (architecture, min–max-normalised accuracy) pairs; report held-out ranking and decoding.

    ``augment`` returns an equivalent sequence (NAO: :func:`swap_augment`); the training set holds each
    training architecture ``cfg.augment`` times: once as is and ``cfg.augment - 1`` times augmented.
    """
    device = device or next(ctrl.parameters()).device
    spec = ctrl.spec
    n = len(seqs)
    target = _normalise(accuracies)
    order = torch.randperm(n, generator=generator).tolist()
    n_val = int(round(n * cfg.val_fraction)) if n >= 10 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    train_seqs = [tuple(seqs[i]) for i in train_idx]
    train_y = [float(target[i]) for i in train_idx]
    data_seqs, data_y = list(train_seqs), list(train_y)
    if augment is not None:
        for _ in range(cfg.augment - 1):
            data_seqs += [augment(s, generator) for s in train_seqs]
            data_y += train_y
    tokens = spec.tokens(data_seqs).to(device)
    y = torch.tensor(data_y, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(ctrl.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ctrl.train()
    loss_value = math.nan
    for _epoch in range(cfg.epochs):
        perm = torch.randperm(len(data_seqs), generator=generator).to(device)
        total, count = 0.0, 0
        for start in range(0, len(data_seqs), cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            pred, logp = ctrl(tokens[idx])
            mse = F.mse_loss(pred, y[idx])
            nll = F.nll_loss(logp.reshape(-1, logp.shape[-1]), tokens[idx].reshape(-1))
            loss = cfg.trade_off * mse + (1 - cfg.trade_off) * nll
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(ctrl.parameters(), cfg.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        loss_value = total / max(count, 1)
    ctrl.eval()
    pair_acc, hamming = math.nan, math.nan
    with torch.no_grad():
        if val_idx:
            vt = spec.tokens([seqs[i] for i in val_idx]).to(device)
            enc = ctrl.encode(vt)
            pred = ctrl.predict(ctrl.embedding(enc))
            pair_acc = pairwise_accuracy(pred.cpu().tolist(), [float(target[i]) for i in val_idx])
            hamming = float((ctrl.decode_greedy(enc, ctrl.embedding(enc)) != vt).float().sum(1).mean())
        tt = spec.tokens(train_seqs).to(device) if train_seqs else None
        token_acc = math.nan
        if tt is not None:
            enc = ctrl.encode(tt)
            token_acc = float((ctrl.decode_greedy(enc, ctrl.embedding(enc)) == tt).float().mean())
    return ControllerStats(loss_value, pair_acc, hamming, token_acc, len(train_idx), len(val_idx))


def generate(ctrl: NAOController, seeds: Sequence[Sequence[int]], n_new: int, max_step: int,
             exclude: set[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], int]:
    """Up to ``n_new`` new architectures by gradient ascent from ``seeds`` (step sizes 1..``max_step``).

    Returns the new sequences (in the order found) and the last step size used.
    """
    if not seeds or n_new < 1:
        return [], 0
    device = next(ctrl.parameters()).device
    ctrl.eval()
    tokens = ctrl.spec.tokens(seeds).to(device)
    with torch.enable_grad():
        enc = ctrl.encode(tokens).detach().requires_grad_(True)
        pred = ctrl.predict(ctrl.embedding(enc))
        (grad,) = torch.autograd.grad(pred.sum(), enc)
    new: list[tuple[int, ...]] = []
    seen = set(exclude)
    step = 0
    for step in range(1, max_step + 1):
        moved = F.normalize(enc.detach() + step * grad, dim=-1)
        decoded = ctrl.spec.values(ctrl.decode_greedy(moved, ctrl.embedding(moved)))
        for seq in decoded:
            if seq not in seen:
                seen.add(seq)
                new.append(seq)
                if len(new) >= n_new:
                    return new, step
    return new, step
