"""Untrusted files (issue 10.3): remote code and pickles are refused by default, safetensors win,
report text is escaped, writes stay where they belong, and nothing touches the network offline.

"Malicious" inputs here only create a marker file: the tests assert the marker never appears.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".cvaudit-fingerprint.json"))
    return dst


class _Payload:
    """Unpickling this creates ``marker``: stands in for arbitrary code in a pickle checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _evil_pickle(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"model.embed_tokens.weight": _Payload(marker)}, path)
    return path


def _logits(model, tokenizer, text: str = "How important is family?"):
    import torch

    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


# ------------------------------------------------------------------ defaults
def test_unsafe_options_are_off_by_default():
    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.models import ModelSpec

    assert RunConfig().trust_remote_code is False
    assert ModelSpec().trust_remote_code is False and ModelSpec().allow_pickle is False


# ------------------------------------------------------------------ pickles
def test_pickle_only_model_refused_without_allow_pickle(tmp_path, tiny_llama_dir):
    from cvaudit.audit.errors import ModelError
    from cvaudit.audit.models import ModelSpec, load_model

    model_dir = _copy_model(tiny_llama_dir, tmp_path / "pickled")
    (model_dir / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    _evil_pickle(model_dir / "pytorch_model.bin", marker)
    with pytest.raises(ModelError, match="pickle.*--allow-pickle"):
        load_model(ModelSpec(id=str(model_dir), device="cpu"))
    assert not marker.exists()
    # even when allowed, the loader unpickles weights only: the payload is refused, not run
    with pytest.raises(ModelError):
        load_model(ModelSpec(id=str(model_dir), device="cpu", allow_pickle=True))
    assert not marker.exists()


def test_allowed_benign_pickle_loads_the_same_weights(tmp_path, tiny_llama_dir):
    import torch
    from cvaudit.audit.models import ModelSpec, load_model
    from safetensors.torch import load_file

    model_dir = _copy_model(tiny_llama_dir, tmp_path / "pickled")
    torch.save(load_file(str(model_dir / "model.safetensors")), model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    pickled = load_model(ModelSpec(id=str(model_dir), device="cpu", allow_pickle=True))
    reference = load_model(ModelSpec(id=str(tiny_llama_dir), device="cpu"))
    assert torch.equal(_logits(pickled.model, pickled.tokenizer), _logits(reference.model, reference.tokenizer))


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_safetensors_preferred_over_pickle(tmp_path, tiny_llama_dir, allow_pickle):
    import torch
    from cvaudit.audit.models import ModelSpec, load_model

    model_dir = _copy_model(tiny_llama_dir, tmp_path / "both")
    marker = tmp_path / "PWNED"
    _evil_pickle(model_dir / "pytorch_model.bin", marker)
    loaded = load_model(ModelSpec(id=str(model_dir), device="cpu", allow_pickle=allow_pickle))
    reference = load_model(ModelSpec(id=str(tiny_llama_dir), device="cpu"))
    assert not marker.exists()
    assert torch.equal(_logits(loaded.model, loaded.tokenizer), _logits(reference.model, reference.tokenizer))


# ------------------------------------------------------------------ remote code
def _remote_code_dir(path: Path, tiny: Path, marker: Path) -> Path:
    path.mkdir()
    for f in tiny.iterdir():
        if f.name.startswith("tokenizer") or f.suffix in (".jinja", ".safetensors"):
            shutil.copy(f, path / f.name)
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nfrom transformers import PretrainedConfig\n"
    (path / "configuration_evil.py").write_text(code + "class EvilConfig(PretrainedConfig):\n    model_type = 'evilllama'\n")
    (path / "modeling_evil.py").write_text(code + "EvilModel = None\n")
    (path / "config.json").write_text(json.dumps({
        "model_type": "evilllama", "architectures": ["EvilModel"], "vocab_size": 49152,
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"},
    }))  # fmt: skip
    return path


def _load_in_subprocess(model_dir: Path, tmp_path: Path, stdin: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        from cvaudit.audit.errors import ModelError
        from cvaudit.audit.models import ModelSpec, load_model
        try:
            load_model(ModelSpec(id={str(model_dir)!r}, device="cpu"))
        except ModelError as exc:
            print("MODEL_ERROR", exc)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf-modules"))
    return subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def test_remote_code_refused_without_flag(tmp_path, tiny_llama_dir):
    marker = tmp_path / "PWNED"
    model_dir = _remote_code_dir(tmp_path / "evil", tiny_llama_dir, marker)
    proc = _load_in_subprocess(model_dir, tmp_path, stdin="")
    assert "MODEL_ERROR" in proc.stdout, proc.stdout + proc.stderr
    assert not marker.exists()


def test_remote_code_not_run_even_if_stdin_says_yes(tmp_path, tiny_llama_dir):
    marker = tmp_path / "PWNED"
    model_dir = _remote_code_dir(tmp_path / "evil", tiny_llama_dir, marker)
    proc = _load_in_subprocess(model_dir, tmp_path, stdin="y\n" * 5)
    assert not marker.exists()
    assert "MODEL_ERROR" in proc.stdout and "custom code" not in proc.stdout.split("MODEL_ERROR")[0]


# ------------------------------------------------------------------ output confinement
@pytest.mark.parametrize("name", ["../escape.json", "/etc/passwd", "a/../../escape.json", "sub/../../x"])
def test_confined_refuses_escaping_names(tmp_path, name):
    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.io import confined

    with pytest.raises(ConfigError, match="escapes the output directory"):
        confined(tmp_path / "out", name)


def test_confined_accepts_inner_names_and_follows_symlinks(tmp_path):
    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.io import confined

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    assert confined(out, "sub/report.html") == (out / "sub" / "report.html").resolve()
    assert confined(out, "a/../results.json") == (out / "results.json").resolve()
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError):
        confined(out, "link/results.json")


def test_atomic_write_replaces_a_planted_symlink_not_its_target(tmp_path):
    """A results.json planted as a symlink to another file is replaced; the target is untouched."""
    from cvaudit.audit.io import atomic_write_json

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").symlink_to(victim)
    atomic_write_json(out / "results.json", {"complete": False})
    assert victim.read_text() == "precious\n"
    assert not (out / "results.json").is_symlink()
    assert json.loads((out / "results.json").read_text()) == {"complete": False}


# ------------------------------------------------------------------ an audit with hostile text
@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, tiny_llama_dir):
    """A real run whose model path and persona template carry markup; every write is recorded."""
    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.run import run_audit

    root = tmp_path_factory.mktemp("hostile")
    model = _copy_model(tiny_llama_dir, root / "tiny<img src=x onerror=alert(1)>")
    template = root / "persona.txt"
    template.write_text("<script>alert('persona')</script> You are {identity} living in {country}.\n")
    cache_root = root / "cvaudit-cache"
    before = {p for p in root.rglob("*")}
    mp = pytest.MonkeyPatch()
    mp.setenv("CVAUDIT_CACHE", str(cache_root))
    mp.chdir(root)
    try:
        config = RunConfig(model=str(model), method_params=(("template", str(template)),), attributes=("sex",),
                           limit=2, n_boot=10, no_cache=True, out=str(root / "out"), formats=("html",),
                           progress=False)  # fmt: skip
        run_audit(config)
    finally:
        mp.undo()
    after = {p for p in root.rglob("*")}
    return root, model, cache_root, after - before


def test_report_escapes_hostile_text(hostile_run):
    root, _, _, _ = hostile_run
    html = (root / "out" / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html  # the persona text is shown, escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the model path is shown, escaped


def test_run_writes_only_to_out_and_cache(hostile_run):
    root, model, cache_root, created = hostile_run
    out = root / "out"
    allowed = [out, cache_root]
    stray = [p for p in created if p.is_file() and not any(a in p.parents for a in allowed)]
    assert not stray, stray
    assert {p.name for p in out.iterdir()} == {"results.json", "items.csv", "items.parquet", "report.html"}
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


# ------------------------------------------------------------------ offline
SITECUSTOMIZE = """
import socket

LOG = {log!r}

def _refuse(*args, **kwargs):
    with open(LOG, "a") as fh:
        fh.write(repr(args[:2]) + "\\n")
    raise OSError("network access attempted while HF_HUB_OFFLINE=1")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


@pytest.mark.slow
def test_no_network_access_offline(tmp_path, tiny_llama_dir, smollm2_dir):
    """Tiny local model and the embedded SmolLM2, HTML+PDF report: not one connect or DNS lookup."""
    site = tmp_path / "site"
    site.mkdir()
    log = tmp_path / "connects.log"
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(log=str(log)))
    script = textwrap.dedent(f"""
        import socket, json
        from cvaudit.audit.config import RunConfig
        from cvaudit.audit.run import run_audit
        assert socket.socket.connect.__name__ == "_refuse"
        for name, model in (("tiny", {str(tiny_llama_dir)!r}), ("embedded", "smollm2-135m")):
            cfg = RunConfig(model=model, attributes=("none",), limit=1, n_boot=5, no_cache=True,
                            out=name, formats=("html", "pdf"), progress=False)
            print(name, json.load(open(run_audit(cfg)))["complete"])
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))  # fmt: skip
    env.pop("TRANSFORMERS_OFFLINE", None)  # HF_HUB_OFFLINE alone must be enough
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tiny True" in proc.stdout and "embedded True" in proc.stdout
    assert not log.exists(), log.read_text()
