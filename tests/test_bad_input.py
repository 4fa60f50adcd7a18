"""Bad-input matrix (issue 10.1): every user-facing input that can be wrong gives exit code 2 and one line.

Each case runs the real command line (``cvaudit.audit.cli.main`` in-process, so torch and
transformers are imported once for the whole matrix; two cases also run ``python -m
cvaudit`` as a subprocess) and checks: exit code 2, stderr is exactly one line starting
``cvaudit: error:``, that line names the problem, no traceback, and the output directory
holds no results.json claiming ``complete: true``.

Model cases use copies of the tiny random Llama (tests/conftest.py) broken on purpose.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


# ------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class Inputs:
    root: Path
    wvs: Path  # a valid synthetic official-format file
    files: dict[str, Path]
    models: dict[str, Path]


def _official(frame) -> bytes:
    from cvaudit.audit.synthetic import to_csv_bytes

    return to_csv_bytes(frame)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _survey_files(root: Path) -> tuple[Path, dict[str, Path]]:
    from cvaudit.audit.synthetic import generate_frame

    frame = generate_frame("SG", n=120, seed=1)
    good = _official(frame)
    wvs = _write(root / "wvs.csv", good)
    lines = good.split(b"\n")
    cut = len(lines[0]) + 1 + len(lines[1]) + 1 + len(lines[2]) // 2  # half-way through the 2nd data row
    bad = frame.astype(object)
    bad.loc[5, "Q1"] = "yes"
    comma = frame.astype(object)
    comma["W_WEIGHT"] = [f"{w:.4f}".replace(".", ",") for w in frame["W_WEIGHT"]]  # a locale re-save
    files = {
        "empty": _write(root / "empty.csv", b""),
        "truncated": _write(root / "truncated.csv", good[:cut]),
        "pipe": _write(root / "pipe.csv", good.replace(b";", b"|")),
        "utf16": _write(root / "utf16.csv", good.decode("utf-8-sig").encode("utf-16")),
        "latin1": _write(root / "latin1.csv", good.replace(b"cvaudit-synthetic", b"cvaudit-synth\xe9tic", 1)),
        "no_country": _write(root / "no_country.csv", good.replace(b'"B_COUNTRY"', b'"B_COUNTRX"', 1)),
        "no_questions": _write(root / "no_questions.csv", b"B_COUNTRY;Q260;Q262\n702;1;30\n702;2;40\n"),
        "header_only": _write(root / "header_only.csv", lines[0] + b"\n"),
        "non_numeric": _write(root / "non_numeric.csv", _official(bad)),
        "decimal_comma": _write(root / "decimal_comma.csv", _official(comma)),
        "xlsx": _write(root / "survey.xlsx", b"PK\x03\x04 not really a spreadsheet"),
        "dta": _write(root / "survey.dta", b"\x00garbage that is not stata" * 20),
        "parquet": _write(root / "survey.parquet", b"PAR1 but not really parquet" * 20),
        "dir": root / "a_directory",
        "tpl": _write(root / "template.txt", b"You are {identity} from {country}; {favourite_food} is your food.\n"),
    }
    files["dir"].mkdir()
    return wvs, files


def _tiny_variants(root: Path, tiny: Path) -> dict[str, Path]:
    """Copies of the tiny Llama with one thing broken each."""
    import torch
    from safetensors.torch import load_file, save_file

    def copy(name: str) -> Path:
        dst = root / name
        shutil.copytree(tiny, dst, ignore=shutil.ignore_patterns(".cvaudit-fingerprint.json"))
        return dst

    out: dict[str, Path] = {"missing": root / "no-such-model"}
    d = copy("no_config")
    (d / "config.json").unlink()
    out["no_config"] = d
    d = copy("bad_config")
    (d / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    out["bad_config"] = d
    d = copy("no_weights")
    (d / "model.safetensors").unlink()
    out["no_weights"] = d
    d = copy("truncated_weights")
    blob = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    out["truncated_weights"] = d
    d = copy("pickle_only")
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    out["pickle_only"] = d
    d = copy("no_tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        (d / name).unlink(missing_ok=True)
    out["no_tokenizer"] = d
    for name, value in (("nan_logits", float("nan")), ("inf_logits", float("inf"))):
        d = copy(name)
        state = load_file(str(d / "model.safetensors"))
        state["model.norm.weight"] = torch.full_like(state["model.norm.weight"], value)
        save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
        out[name] = d
    out["no_option_tokens"] = _word_level_model(root / "no_option_tokens")
    return out


def _word_level_model(path: Path) -> Path:
    """A tiny Llama whose tokenizer knows no digits or letters: every option marker is [UNK]."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["[UNK]", "[PAD]", "</s>", "<s>", "the", "of", "how", "important", "is", "your", "life", "."]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   eos_token="</s>", bos_token="<s>")  # fmt: skip
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=1, eos_token_id=2, bos_token_id=3)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_llama_dir) -> Inputs:
    root = tmp_path_factory.mktemp("bad-input")
    wvs, files = _survey_files(root)
    (root / "a_file").write_text("not a directory\n")
    (root / "not_sqlite.sqlite").write_bytes(b"this is not an SQLite database" * 40)
    return Inputs(root=root, wvs=wvs, files=files, models=_tiny_variants(root, tiny_llama_dir))


