"""RunConfig: normalisation, round trip through to_dict, and one-line ConfigErrors for bad values."""

from __future__ import annotations

import json

import pytest
from cvaudit.audit.config import ATTRIBUTES, DEFAULT_ATTRIBUTES, RunConfig
from cvaudit.audit.errors import ConfigError


def test_defaults_are_the_documented_demo_setup():
    c = RunConfig()
    assert (c.model, c.method, c.country, c.questions, c.wvs_file) == (None, "persona", "SG", "core", None)
    assert c.model_id() == "smollm2-135m" and RunConfig(model=" m ").model_id() == "m"
    assert c.allow_pickle is False and c.respondents is False
    assert (c.min_size, c.n_boot, c.level, c.tau, c.seed) == (30, 1000, 0.95, 0.8, 0)
    assert c.formats == ("html", "pdf") and c.batch_size == "auto"
    assert c.effective_attributes() == DEFAULT_ATTRIBUTES


def test_cli_style_strings_are_normalised():
    c = RunConfig(
        method_params=["b=2", "a=x"], reference=["sex=Female", "age = 25-34"], attributes="sex, age",
        intersections="sex:age,ethnicity:religion", formats="pdf", limit="5", batch_size="8", min_size="10",
    )  # fmt: skip
    assert c.method_params == (("a", "x"), ("b", "2"))
    assert c.reference == (("age", "25-34"), ("sex", "Female"))
    assert c.attributes == ("sex", "age")
    assert c.intersections == ("sex:age", "ethnicity:religion")
    assert c.formats == ("pdf",)
    assert (c.limit, c.batch_size, c.min_size) == (5, 8, 10)
    assert RunConfig(attributes="all").attributes == ATTRIBUTES
    assert RunConfig(attributes="none").attributes == ("none",)


def test_to_dict_is_json_and_round_trips():
    c = RunConfig(method_params={"alpha": "0,2"}, reference=(("sex", "Male"),), attributes=("sex",), limit=3)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["method_params"] == {"alpha": "0,2"} and d["reference"] == {"sex": "Male"}
    assert d["attributes_effective"] == ["sex"]
    assert RunConfig.from_dict(d) == c
    assert set(d) >= {"model", "revision", "dtype", "device", "device_map", "trust_remote_code", "method",
                      "country", "wvs_file", "questions", "attributes", "intersections", "min_size", "limit",
                      "batch_size", "seed", "n_boot", "level", "tau", "reference", "out", "cache", "no_cache",
                      "formats", "respondents", "allow_pickle"}  # fmt: skip
    assert "progress" not in d and RunConfig(progress=False).to_dict() == RunConfig().to_dict()


def test_frozen():
    with pytest.raises(AttributeError):
        RunConfig().seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_size": "x"}, "min_size must be an integer"),
        ({"min_size": 0}, "min_size must be an integer >= 1"),
        ({"limit": 2.5}, "limit must be an integer"),
        ({"n_boot": True}, "n_boot must be an integer"),
        ({"batch_size": "big"}, "batch_size"),
        ({"level": 1.0}, "level must be in"),
        ({"tau": 0}, "tau must be in"),
        ({"formats": "html,docx"}, "unknown report format 'docx'"),
        ({"reference": ["sex"]}, "expected attribute=group"),
        ({"reference": ["sex=Male", "sex=Female"]}, "given twice"),
        ({"method_params": ["novalue"]}, "expected key=value"),
        ({"method_params": ["bad key=1"]}, "bad method parameter name"),
        ({"attributes": "sex,colour"}, "unknown attribute 'colour'"),
        ({"attributes": ""}, "attributes is empty"),
        ({"intersections": "sex"}, "bad intersection 'sex'"),
        ({"intersections": "sex:sex"}, "bad intersection"),
        ({"dtype": "int8"}, "unknown dtype"),
        ({"device": "tpu"}, "unknown device"),
        ({"country": " "}, "country must be a non-empty string"),
        ({"model": " "}, "model must be a non-empty string"),
    ],
)
def test_bad_values_raise_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_devices_and_cache_options():
    for ok in ("auto", "cpu", "cuda", "cuda:1", "mps", "mps:0"):
        assert RunConfig(device=ok).device == ok
    for bad in ("cuda:abc", "gpu", "cuda:", "tpu:0"):
        with pytest.raises(ConfigError, match="unknown device"):
            RunConfig(device=bad)


def test_mps_is_resolved_or_refused_clearly():
    import torch
    from cvaudit.audit.errors import ModelError
    from cvaudit.audit.models import resolve_device

    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        assert resolve_device("mps") == "mps"
    else:
        with pytest.raises(ModelError, match="Apple MPS is not available"):
            resolve_device("mps")
    with pytest.raises(ModelError, match="unknown device 'cuda:abc'"):
        resolve_device("cuda:abc")


def test_all_and_none_stand_alone():
    for bad in ("all,none", "sex,all", "none,age"):
        with pytest.raises(ConfigError, match="stand alone"):
            RunConfig(attributes=bad)


def test_cuda_names_resolve_per_process_and_pick_a_gpu_dtype(monkeypatch):
    """The CUDA branches of device and dtype resolution, on a CPU machine with CUDA faked present."""
    import torch
    from cvaudit.audit.models import resolve_device, resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "3")  # accelerate/torchrun: each process takes its own GPU
    assert resolve_device("auto") == "cuda:3" and resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", "cuda:0") is torch.bfloat16 and resolve_dtype("auto", "cpu") is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100 or T4
    assert resolve_dtype("auto", "cuda:0") is torch.float16 and resolve_dtype("float32", "cuda:0") is torch.float32


def test_cuda_refused_clearly_when_absent(monkeypatch):
    import torch
    from cvaudit.audit.errors import ModelError
    from cvaudit.audit.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ModelError, match="CUDA is not available; use --device cpu"):
            resolve_device(name)
