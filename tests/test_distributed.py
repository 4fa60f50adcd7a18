"""Two CPU processes (torchrun, gloo) score shards and gather the same numbers as one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cvaudit.audit import distributed as dist


def test_bounds_cover_in_order():
    # 10 items over 3 processes: 4, 3, 3 (hand-computed)
    assert [dist.bounds(10, 3, i) for i in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [dist.bounds(2, 3, i) for i in range(3)] == [(0, 1), (1, 2), (2, 2)]


def test_single_process_helpers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert dist.is_main_process() and dist.world_size() == 1
    assert dist.shard([1, 2, 3]) == [1, 2, 3] and dist.gather([1, 2]) == [1, 2] and dist.broadcast("x") == "x"


WORKER = textwrap.dedent(
    """
    import atexit, json, os, sys
    import torch
    torch.set_num_threads(1)
    # registered first, so it runs last: was the process group already destroyed at exit?
    atexit.register(lambda: open(os.path.join(sys.argv[2], f"exit{os.environ['RANK']}.txt"), "w").write(
        str(torch.distributed.is_initialized())))
    from cvaudit.audit import distributed as dist
    from cvaudit.audit.engine import Engine
    from cvaudit.audit.methods.base import PromptSpec
    from cvaudit.audit.models import ModelSpec, load_model
    from cvaudit.audit.types import Question

    from cvaudit.audit.cache import ScoreCache

    model_dir, out_dir, reuse = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    # argv[4]: "shared" (one score file for both ranks), "own" (one each) or "none"
    where = sys.argv[4] if len(sys.argv) > 4 else "none"
    cache = None if where == "none" else ScoreCache(
        os.path.join(out_dir, "scores.sqlite" if where == "shared" else f"scores{dist.rank()}.sqlite"))
    written = [0]
    if cache is not None:
        put = cache.put_many
        def counted(items):
            written[0] += len(items)
            put(items)
        cache.put_many = counted
    qs = [Question(id=f"Q{i}", text=f"Question {i}: is statement {i} true for you?", options=("Yes", "Maybe", "No"),
                   codes=((1,), (2,), (3,)), ordinal=True, category="T") for i in range(5)]
    specs = [PromptSpec(q, s) for s in (None, "You are a nurse.", "You are a retired engineer.") for q in qs]
    engine = Engine(load_model(ModelSpec(id=model_dir)), cache=cache, progress=False, prefix_reuse=reuse)
    assert engine.distributed
    dists = engine.distributions(specs)
    # every process holds every result; each computed only its shard
    payload = {"rank": dist.rank(), "dists": [d.tolist() for d in dists], "computed": engine.stats["computed"], "written": written[0],
               "cached": len(cache) if cache is not None else None,
               "shard": dist.shard(list(range(10)))}
    with open(os.path.join(out_dir, f"rank{dist.rank()}.json"), "w") as fh:
        json.dump(payload, fh)
    dist.barrier()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path, model_dir, reuse: bool, where: str = "none") -> tuple[dict, dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(script), str(model_dir), str(tmp_path), "1" if reuse else "0", where]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    # the process group the engine created is destroyed before interpreter teardown (gloo can abort otherwise)
    assert [(tmp_path / f"exit{i}.txt").read_text() for i in (0, 1)] == ["False", "False"]
    return r0, r1


@pytest.mark.parametrize("where", ["shared", "own"])
def test_each_score_written_once_per_file(tiny_llama_dir, tmp_path, where):
    """A shared score file gets each score once; with one file each, the main one still gets all of them."""
    r0, r1 = _launch(tmp_path, tiny_llama_dir, reuse=True, where=where)
    assert r0["computed"] == r1["computed"] == 30
    np.testing.assert_array_equal(np.array(r0["dists"]), np.array(r1["dists"]))
    if where == "shared":
        assert r0["written"] + r1["written"] == 30 and r0["written"] > 0 and r1["written"] > 0
        assert r0["cached"] == 30
    else:
        assert r0["written"] == 30 and r0["cached"] == 30  # its own shard, then rank 1's
        assert r1["written"] == r1["cached"] < 30  # rank 1 kept only what it computed


def test_two_processes_equal_one(tiny_llama_dir, tmp_path, reuse=True):
    import torch
    from cvaudit.audit.engine import Engine
    from cvaudit.audit.methods.base import PromptSpec
    from cvaudit.audit.models import ModelSpec, load_model
    from cvaudit.audit.types import Question

    r0, r1 = _launch(tmp_path, tiny_llama_dir, reuse)
    assert r0["shard"] == [0, 1, 2, 3, 4] and r1["shard"] == [5, 6, 7, 8, 9]
    assert r0["computed"] == r1["computed"] == 30  # 15 specs x 2 orders, gathered from both shards
    np.testing.assert_array_equal(np.array(r0["dists"]), np.array(r1["dists"]))

    torch.set_num_threads(1)
    qs = [Question(id=f"Q{i}", text=f"Question {i}: is statement {i} true for you?", options=("Yes", "Maybe", "No"),
                   codes=((1,), (2,), (3,)), ordinal=True, category="T") for i in range(5)]  # fmt: skip
    specs = [PromptSpec(q, s) for s in (None, "You are a nurse.", "You are a retired engineer.") for q in qs]
    single = Engine(load_model(ModelSpec(id=str(tiny_llama_dir))), progress=False, prefix_reuse=reuse, distributed=False)
    np.testing.assert_allclose(np.array(r0["dists"]), np.array(single.distributions(specs)), atol=1e-5)