# ------------------------------------------------------------------ running the CLI
@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def invoke(argv: list[str], capsys) -> Outcome:
    """Run ``cvaudit <argv>`` through the console entry point in this process."""
    from cvaudit.audit.cli import main

    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_one_line_error(outcome: Outcome, word: str, out: Path | None) -> None:
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stderr is not one line:\n{outcome.stderr}"
    assert lines[0].startswith("cvaudit: error:"), lines[0]
    assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    assert outcome.code == 2, (outcome.code, outcome.stderr)
    if out is not None:
        results = out / "results.json"
        assert not results.exists() or json.loads(results.read_text(encoding="utf-8"))["complete"] is False


# ------------------------------------------------------------------ the matrix
Args = Callable[[Inputs], list[str]]


def run_args(*extra: str | Callable[[Inputs], str], model: str | None = "tiny", no_cache: bool = True,
             no_report: bool = True) -> Args:
    """``run`` with small, fast defaults; ``model`` names an entry of Inputs.models or 'tiny'."""

    def build(i: Inputs) -> list[str]:
        args = ["run", "--quiet", "--limit", "1", "--attributes", "sex", "--n-boot", "5"]
        args += (["--no-cache"] if no_cache else []) + (["--no-report"] if no_report else [])
        if model is not None:
            args += ["--model", str(i.models[model]) if model in i.models else str(i.models["_tiny"])]
        return args + [e(i) if callable(e) else e for e in extra]

    return build


def wvs(name: str) -> Callable[[Inputs], str]:
    return lambda i: str(i.files[name])


