"""Training-free proxies: scores of an untrained network that are meant to rank architectures.

``PROXIES`` holds ``mgm`` (KNAS's gradient kernel, paper definition), ``mgm_official`` (the statistic the KNAS code
computes) and the baselines ``params``, ``grad_norm``, ``snip``, ``synflow`` and ``naswot``. Register more with
:func:`register_proxy`. :func:`score_many` scores architectures in parallel through an on-disk cache;
:func:`kendall_tau` and :func:`spearman_rho` say how well a proxy ranks them.
"""

from . import baselines, mgm  # noqa: F401 - registers the proxies
from .base import PROXIES, Proxy, init_network, register_proxy, resolve_options
from .mgm import gram_mean, official_code_statistic, per_sample_grads, per_sample_grads_loop
from .scoring import (CACHE_ENV_VAR, NetworkSpec, ProxyScore, ScoreCache, default_cache_dir, proxy_batch,
                      score_architecture, score_many)
from .stats import kendall_tau, spearman_rho

__all__ = ["PROXIES", "Proxy", "register_proxy", "resolve_options", "init_network", "per_sample_grads",
           "per_sample_grads_loop", "gram_mean", "official_code_statistic", "NetworkSpec", "ProxyScore", "ScoreCache",
           "score_architecture", "score_many", "proxy_batch", "default_cache_dir", "CACHE_ENV_VAR", "kendall_tau",
           "spearman_rho"]
