"""Score cache: storage, keys, resume after an interrupted run, modifier tags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cvaudit.audit.cache import ScoreCache, score_key
from cvaudit.audit.engine import Engine
from cvaudit.audit.methods.base import PromptSpec
from cvaudit.audit.models import ModelSpec, load_model
from cvaudit.audit.types import Question


def test_roundtrip_and_persistence(tmp_path):
    path = tmp_path / "s.sqlite"
    a, b = score_key("fp", None, [1, 2, 3], [5, 6]), score_key("fp", None, [1, 2, 4], [5, 6])
    with ScoreCache(path) as c:
        c.put_many({a: np.array([-0.1, -2.5], dtype=np.float64)})
        assert len(c) == 1
    with ScoreCache(path) as c:  # a new process would see the same
        got = c.get_many([a, b])
    assert list(got) == [a]
    assert got[a].dtype == np.float32 and got[a].tolist() == pytest.approx([-0.1, -2.5], abs=1e-7)
    with ScoreCache(path) as c:
        assert c._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_key_components():
    base = score_key("fp", None, [1, 2, 3], [5, 6])
    others = [
        score_key("fp2", None, [1, 2, 3], [5, 6]),
        score_key("fp", "steer", [1, 2, 3], [5, 6]),
        score_key("fp", None, [1, 2, 3, 4], [5, 6]),
        score_key("fp", None, [1, 2, 3], [6, 5]),
    ]
    assert len({base, *others}) == 5
    assert score_key("fp", None, (1, 2, 3), np.array([5, 6], dtype=np.int32)) == base


def _specs() -> list[PromptSpec]:
    qs = [Question(id=f"Q{i}", text=f"Question number {i}: do you agree with statement {i}?", options=("Agree", "Neutral", "Disagree"),
                   codes=((1,), (2,), (3,)), ordinal=True, category="T") for i in range(6)]  # fmt: skip
    return [PromptSpec(q, s, r) for s in (None, "You are a teacher.") for q in qs for r in (False, True)]


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.set_num_threads(1)
    return load_model(ModelSpec(id=str(tiny_llama_dir)))


@pytest.mark.parametrize("prefix_reuse", [False, True])
def test_resume_after_interrupt(tiny, tmp_path, prefix_reuse):
    specs = _specs()  # 24 prompts, batches of 4
    clean = Engine(tiny, batch_size=4, progress=False, prefix_reuse=prefix_reuse).logprobs(specs)

    path = tmp_path / "scores.sqlite"
    first = Engine(tiny, cache=ScoreCache(path), batch_size=4, progress=False, prefix_reuse=prefix_reuse)
    done = []
    original = first._run_chunk

    def dies_after_three(chunk):
        if len(done) == 3:
            raise Interrupt  # stands in for Ctrl-C / kill during batch 4
        done.append(len(chunk))
        return original(chunk)

    first._run_chunk = dies_after_three
    with pytest.raises(Interrupt):
        first.logprobs(specs)
    assert len(ScoreCache(path)) == 12  # three committed batches survive

    second = Engine(tiny, cache=ScoreCache(path), batch_size=4, progress=False, prefix_reuse=prefix_reuse)
    rows = []
    original2 = second._run_chunk
    second._run_chunk = lambda chunk: (rows.append(len(chunk)), original2(chunk))[1]
    resumed = second.logprobs(specs)
    assert sum(rows) == 12 and second.stats["cached"] == 12 and second.stats["computed"] == 12
    for a, b in zip(resumed, clean):
        np.testing.assert_allclose(a, b, atol=1e-5)

    third = Engine(tiny, cache=ScoreCache(path), batch_size=4, progress=False, prefix_reuse=prefix_reuse)
    third._run_chunk = lambda chunk: pytest.fail("everything is cached")
    again = third.logprobs(specs)
    for a, b in zip(again, resumed):
        np.testing.assert_array_equal(a, b.astype(np.float32).astype(np.float64))


def test_modified_tag_separates_scores(tiny, tmp_path):
    """A hooked model's scores are cached under its tag and never mixed with the plain model's."""
    specs = _specs()[:4]
    cache = ScoreCache(tmp_path / "s.sqlite")
    e = Engine(tiny, cache=cache, progress=False)
    plain = e.logprobs(specs)
    opt = render_first_option(tiny, specs[0])

    def bias(module, inputs, output):
        output[..., opt] += 5.0
        return output

    handle = tiny.model.lm_head.register_forward_hook(bias)
    try:
        with e.modified("bias-opt1"):
            hooked = e.logprobs(specs)
    finally:
        handle.remove()
    assert hooked[0][0] > plain[0][0] + 1.0  # the hook changed the scores: they were not taken from the cache
    assert len(cache) == 8
    fresh = Engine(tiny, cache=ScoreCache(tmp_path / "s.sqlite"), progress=False)
    fresh._run_chunk = lambda chunk: pytest.fail("cached")
    np.testing.assert_array_equal(fresh.logprobs(specs)[0], plain[0])
    with fresh.modified("bias-opt1"):
        np.testing.assert_array_equal(fresh.logprobs(specs)[0], hooked[0])


def render_first_option(loaded, spec):
    from cvaudit.audit.prompts import render_prompt

    return render_prompt(loaded.tokenizer, spec).option_token_ids[0]


def test_another_programs_database_is_refused_untouched(tmp_path):
    import sqlite3

    from cvaudit.audit.errors import ConfigError

    for name, ddl in (("a.sqlite", "CREATE TABLE scores (id INTEGER, value TEXT)"),
                      ("b.sqlite", "CREATE TABLE users (name TEXT)")):  # fmt: skip
        path = tmp_path / name
        with sqlite3.connect(path) as conn:
            conn.execute(ddl)
        with pytest.raises(ConfigError, match="another program's SQLite database"):
            ScoreCache(path)
        with sqlite3.connect(path) as conn:
            assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == [ddl.split()[2]]


def test_a_full_disk_under_the_cache_is_a_one_line_error(tmp_path):
    """SQLite failing mid-run (disk full, file damaged) is the user's to fix: ConfigError naming the cache."""
    import sqlite3

    import numpy as np
    from cvaudit.audit.errors import ConfigError

    cache = ScoreCache(tmp_path / "c.sqlite")
    cache.put_many({b"a": np.zeros(3, np.float32)})

    class Full:
        def __init__(self, conn):
            self.conn = conn

        def executemany(self, *a):
            raise sqlite3.OperationalError("database or disk is full")

        execute = executemany

        def rollback(self):
            self.conn.rollback()

    real, cache._conn = cache._conn, Full(cache._conn)
    with pytest.raises(ConfigError, match=r"cannot write to the score cache .*c\.sqlite: database or disk is full"):
        cache.put_many({b"b": np.ones(3, np.float32)})
    with pytest.raises(ConfigError, match="cannot read the score cache"):
        cache.get_many([b"a"])
    cache._conn = real
    assert set(cache.get_many([b"a", b"b"])) == {b"a"}  # what was stored before is kept