CASES: list = [
    # --- WVS file
    ("wvs-missing", run_args("--wvs-file", lambda i: str(i.root / "nope.csv")), "does not exist"),
    ("wvs-empty", run_args("--wvs-file", wvs("empty")), "empty"),
    ("wvs-truncated", run_args("--wvs-file", wvs("truncated")), "truncated"),
    ("wvs-wrong-separator", run_args("--wvs-file", wvs("pipe")), "separator"),
    ("wvs-utf16", run_args("--wvs-file", wvs("utf16")), "UTF-16"),
    ("wvs-latin1", run_args("--wvs-file", wvs("latin1")), "UTF-8"),
    ("wvs-no-country-column", run_args("--wvs-file", wvs("no_country")), "B_COUNTRY"),
    ("wvs-no-question-columns", run_args("--wvs-file", wvs("no_questions")), "question columns"),
    ("wvs-header-only", run_args("--wvs-file", wvs("header_only")), "no data rows"),
    ("wvs-non-numeric", run_args("--wvs-file", wvs("non_numeric")), "non-numeric"),
    ("wvs-decimal-comma-weight", run_args("--wvs-file", wvs("decimal_comma")), "decimal comma"),
    ("wvs-country-absent", run_args("--wvs-file", lambda i: str(i.wvs), "--country", "DE"), "no respondents"),
    ("wvs-unsupported-type", run_args("--wvs-file", wvs("xlsx")), "unsupported"),
    ("wvs-corrupt-dta", run_args("--wvs-file", wvs("dta")), "Stata"),
    ("wvs-corrupt-parquet", run_args("--wvs-file", wvs("parquet")), "parquet"),
    pytest.param("wvs-directory", run_args("--wvs-file", wvs("dir")), "directory"),
    ("data-truncated", lambda i: ["data", "--wvs-file", str(i.files["truncated"])], "truncated"),
    ("data-unknown-country", lambda i: ["data", "--country", "Atlantis"], "Atlantis"),
    # --- country, questions, attributes, intersections, reference
    ("country-unknown", run_args("--country", "XX"), "XX"),
    ("questions-unknown-id", run_args("--questions", "Q1,Q99999"), "Q99999"),
    ("questions-unknown-set", run_args("--questions", "no-such-set"), "no-such-set"),
    ("questions-empty", run_args("--questions", ","), "empty"),
    ("attributes-unknown", run_args("--attributes", "colour"), "colour"),
    ("attributes-empty", run_args("--attributes", " , "), "attributes"),
    ("intersection-unknown", run_args("--intersections", "sex:colour"), "intersection"),
    ("intersection-single", run_args("--intersections", "sex"), "intersection"),
    ("reference-no-such-group", run_args("--reference", "sex=Martian"), "no such group"),
    ("reference-malformed", run_args("--reference", "sex"), "attribute=group"),
    # --- methods and their parameters
    ("method-unknown", run_args("--method", "telepathy"), "telepathy"),
    ("method-none-param", run_args("--method", "none", "--method-param", "alpha=1"), "no parameters"),
    ("method-param-malformed", run_args("--method-param", "nokey"), "key=value"),
    ("method-param-unknown", run_args("--method-param", "flavour=1"), "flavour"),
    ("method-param-twice", run_args("--method-param", "template=a", "--method-param", "template=b"), "twice"),
    ("persona-template-missing", run_args("--method-param", "template=/no/such/template.txt"), "template"),
    ("persona-template-unknown-field", run_args("--method-param", lambda i: f"template={i.files['tpl']}"), "template"),
    ("checkpoint-without-path", run_args("--method", "checkpoint"), "checkpoint"),
    ("checkpoint-pickle-refused",
     run_args("--method", "checkpoint", "--checkpoint", lambda i: str(i.models["pickle_only"])), "pickle"),
    ("steering-alpha-not-number", run_args("--method", "steering", "--steer-alpha", "lots"), "alpha"),
    # --- numeric options
    ("n-boot-zero", run_args("--n-boot", "0"), "n_boot"),
    ("n-boot-one", run_args("--n-boot", "1"), "one replicate is a point"),
    ("steering-calibration-fraction", run_args("--method", "steering", "--method-param", "calibration_fraction=2"),
     "calibration_fraction must lie strictly between 0 and 1"),
    ("level-out-of-range", run_args("--level", "1.5"), "level"),
    ("tau-zero", run_args("--tau", "0"), "tau"),
    ("batch-size-negative", run_args("--batch-size", "-3"), "batch_size"),
    ("limit-not-integer", run_args("--limit", "few"), "limit"),
    ("device-unknown", run_args("--device", "tpu"), "device"),
    ("format-unknown", run_args("--format", "docx", no_report=False), "docx"),
    pytest.param("min-size-not-integer", run_args("--min-size", "abc"), "min-size"),
    pytest.param("dtype-unknown", run_args("--dtype", "float8"), "dtype"),
    ("min-size-too-large", run_args("--min-size", "100000"), "min-size"),
    # --- output directory and cache
    pytest.param("out-is-a-file", run_args("--out", lambda i: str(i.root / "a_file")), "out"),
    ("out-under-a-file", run_args("--out", lambda i: str(i.root / "a_file" / "sub")), "a_file"),
    pytest.param("cache-is-a-directory", run_args("--cache", lambda i: str(i.root), no_cache=False), "cache"),
    ("cache-not-sqlite", run_args("--cache", lambda i: str(i.root / "not_sqlite.sqlite"), no_cache=False), "cache"),
    # --- model directory, tokenizer, logits
    ("model-dir-missing", run_args(model="missing"), "does not exist"),
    ("model-hub-offline", run_args("--model", "no-such-org/no-such-model", model=None), "offline"),
    ("model-no-config", run_args(model="no_config"), "config.json"),
    ("model-corrupt-config", run_args(model="bad_config"), "config.json"),
    ("model-no-weights", run_args(model="no_weights"), "weight"),
    ("model-truncated-weights", run_args(model="truncated_weights"), "truncated"),
    ("model-pickle-refused", run_args(model="pickle_only"), "pickle"),
    ("model-no-tokenizer", run_args(model="no_tokenizer"), "tokenizer"),
    pytest.param("tokenizer-no-option-tokens", run_args(model="no_option_tokens"), "option"),
    pytest.param("logits-nan", run_args(model="nan_logits"), "NaN"),
    pytest.param("logits-inf", run_args(model="inf_logits"), "inf"),
]


