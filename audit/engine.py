"""The scoring engine: option log-probabilities for many prompts, fast and reproducibly.

One forward pass per prompt, logits only at the answer position
(``logits_to_keep=1``), log-softmax over the question's option tokens in float32.
Work is deduplicated, looked up in the score cache, batched and written back per
batch. Two execution paths give the same numbers (within 1e-4, tested):

* exact (``prefix_reuse=False``): one full prompt per row, longest first, in the
  least-cost batches of :func:`plan_batches` (padded tokens + pass cost), right-padded
  with no mask where the output head can be hooked (left-padded and masked otherwise).
* prefix reuse (default when it pays, see :func:`reuse_pays`): a prompt is three segments, persona prefix (shared by
  every question asked with that system text) | question stem (shared by both
  option orders) | options and generation prompt. Each distinct segment is run
  once per batch on top of its parent's key/value cache (DynamicCache rows
  gathered per child), so shared tokens are computed once. Padding inside the
  concatenated cache is masked out and positions count real tokens only.

Position debiasing lives in :func:`combine_orders` (one place, reused by methods).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .cache import ScoreCache, score_key
from .errors import ConfigError, ModelError
from .methods.base import PromptSpec
from .prompts import render_prompts

MIN_REUSE_HIDDEN = 256  # see reuse_pays
CPU_TOKEN_BUDGET = 8192  # tokens per batch on CPU: enough rows to share prefixes, a few hundred MB of cache
CPU_MAX_ROWS = 256
MAX_GPU_BATCH = 1024
NO_TOKEN_LIMIT = 2**62  # a fixed --batch-size limits rows only
GPU_MEMORY_SHARE = 0.7  # of the free memory, for activations and the key/value cache
# fixed cost of one forward pass per layer, in FLOP-equivalents of token compute (see pass_cost_tokens)
PASS_OVERHEAD_FLOPS = {"cpu": 4e7, "cuda": 1.4e12}


def combine_orders(lp_forward: np.ndarray, lp_reverse: np.ndarray) -> np.ndarray:
    """Debiased distribution from the two option orders (both in canonical order).

    Average the log-probabilities, then renormalise: the normalised geometric mean
    of the two distributions. A position factor b_i on display slot i leaves
    option j with sqrt(b_j * b_{K-1-j}): it cancels exactly for K = 2 (and any bias
    with b_j * b_{K-1-j} constant) and is reduced to its reversal-symmetric part
    otherwise. This is DISCA's averaging of the two orders' logit gaps,
    generalised to K options.
    """
    lp = 0.5 * (np.asarray(lp_forward, dtype=np.float64) + np.asarray(lp_reverse, dtype=np.float64))
    lp -= lp.max()
    p = np.exp(lp)
    return p / p.sum()


@dataclass
class _Item:
    ids: np.ndarray  # int64 token ids
    options: np.ndarray  # int64 option token ids, display order
    cuts: tuple[int, int]  # persona_len, prefix_len with 0 <= c1 <= c2 < len(ids)
    key: bytes


def reuse_pays(model: Any) -> bool:
    """Whether prefix reuse is faster than full prompts for this model ("auto").

    Reuse saves the shared tokens' compute but adds cache bookkeeping (row
    gathers, concatenations, more forward calls) whose cost hardly grows with the
    model. Measured on CPU (docs/engine.md): a hidden size of 64 runs faster
    without reuse (7.5 s vs 9.1 s), 256 is 1.4x faster with it and SmolLM2 (576)
    2.0x; every real LLM is far above the threshold.
    """
    return model_dims(getattr(model, "config", None)).hidden >= MIN_REUSE_HIDDEN


def _oom_error() -> tuple[type[BaseException], ...]:
    import torch

    kinds: list[type[BaseException]] = []
    for cls in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)):
        if cls is not None and cls not in kinds:
            kinds.append(cls)
    return tuple(kinds)


@dataclass(frozen=True)
class ModelDims:
    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int


def model_dims(config: Any) -> ModelDims:
    """The transformer's sizes from a Hugging Face config (its text part); 0 where a name is missing."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(getattr(cfg, "hidden_size", 0) or 0)
    heads = int(getattr(cfg, "num_attention_heads", 0) or 1)
    return ModelDims(
        hidden=hidden,
        inter=int(getattr(cfg, "intermediate_size", 0) or 4 * hidden),
        layers=int(getattr(cfg, "num_hidden_layers", 0) or 1),
        heads=heads,
        kv_heads=int(getattr(cfg, "num_key_value_heads", 0) or heads),
        head_dim=int(getattr(cfg, "head_dim", None) or max(hidden // heads, 1)),
    )


def gpu_token_budget(config: Any, element_size: int, free_bytes: int, longest: int) -> int:
    """Padded tokens one forward pass may hold on a GPU: a share of the free memory over the bytes per token.

    Per token: its key/value cache in every layer, the MLP activations of one
    layer (4 x hidden + 3 x intermediate values) and one layer's float32
    attention scores against the longest prompt (an upper bound: fused kernels
    keep none). Llama-3.1-8B in bf16 with 120 GiB free and 260-token prompts:
    ~300,000 tokens.
    """
    d = model_dims(config)
    if not d.hidden:  # a config without the usual names: a cautious fixed budget (an OOM still halves it)
        return max(longest, 16384)
    kv_bytes = d.layers * 2 * d.kv_heads * d.head_dim * element_size
    per_token = kv_bytes + (4 * d.hidden + 3 * d.inter) * element_size + d.heads * longest * 4
    return max(longest, int(GPU_MEMORY_SHARE * free_bytes / per_token))


def cache_kwarg(model: Any) -> str:
    """The forward argument that takes a key/value cache: ``cache`` (transformers >= 5.2x) or ``past_key_values``.

    The old name is deprecated there (removed in 5.40); a PEFT wrapper's forward
    takes ``**kwargs``, so the wrapped model's signature decides.
    """
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out: Any) -> Any:
    """The key/value cache of a forward output, under its new (``cache``) or old name."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def _kv_layers(cache: Any) -> list[tuple[Any, Any]]:
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


class Engine:
    """Scorer (audit/methods/base.py) over a :class:`~cvaudit.audit.models.LoadedModel`."""

    def __init__(
        self,
        loaded: Any,
        cache: ScoreCache | None = None,
        batch_size: int | str = "auto",
        progress: bool = True,
        prefix_reuse: bool | str = "auto",
        distributed: bool | None = None,
        pass_tokens: float | None = None,
    ) -> None:
        if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ConfigError(f"batch size must be a positive integer or 'auto', got {batch_size!r}")
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        if prefix_reuse not in (True, False, "auto"):
            raise ConfigError(f"prefix_reuse must be True, False or 'auto', got {prefix_reuse!r}")
        self.prefix_reuse = reuse_pays(self.model) if prefix_reuse == "auto" else bool(prefix_reuse)
        if distributed is None:
            from .distributed import world_size

            distributed = world_size() > 1
        self.distributed = distributed
        param = self.model.get_input_embeddings().weight
        self.device = param.device
        self.model_key = f"{loaded.fingerprint}|{str(param.dtype).replace('torch.', '')}"
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self._tag: str | None = None
        self._memory: dict[bytes, np.ndarray] = {}
        self._working_limits: tuple[int, int] | None = None  # (rows, tokens) after an out-of-memory halving
        self._cache_kw = cache_kwarg(self.model)  # prefix reuse passes its KV cache under this name
        self._right_pad: bool | None = None  # exact path: right padding if the output-head hook works (_hook_works)
        # prefix reuse: what one more length bucket (forward pass) must save in padded tokens
        self.pass_tokens = pass_cost_tokens(self.model, self.device.type) if pass_tokens is None else float(pass_tokens)
        self.stats: dict[str, Any] = {
            "prompts": 0, "unique": 0, "cached": 0, "computed": 0, "prompt_tokens": 0,
            "forward_tokens": 0, "forward_passes": 0, "score_s": 0.0, "peak_memory_bytes": None,
            "batch_size": None,
        }  # fmt: skip

    # ------------------------------------------------------------------ Scorer
    @property
    def fingerprint(self) -> str:
        """The loaded model's weight fingerprint (``LoadedModel.fingerprint``), never the ``modified`` tag.

        It names the weights a method sees (an adapter applied at load time is
        part of it: ``...+adapter:<fp>``), so it stays the same inside
        :meth:`modified`: steering vectors fitted on this model match it while
        their hooks are on. The cache namespace in force is :attr:`modifier`.
        """
        return str(self.loaded.fingerprint)

    @property
    def modifier(self) -> str | None:
        """The current :meth:`modified` tag (nested tags joined with '+'), or None outside any."""
        return self._tag

    @contextmanager
    def modified(self, tag: str | None) -> Iterator[None]:
        """Scores inside are cached under ``tag`` (nested tags join with '+')."""
        previous = self._tag
        if tag is not None:
            self._tag = tag if previous is None else f"{previous}+{tag}"
        try:
            yield
        finally:
            self._tag = previous

    def logprobs(self, specs: Sequence[PromptSpec]) -> list[np.ndarray]:
        """Log-softmax over each question's option tokens, canonical option order (float64)."""
        rendered = render_prompts(self.tokenizer, specs)
        lps = self.score_tokens(
            [r.input_ids for r in rendered],
            [r.option_token_ids for r in rendered],
            [(r.persona_len, r.prefix_len) for r in rendered],
        )
        return [r.to_canonical(lp.astype(np.float64)) for r, lp in zip(rendered, lps)]

    def distributions(self, specs: Sequence[PromptSpec]) -> list[np.ndarray]:
        """Both option orders of every spec (its ``reverse`` is ignored), combined by :func:`combine_orders`."""
        both = [replace(s, reverse=False) for s in specs] + [replace(s, reverse=True) for s in specs]
        lps = self.logprobs(both)
        n = len(specs)
        return [combine_orders(lps[i], lps[n + i]) for i in range(n)]

    # ------------------------------------------------------------- token level
    def score_tokens(
        self,
        prompts: Sequence[Sequence[int]],
        option_ids: Sequence[Sequence[int]],
        cuts: Sequence[tuple[int, int]] | None = None,
    ) -> list[np.ndarray]:
        """Option log-probabilities (display order, float32) for token-id prompts.

        ``cuts`` are (persona_len, prefix_len) per prompt, the shared-prefix
        boundaries; without them a prompt is one segment (no reuse across prompts).
        """
        t0 = time.perf_counter()
        items: list[_Item] = []
        for i, (ids, opts) in enumerate(zip(prompts, option_ids)):
            ids_a = np.asarray(ids, dtype=np.int64)
            n = len(ids_a)
            if n == 0:
                raise ModelError("cannot score an empty prompt")
            c1, c2 = cuts[i] if cuts is not None else (0, 0)  # (0, 0): one segment, nothing shared
            c1 = min(max(int(c1), 0), n - 1)
            c2 = min(max(int(c2), c1), n - 1)
            opts_a = np.asarray(opts, dtype=np.int64)
            items.append(_Item(ids_a, opts_a, (c1, c2), score_key(self.model_key, self._tag, ids_a, opts_a)))
        self.stats["prompts"] += len(items)
        self.stats["prompt_tokens"] += int(sum(len(it.ids) for it in items))

        unique: dict[bytes, _Item] = {}
        for it in items:
            unique.setdefault(it.key, it)
        self.stats["unique"] += len(unique)
        results: dict[bytes, np.ndarray] = {k: self._memory[k] for k in unique if k in self._memory}
        missing = [k for k in unique if k not in results]
        if self.distributed:
            from . import distributed as dist

            if dist.is_main_process():
                found = self.cache.get_many(missing) if (self.cache is not None and missing) else {}
                plan = (found, [k for k in missing if k not in found])
            else:
                plan = None
            found, todo_keys = dist.broadcast(plan)
        else:
            found = self.cache.get_many(missing) if (self.cache is not None and missing) else {}
            todo_keys = [k for k in missing if k not in found]
        results.update(found)
        self._memory.update(found)
        self.stats["cached"] += len(found)

        todo = [unique[k] for k in todo_keys]
        if self.distributed:
            from . import distributed as dist

            own = self._cache_identity()
            parts = dist.gather([(own, list(self._compute(dist.shard(todo)).items()))])
            computed = {}
            for where, part in parts:
                computed.update(part)
                # each rank put its own batches into its cache as it went (resume); the main process
                # adds only the scores of ranks that wrote to another file or to none
                if dist.is_main_process() and self.cache is not None and where != own:
                    self.cache.put_many(dict(part))
            self._memory.update(computed)
        else:
            computed = self._compute(todo)
        results.update(computed)
        self.stats["computed"] += len(computed)
        self.stats["score_s"] += time.perf_counter() - t0
        return [results[it.key] for it in items]

    def _cache_identity(self) -> str | None:
        """The score file this process writes to (resolved), or None: ranks sharing one file skip re-writes."""
        return None if self.cache is None else str(Path(self.cache.path).resolve())

    # ----------------------------------------------------------------- batches
    def _limits(self, items: Sequence[_Item]) -> tuple[int, int]:
        """(most rows, most tokens) in one forward pass: the user's batch size, or what fits (``auto``).

        On CUDA the token budget follows the free memory (:func:`gpu_token_budget`);
        on CPU it is fixed.
        """
        if self.batch_size != "auto":
            return int(self.batch_size), NO_TOKEN_LIMIT
        if self._working_limits is not None:
            return self._working_limits
        if self.device.type != "cuda":
            return CPU_MAX_ROWS, CPU_TOKEN_BUDGET
        import torch

        free, _ = torch.cuda.mem_get_info(self.device)
        elt = self.model.get_input_embeddings().weight.element_size()
        longest = max(len(it.ids) for it in items)
        return MAX_GPU_BATCH, gpu_token_budget(self.model.config, elt, free, longest)

    def _plan(self, items: Sequence[_Item], rows: int, tokens: int) -> list[int]:
        """End index of each batch over ``items`` (in their scoring order).

        Exact path: the least-cost split of the length-sorted prompts
        (:func:`plan_batches`: padded tokens plus the pass cost, within the
        limits). Prefix reuse: runs of consecutive items (a batch keeps its
        personas and stems together), as many as the longest prompt allows.
        """
        if not items:
            return []
        if self.prefix_reuse:
            step = max(1, min(rows, tokens // max(len(it.ids) for it in items)))
            return list(range(step, len(items), step)) + [len(items)]
        lengths = np.fromiter((len(it.ids) for it in items), dtype=np.int64, count=len(items))
        return plan_batches(lengths, rows, tokens, self.pass_tokens)

    def _compute(self, items: list[_Item]) -> dict[bytes, np.ndarray]:
        """Score items in batches; every finished batch goes to memory and the cache at once."""
        if not items:
            return {}
        import torch

        on_cuda = self.device.type == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.prefix_reuse:
            items = sorted(items, key=lambda it: (it.ids[: it.cuts[0]].tobytes(), it.ids[: it.cuts[1]].tobytes()))
        else:
            items = sorted(items, key=lambda it: -len(it.ids))  # longest first: an OOM shows up at once
        out: dict[bytes, np.ndarray] = {}
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), unit="prompt", desc="scoring", file=sys.stderr, dynamic_ncols=True)
        rows, tokens = self._limits(items)
        ends = self._plan(items, rows, tokens)
        oom = _oom_error()
        pending: tuple[list[_Item], Any, Any] | None = None
        largest = 0

        def finish(chunk: list[_Item], values: Any, ready: Any) -> None:
            if ready is not None:
                ready.synchronize()  # the copy of this batch's results has landed in host memory
            values = values.numpy()
            done: dict[bytes, np.ndarray] = {}
            for r, it in enumerate(chunk):
                row = values[r, : len(it.options)]
                if not np.isfinite(row).all():
                    raise ModelError(
                        f"the model produced NaN/inf logits ({self.model_key.split('|')[-1]}); "
                        "try --dtype float32 or check the checkpoint"
                    )
                done[it.key] = row.astype(np.float32)
            self._memory.update(done)
            out.update(done)
            if self.cache is not None:
                self.cache.put_many(done)
            if bar is not None:
                bar.update(len(chunk))

        i = b = 0
        try:
            with torch.inference_mode():
                while i < len(items):
                    chunk = items[i : ends[b]]
                    try:
                        lsm = self._run_chunk(chunk)
                    except oom:
                        if len(chunk) == 1:
                            raise ModelError("out of GPU memory even at batch size 1; use a smaller dtype or device_map") from None
                        torch.cuda.empty_cache()
                        rows = max(1, len(chunk) // 2)
                        tokens = min(tokens, rows * max(len(it.ids) for it in chunk))
                        ends, b = [i + e for e in self._plan(items[i:], rows, tokens)], 0
                        continue
                    largest = max(largest, len(chunk))
                    if on_cuda:
                        # start the copy to host now and read it after the next batch is queued, so the
                        # GPU is never idle while the host stores results
                        # (on the model's device, which need not be the current one: --device cuda:1)
                        with torch.cuda.device(lsm.device):
                            host = torch.empty(lsm.shape, dtype=torch.float32, pin_memory=True)
                            host.copy_(lsm.float(), non_blocking=True)
                            ready = torch.cuda.Event()
                            ready.record(torch.cuda.current_stream(lsm.device))
                        if pending is not None:
                            finish(*pending)
                        pending = (chunk, host, ready)
                    else:
                        finish(chunk, lsm.float(), None)
                    i, b = ends[b], b + 1
                if pending is not None:
                    finish(*pending)
                    pending = None
        finally:
            if pending is not None:
                try:
                    finish(*pending)  # an interrupt keeps what the GPU already finished
                except Exception:
                    pass
            if bar is not None:
                bar.close()
        self._working_limits = (rows, tokens) if self.batch_size == "auto" else None
        self.stats["batch_size"] = largest
        if on_cuda:
            peak = int(torch.cuda.max_memory_allocated(self.device))
            self.stats["peak_memory_bytes"] = max(peak, self.stats["peak_memory_bytes"] or 0)
        return out

    def _run_chunk(self, chunk: list[_Item]) -> Any:
        if self.prefix_reuse:
            try:
                return self._run_tree(chunk)
            except _oom_error():
                raise
            except (TypeError, AttributeError, NotImplementedError, ValueError) as exc:
                warnings.warn(
                    f"prefix reuse is not supported by this model ({type(exc).__name__}: {exc}); "
                    "scoring every prompt in full",
                    stacklevel=2,
                )
                self.prefix_reuse = False
        return self._run_exact(chunk)

    def _forward(self, logits: bool = True, keep_all: bool = False, **kwargs: Any) -> Any:
        """One pass; ``logits=False`` (a prefix level) keeps no position, skipping the vocabulary projection.

        ``keep_all``: every position goes to the output head (a hook there picks the rows' answer positions).
        """
        self.stats["forward_passes"] += 1
        self.stats["forward_tokens"] += int(kwargs["input_ids"].numel())
        if keep_all:
            return self.model(**kwargs, logits_to_keep=0)
        if logits:
            return self.model(**kwargs, logits_to_keep=1)
        import torch

        return self.model(**kwargs, logits_to_keep=torch.zeros(0, dtype=torch.long, device=kwargs["input_ids"].device))

    def _option_logsoftmax(self, last_logits: Any, chunk: list[_Item]) -> Any:
        """Log-softmax over each row's option tokens in float32; unused slots of short K are -inf."""
        import torch

        kmax = max(len(it.options) for it in chunk)
        idx = np.zeros((len(chunk), kmax), dtype=np.int64)
        valid = np.zeros((len(chunk), kmax), dtype=bool)
        for r, it in enumerate(chunk):
            idx[r, : len(it.options)] = it.options
            valid[r, : len(it.options)] = True
        idx_t = torch.from_numpy(idx).to(last_logits.device)
        valid_t = torch.from_numpy(valid).to(last_logits.device)
        sel = last_logits.float().gather(1, idx_t).masked_fill(~valid_t, float("-inf"))
        return torch.log_softmax(sel, dim=-1)

    def _run_exact(self, chunk: list[_Item]) -> Any:
        """Whole prompts, one per row.

        Right padding when the output head can be hooked: every real token sits at
        its own position and only attends to earlier real tokens, so no attention
        mask is needed (pure causal attention, no mask to build: about 15% faster
        on CPU) and padding cannot change any score; each row's answer position is
        picked before the output head. Otherwise left padding with a mask and
        positions counting real tokens.
        """
        import torch

        width = max(len(it.ids) for it in chunk)
        ids = np.full((len(chunk), width), self.pad_id, dtype=np.int64)
        dev = self.device
        if self._right_pad is None:
            self._right_pad = self._hook_works()
        if self._right_pad:
            for r, it in enumerate(chunk):
                ids[r, : len(it.ids)] = it.ids
            last = torch.tensor([len(it.ids) - 1 for it in chunk], device=dev)
            with self._answer_rows(last):
                out = self._forward(keep_all=True, input_ids=torch.from_numpy(ids).to(dev), use_cache=False)
            return self._option_logsoftmax(out.logits[:, -1, :], chunk)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for r, it in enumerate(chunk):
            ids[r, width - len(it.ids) :] = it.ids
            mask[r, width - len(it.ids) :] = 1
        pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        out = self._forward(
            input_ids=torch.from_numpy(ids).to(dev),
            attention_mask=torch.from_numpy(mask).to(dev),
            position_ids=torch.from_numpy(pos).to(dev),
            use_cache=False,
        )
        return self._option_logsoftmax(out.logits[:, -1, :], chunk)

    @contextmanager
    def _answer_rows(self, last: Any) -> Iterator[list[tuple[int, ...]]]:
        """While inside, the output head sees only position ``last[r]`` of each row r (records the shapes it saw)."""
        import torch

        seen: list[tuple[int, ...]] = []
        rows = torch.arange(len(last), device=last.device)

        def pick(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            seen.append(tuple(args[0].shape))
            return (args[0][rows, last].unsqueeze(1), *args[1:])

        handle = self.model.get_output_embeddings().register_forward_pre_hook(pick)
        try:
            yield seen
        finally:
            handle.remove()

    def _hook_works(self) -> bool:
        """Whether the output head receives every position once (so right padding can pick the answer rows).

        Probed once on a 2 x 3 batch; models whose head is missing or applied
        differently keep the left-padded, masked path.
        """
        import torch

        last = torch.tensor([2, 1], device=self.device)
        try:
            if self.model.get_output_embeddings() is None:
                return False
            with self._answer_rows(last) as seen:
                ids = torch.full((2, 3), int(self.pad_id), dtype=torch.long, device=self.device)
                out = self.model(input_ids=ids, use_cache=False, logits_to_keep=0)
        except Exception:  # noqa: BLE001 - any failure means: do not use this path
            return False
        return len(seen) == 1 and seen[0][:2] == (2, 3) and tuple(out.logits.shape[:2]) == (2, 1)

    def _run_tree(self, chunk: list[_Item]) -> Any:
        """Three levels (persona | stem | rest); each distinct segment runs once on its parent's KV cache.

        Within a level, segments are split into length buckets (one forward pass
        each) so short segments are not padded to the longest; the buckets' caches
        are then left-padded to one length and stacked for the next level.
        """
        import torch

        dev = self.device
        node_of = np.zeros(len(chunk), dtype=np.int64)  # item -> row of the previous level's cache
        kv: list[tuple[Any, Any]] | None = None  # per layer (keys, values), one row per node
        mask_prev: Any = None  # [nodes, kv_len]
        real_prev = np.zeros(1, dtype=np.int64)  # real (unpadded) tokens per node so far
        logits = None
        for level in range(3):
            keys: dict[tuple, int] = {}
            segs: list[np.ndarray] = []
            parents: list[int] = []
            child = np.zeros(len(chunk), dtype=np.int64)
            for j, it in enumerate(chunk):
                cut = (0, it.cuts[0], it.cuts[1], len(it.ids))
                seg = it.ids[cut[level] : cut[level + 1]]
                key = (int(node_of[j]), cut[level], seg.tobytes())
                if key not in keys:
                    keys[key] = len(segs)
                    segs.append(seg)
                    parents.append(int(node_of[j]))
                child[j] = keys[key]
            lengths = np.array([len(x) for x in segs], dtype=np.int64)
            if lengths.max() == 0:  # nothing at this level (e.g. no stem): items stay on their parent's row
                continue
            parent_idx = np.asarray(parents, dtype=np.int64)
            last = level == 2
            perm_parts, kv_parts, mask_parts, real_parts, logit_parts = [], [], [], [], []
            for rows in _length_buckets(lengths, self.pass_tokens):
                width = int(lengths[rows].max())
                ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
                seg_mask = np.zeros((len(rows), width), dtype=np.int64)
                for r, n in enumerate(rows):
                    if lengths[n]:
                        ids[r, width - lengths[n] :] = segs[n]
                        seg_mask[r, width - lengths[n] :] = 1
                par = parent_idx[rows]
                base = real_prev[par] if kv is not None else np.zeros(len(rows), dtype=np.int64)
                pos = base[:, None] + np.maximum(np.cumsum(seg_mask, axis=1) - 1, 0)
                seg_mask_t = torch.from_numpy(seg_mask).to(dev)
                if kv is None:
                    from transformers import DynamicCache

                    cache = DynamicCache()
                    attn = seg_mask_t
                else:
                    par_t = torch.from_numpy(par).to(dev)
                    cache = _cache_from([(k.index_select(0, par_t), v.index_select(0, par_t)) for k, v in kv])
                    attn = torch.cat([mask_prev.index_select(0, par_t), seg_mask_t], dim=1)
                out = self._forward(
                    logits=last,
                    input_ids=torch.from_numpy(ids).to(dev),
                    attention_mask=attn,
                    position_ids=torch.from_numpy(pos).to(dev),
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
                perm_parts.append(rows)
                if last:
                    logit_parts.append(out.logits[:, -1, :])
                else:
                    kv_parts.append(_kv_layers(output_cache(out)))
                    mask_parts.append(attn)
                    real_parts.append(base + lengths[rows])
            perm = np.concatenate(perm_parts)
            inverse = np.empty_like(perm)
            inverse[perm] = np.arange(len(perm))
            node_of = inverse[child]
            if last:
                logits = torch.cat(logit_parts, dim=0) if len(logit_parts) > 1 else logit_parts[0]
            else:
                kv, mask_prev = _stack_caches(kv_parts, mask_parts)
                real_prev = np.concatenate(real_parts)
        rows_t = torch.from_numpy(node_of).to(dev)
        return self._option_logsoftmax(logits.index_select(0, rows_t), chunk)


def _length_buckets(lengths: np.ndarray, pass_tokens: float) -> list[np.ndarray]:
    """Node indices split into length buckets (one forward pass each) at the least padded-token cost.

    The prefix-reuse levels' split: :func:`plan_batches` over the lengths sorted
    longest first, with no row or token limit (a level's segments all belong to
    one batch already). Longest bucket first.
    """
    order = np.argsort(-lengths, kind="stable")
    ends = plan_batches(lengths[order], len(order), NO_TOKEN_LIMIT, pass_tokens)
    return [order[a:b] for a, b in zip([0, *ends[:-1]], ends)]


def plan_batches(lengths: Sequence[int] | np.ndarray, max_rows: int, max_tokens: int, pass_tokens: float) -> list[int]:
    """Split prompts sorted longest first into batches at the least cost; the end index of each batch.

    A batch is a contiguous run padded to its first (longest) prompt: it costs
    rows x that length plus ``pass_tokens``, the fixed cost of one more forward
    pass in tokens (:func:`pass_cost_tokens`). A batch holds at most ``max_rows``
    prompts and ``max_tokens`` padded tokens (a single prompt always fits).
    Fixed chunks instead pad short prompts to the chunk's longest: 18.7% extra
    tokens for the 2,048 shared-bench prompts (120-260 tokens) in chunks of 1,024
    (GPU limits), 4.9% with this plan.

    Exact dynamic programming over the end positions. A batch that is not full
    can always start where a new length starts (moving an equal-length prompt in
    from the batch before costs nothing and may save a pass), so the candidate
    starts are the length changes plus the earliest start the limits allow;
    without binding limits, ends are length changes too and the work is
    O(distinct lengths squared).
    """
    widths = np.asarray(lengths, dtype=np.float64)
    n = len(widths)
    if n == 0:
        return []
    run_starts = np.flatnonzero(np.r_[True, widths[1:] != widths[:-1]])
    free = max_rows >= n and max_tokens >= n * widths[0]
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    start = np.zeros(n + 1, dtype=np.int64)
    first = 0  # earliest start whose padded batch fits the token limit; (j - i) x widths[i] only grows with j
    for j in np.r_[run_starts[1:], n] if free else range(1, n + 1):
        while first < j - 1 and (j - first) * widths[first] > max_tokens:
            first += 1
        lo = max(first, j - max_rows)
        cand = run_starts[np.searchsorted(run_starts, lo) : np.searchsorted(run_starts, j)]
        if not len(cand) or cand[0] != lo:
            cand = np.r_[lo, cand]
        cost = best[cand] + widths[cand] * (j - cand) + pass_tokens
        k = int(np.argmin(cost))
        best[j], start[j] = cost[k], cand[k]
    ends, j = [], n
    while j > 0:
        ends.append(j)
        j = int(start[j])
    return ends[::-1]


def pass_cost_tokens(model: Any, device_type: str) -> float:
    """Fixed cost of one forward pass, in prompt tokens of this model: what one more length bucket must save.

    A pass costs about ``layers x per-layer overhead`` (Python, kernel launches)
    plus ``layers x 2 x per-layer parameters`` FLOPs per token; the layers cancel.
    CPU: about 40 MFLOP-equivalents per layer (0.5-1 ms per layer, measured on
    this project's CPU machines; docs/engine.md). CUDA: 1.4 TFLOP-equivalents per
    layer, from the shared H100 anchor (shared/bench: Llama-3.1-8B, 2,048
    prompts in batches of 16, 64 and 128 took 22.3, 13.6 and 12.4 s; a line
    through seconds against passes gives 89 ms per pass plus 35,600 tokens/s,
    i.e. one pass costs ~3,200 tokens). Tiny CPU model: ~540 tokens, SmolLM2 on
    CPU: ~6, Llama-3.1-8B on GPU: ~3,200 (small models on a GPU: one pass per
    level). ``cvaudit bench`` measures the engine's own figure on the machine.
    """
    d = model_dims(getattr(model, "config", None))
    per_layer = 2 * d.hidden * d.heads * d.head_dim + 2 * d.hidden * d.kv_heads * d.head_dim + 3 * d.hidden * d.inter
    overhead = PASS_OVERHEAD_FLOPS["cuda" if device_type == "cuda" else "cpu"]
    return overhead / max(2 * per_layer, 1)


def _cache_from(layers: list[tuple[Any, Any]]) -> Any:
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(layers):
        cache.update(k, v, i)
    return cache


def _stack_caches(parts: list[list[tuple[Any, Any]]], masks: list[Any]) -> tuple[list[tuple[Any, Any]], Any]:
    """Stack buckets' caches row-wise, left-padding shorter ones (masked: positions live in the keys' RoPE)."""
    import torch.nn.functional as F

    if len(parts) == 1:
        return parts[0], masks[0]
    width = max(m.shape[1] for m in masks)
    mask = torch_cat([F.pad(m, (width - m.shape[1], 0)) for m in masks])
    layers = []
    for i in range(len(parts[0])):
        ks = [F.pad(p[i][0], (0, 0, width - p[i][0].shape[2], 0)) for p in parts]
        vs = [F.pad(p[i][1], (0, 0, width - p[i][1].shape[2], 0)) for p in parts]
        layers.append((torch_cat(ks), torch_cat(vs)))
    return layers, mask


def torch_cat(xs: list[Any]) -> Any:
    import torch

    return torch.cat(xs, dim=0)