def _case_id(c) -> str:
    return c.values[0] if hasattr(c, "marks") else c[0]  # pytest.param is a namedtuple too


def _out_for(argv: list[str], default: Path) -> list[str]:
    return argv if "--out" in argv or argv[0] != "run" else [*argv, "--out", str(default)]


@pytest.mark.parametrize(("case", "build", "word"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, build, word, inputs, tiny_llama_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CVAUDIT_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    models = dict(inputs.models, _tiny=tiny_llama_dir)
    argv = build(Inputs(inputs.root, inputs.wvs, inputs.files, models))
    out = tmp_path / "out"
    argv = _out_for(argv, out)
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
    outcome = invoke(argv, capsys)
    assert_one_line_error(outcome, word, out if out.is_dir() else None)


def test_matrix_is_large_enough():
    assert len(CASES) >= 30
    assert len({_case_id(c) for c in CASES}) == len(CASES)


# ------------------------------------------------------------------ report / gate inputs
def _reports_cli():
    return pytest.importorskip("cvaudit.reports.cli", reason="reports/cli.py not built yet")


def _incomplete_results(path: Path) -> Path:
    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.results import write_pending

    write_pending(path, RunConfig(out=str(path)))
    return path / "results.json"


@pytest.mark.parametrize("command", ["report", "gate"])
def test_incomplete_results_refused_by_report_and_gate(command, tmp_path, capsys, monkeypatch):
    _reports_cli()
    monkeypatch.delenv("CVAUDIT_DEBUG", raising=False)
    results = _incomplete_results(tmp_path / "run")
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: []\n")
    args = [command, str(results)] + (["--policy", str(policy)] if command == "gate" else ["--out", str(tmp_path / "r")])
    outcome = invoke(args, capsys)
    assert_one_line_error(outcome, "incomplete", None)
    assert not (tmp_path / "r" / "report.html").exists()


def test_allow_incomplete_renders_with_banner_and_never_passes_the_gate(tmp_path, capsys, monkeypatch):
    _reports_cli()
    monkeypatch.delenv("CVAUDIT_DEBUG", raising=False)
    results = _incomplete_results(tmp_path / "run")
    outcome = invoke(["report", str(results), "--out", str(tmp_path / "r"), "--format", "html", "--allow-incomplete"],
                     capsys)  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    assert "INCOMPLETE" in (tmp_path / "r" / "report.html").read_text(encoding="utf-8").upper()
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: []\n")
    outcome = invoke(["gate", str(results), "--policy", str(policy), "--allow-incomplete"], capsys)
    assert outcome.code == 1, (outcome.stdout, outcome.stderr)


@pytest.mark.parametrize(
    ("name", "text", "word"),
    [
        ("not-yaml", "rules: [unclosed\n  - : :\n", "policy"),
        ("not-a-mapping", "- just\n- a list\n", "policy"),
        ("empty", "", "policy"),
    ],
)
def test_bad_policy_yaml_is_one_line(name, text, word, tmp_path, capsys, monkeypatch):
    _reports_cli()
    monkeypatch.delenv("CVAUDIT_DEBUG", raising=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"schema_version": "1", "complete": True}))
    outcome = invoke(["gate", str(results), "--policy", str(policy)], capsys)
    assert_one_line_error(outcome, word, None)


def test_missing_results_file_for_report(tmp_path, capsys, monkeypatch):
    _reports_cli()
    monkeypatch.delenv("CVAUDIT_DEBUG", raising=False)
    outcome = invoke(["report", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(outcome, "not found", None)


# ------------------------------------------------------------------ real processes
def _python_m(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "CVAUDIT_DEBUG"}
    env.update(HF_HUB_OFFLINE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "cvaudit", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)  # fmt: skip


def test_subprocess_bad_file_one_line_and_debug_shows_traceback(inputs, tmp_path):
    """The same error from a real process; ``--debug`` swaps the line for the traceback."""
    args = ["run", "--quiet", "--no-report", "--no-cache", "--out", str(tmp_path / "o"),
            "--wvs-file", str(inputs.files["truncated"])]  # fmt: skip
    proc = _python_m(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("cvaudit: error:")
    assert "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "results.json").exists()  # nothing that could pass for a result

    # --debug adds the traceback and keeps exit 2 (CI must still tell bad input from a gate breach),
    # wherever it is written, and so does CVAUDIT_DEBUG=1
    for debug in (_python_m("--debug", *args, cwd=tmp_path), _python_m(*args, "--debug", cwd=tmp_path),
                  _python_m(*args, cwd=tmp_path, env_extra={"CVAUDIT_DEBUG": "1"})):  # fmt: skip
        assert debug.returncode == 2, debug.stderr[-500:]
        assert "Traceback" in debug.stderr and "DataError" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1].startswith("cvaudit: error:") and "truncated" in debug.stderr
    gate = _python_m("gate", str(tmp_path / "missing.json"), "--policy", str(tmp_path / "p.yaml"), "--debug", cwd=tmp_path)
    assert gate.returncode == 2 and "Traceback" in gate.stderr


@pytest.mark.parametrize("args", [
    ["synth", "--seed", "-1", "--n", "10"],
    ["compare", "a.json", "b.json", "--seed", "-1"],
    ["bench", "--prompts", "-1"],
    ["bench", "--threads", "-2"],
    ["steer", "fit", "--batch-size", "0"],
    ["steer", "fit", "--max-calibration", "0"],
    ["finetune", "--seed", "-1"],
])  # fmt: skip
def test_out_of_range_numbers_are_usage_errors(args, tmp_path, capsys):
    """Refused by the option parser (one line, exit 2) before any file is read or model loaded."""
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("cvaudit: error:") and err.count("\n") == 1, err
    assert "is not in the range" in err or "x>=" in err or ">=" in err


def test_bench_with_an_empty_tokenizer_folder(tmp_path, capsys):
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--tokenizer", str(tmp_path), "--prompts", "4", "--naive-prompts", "2", "--workload", "independent"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "cannot load a tokenizer from" in err


def test_no_cache_with_cache_is_a_usage_error(tmp_path, capsys):
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--no-cache", "--cache", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--no-cache and --cache contradict" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_compare_min_change_nan_is_refused(tmp_path, capsys):
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["compare", "a.json", "b.json", "--min-change", "nan"])
    assert exc.value.code == 2 and "not a finite number" in capsys.readouterr().err
