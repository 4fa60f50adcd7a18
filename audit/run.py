"""``run_audit``: data -> groups -> ground truth -> model -> method -> metrics -> results -> report.

Each stage is a small function so the pipeline reads top to bottom. Everything the
user can get wrong (method, country, questions, parameters) is checked before
anything slow happens; then OUT/results.json is marked ``complete: false`` and is
only rewritten as complete once every figure exists. Scores go through the
engine's SQLite cache as they are computed, so re-running an interrupted command
resumes where it stopped and gives the same results.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .errors import ConfigError, DataError
from .methods.base import HeldOutCells, Method, MethodContext, get_method_class
from .types import Country, Group, Question

if TYPE_CHECKING:
    from .models import ModelSpec

Log = Callable[[str], None]


@dataclass
class Clock:
    """Wall time per stage; reported under the results.json timing fields."""

    start: float = field(default_factory=time.perf_counter)
    laps: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.laps[f"{name}_s"] = self.laps.get(f"{name}_s", 0.0) + time.perf_counter() - t0

    def summary(self) -> dict[str, float]:
        return {**self.laps, "total_s": time.perf_counter() - self.start}


def _stderr(message: str) -> None:
    print(f"cvaudit: {message}", file=sys.stderr, flush=True)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` (by name, not through **kwargs)."""
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def make_method(config: RunConfig) -> Method:
    """Instantiate the method; a bad parameter is a one-line ConfigError, not a TypeError.

    ``--allow-pickle`` is one run option: a method that validates its own weight files
    (checkpoint) receives it as its ``allow_pickle`` parameter unless that was given.
    """
    cls = get_method_class(config.method)
    kwargs = config.method_kwargs()
    if config.allow_pickle and "allow_pickle" not in kwargs and _accepts(cls.__init__, "allow_pickle"):
        kwargs["allow_pickle"] = True
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for method {config.method!r}: {exc}") from None


def pick_questions(config: RunConfig) -> list[Question]:
    from .questions import select_questions

    questions = select_questions(config.questions)
    if config.limit is not None:
        questions = questions[: config.limit]
    if not questions:
        raise ConfigError(f"question selection {config.questions!r} is empty; try --questions core")
    return questions


def question_label(asked: str, questions: Sequence[Question], shown: int = 6) -> str:
    """The audited questions for the log: the set's name, or the ids actually kept (a method may drop some)."""
    from .questions import question_sets

    ids = [q.id for q in questions]
    named = question_sets().get(asked.strip().lower())
    if named is not None and len(named) == len(ids):
        return asked  # a named set, whole: core, all, a category slug
    listed = ",".join(ids[:shown]) + (f",... (+{len(ids) - shown})" if len(ids) > shown else "")
    return f"{asked}: {listed}" if named is not None else listed


def filter_questions(method: Method, questions: list[Question]) -> tuple[list[Question], list[str], list[str]]:
    """(kept, notes, excluded ids): a method may refuse questions it was fitted on (steering calibration).

    Dropping them here, before ground truth and scoring, keeps the audit to held-out
    questions instead of failing in the middle of scoring.
    """
    kept, notes = method.filter_questions(questions)
    kept = list(kept)
    ids = {q.id for q in kept}
    return kept, [str(n) for n in notes], [q.id for q in questions if q.id not in ids]


def unavailable(groupset: Any) -> dict[str, str]:
    """Attributes/intersections the survey could not build (attribute -> reason)."""
    return {str(k): str(v) for k, v in dict(getattr(groupset, "unavailable", None) or {}).items()}


def load_data(wvs_file: str | None, country: Country) -> Any:
    """The user's WVS file, or the synthetic demo sample when none is given (flagged everywhere)."""
    from .survey import demo_survey, load_survey

    if not wvs_file:
        return demo_survey(country.alpha2, seed=0)
    return load_survey(wvs_file, country)


def make_groups(config: RunConfig, survey: Any) -> Any:
    from .subgroups import build_groups, require_groups

    groupset = build_groups(
        survey,
        attributes=list(config.effective_attributes()),
        intersections=list(config.intersections),
        min_size=config.min_size,
    )
    return require_groups(groupset, config.min_size)  # the same refusal as `cvaudit data`


def survey_side(config: RunConfig, country: Country, questions: list[Question]) -> tuple[Any, Any, Any]:
    """(SurveyData, GroupSet, ground-truth DataFrame) for the run."""
    from .groundtruth import ground_truth

    survey = load_data(config.wvs_file, country)
    groupset = make_groups(config, survey)
    check_reference(config, groupset.groups)
    truth = ground_truth(survey, groupset.groups, questions, min_size=config.min_size)
    if len(truth) == 0 or bool(truth["suppressed"].all()):  # before the model loads, not after scoring
        absent = [q.id for q in questions if q.id not in survey.frame.columns]
        if absent and len(absent) == len(questions):
            raise DataError(f"the survey file has no column for {', '.join(absent[:5])}: nothing to audit; choose "
                            "questions the file has (cvaudit data --wvs-file FILE lists them)")  # fmt: skip
        raise DataError("every (group, question) cell is suppressed (too few valid answers); lower --min-size or "
                        "choose other questions")  # fmt: skip
    return survey, groupset, truth


def check_reference(config: RunConfig, groups: Any) -> None:
    """Fail before scoring when --reference names a group that is not audited."""
    for attr, label in config.reference:
        valid = [g.label for g in groups if g.attribute == attr]
        if not valid:
            have = sorted({g.attribute for g in groups})
            raise ConfigError(f"--reference {attr}={label}: attribute {attr!r} is not audited (audited: {', '.join(have)})")
        if label not in valid:
            raise ConfigError(f"--reference {attr}={label}: no such group; valid: {', '.join(valid)}")


def scored_cells(groups: Any, truth: Any) -> set[tuple[str, str]]:
    """(group.id, question.id) of every cell with a non-suppressed ground truth: the cells figures use."""
    from .results import scored

    ids = {(g.attribute, g.label): g.id for g in groups}
    return {(ids[(r.attribute, r.group)], r.question) for r in truth.itertuples(index=False)
            if scored(r) and (r.attribute, r.group) in ids}  # fmt: skip


def hold_out_cells(method: Method, groups: list[Group], questions: list[Question], country: Country,
                   truth: Any) -> HeldOutCells:  # fmt: skip
    """The cells the method was trained on (left out of every figure), asked before the model loads.

    A run in which every cell with a ground truth is a training cell has nothing to
    test: it fails now (ConfigError with the method's advice), not after scoring.
    """
    held = method.training_cells(groups, questions, country)
    if held.cells and scored_cells(groups, truth) <= held.cells:
        raise ConfigError(held.advice or f"every audited (group, question) cell is one the {method.name} method "
                          "was fitted on: nothing is left to audit; choose other groups or questions")  # fmt: skip
    return held


def model_spec(config: RunConfig, method: Method) -> Any:
    """ModelSpec from the config, then the method's overrides (e.g. an adapter or a checkpoint dir).

    The method is told the ``--model`` the user gave (None when not given), so an
    explicit choice beats e.g. an adapter's recorded base.
    """
    from .models import ModelSpec

    spec = ModelSpec(
        id=config.model_id(),
        revision=config.revision,
        dtype=config.dtype,
        device=config.device,
        device_map=config.device_map,
        trust_remote_code=config.trust_remote_code,
        allow_pickle=config.allow_pickle,
    )
    overrides = dict(method.model_overrides(model=config.model) or {})
    if "allow_pickle" in overrides:  # the method may allow pickle for its checkpoint; --allow-pickle still holds
        overrides["allow_pickle"] = bool(overrides["allow_pickle"]) or config.allow_pickle
    valid = {f.name for f in fields(spec)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"method {method.name!r} overrides unknown model settings {unknown}; valid: {sorted(valid)}")
    return replace(spec, **overrides)


def make_cache(config: RunConfig) -> Any:
    if config.no_cache:
        return None
    from .cache import ScoreCache

    return ScoreCache(config.cache)  # None: the default cache_root()/scores.sqlite


def make_engine(config: RunConfig, loaded: Any, cache: Any) -> Any:
    from .engine import Engine

    return Engine(loaded, cache=cache, batch_size=config.batch_size, progress=config.progress)


def metrics_config(config: RunConfig) -> Any:
    from cvaudit.metrics import MetricsConfig

    return MetricsConfig(
        n_boot=config.n_boot, level=config.level, seed=config.seed, tau=config.tau, alpha=config.alpha,
        reference=config.reference, respondents=config.respondents, noise_correction=config.noise_correction,
    )  # fmt: skip


def human_replicates(config: RunConfig, items: Any, survey: Any, groups: Any, questions: list[Question]) -> Any:
    """Respondent-bootstrap survey replicates per item when --respondent-bootstrap is on, else None.

    Resampling respondents as well as questions puts the survey's own sampling error
    into the intervals, so small groups get the wider CIs they deserve.
    """
    if not config.respondents:
        return None
    from cvaudit.metrics.bootstrap import item_respondent_replicates

    return item_respondent_replicates(items, survey, groups, questions, config.n_boot, config.seed)


def render(record: dict, out: Path, formats: tuple[str, ...], log: Log) -> list[Path]:
    """The HTML/PDF report; skipped with a note if this build has no reports package."""
    if not formats:
        return []
    try:
        from cvaudit.reports import render_report
    except ImportError as exc:
        log(f"report skipped ({exc}); results.json is complete, render later with `cvaudit report`")
        return []
    return list(render_report(record, out, formats=formats))


def run_audit(config: RunConfig, log: Log | None = None) -> Path:
    """Run one audit and return the path of its results.json (see docs/results-schema.md)."""
    from .countries import resolve_country
    from .distributed import is_main_process
    from .io import exclusive_output

    # under `accelerate launch`/torchrun every process runs this; only the main one writes or talks
    main = is_main_process()
    quiet = not config.progress or not main
    say: Log = log if log is not None else ((lambda _m: None) if quiet else _stderr)
    clock = Clock()
    out = Path(config.out)

    # 1. everything the user can get wrong, before anything slow
    method = make_method(config)
    country = resolve_country(config.country)
    questions, question_notes, excluded = filter_questions(method, pick_questions(config))
    for note in question_notes:
        say(note)
    spec = model_spec(config, method)  # a clash between --model and the method's model fails here, not after data
    if main:
        from cvaudit.reports.pdf import require_pdf

        require_pdf(config.formats)  # a missing WeasyPrint fails now, not after the audit
    # one run at a time writes OUT: a second is refused rather than interleaved with this one
    with exclusive_output(out) if main else nullcontext():
        return _audit(config, say, clock, method, country, questions, question_notes, excluded, spec)


def _audit(config: RunConfig, say: Log, clock: Clock, method: Method, country: Country, questions: list[Question],
           question_notes: list[str], excluded: list[str], spec: ModelSpec) -> Path:  # fmt: skip
    """Steps 2-5 of :func:`run_audit`, under its hold on OUT."""
    from . import results as res
    from .distributed import is_main_process

    main, out = is_main_process(), Path(config.out)

    # 2. survey side
    with clock("data"):
        survey, groupset, truth = survey_side(config, country, questions)
    if survey.source.synthetic:
        say("SYNTHETIC DATA: the survey side is cvaudit's synthetic sample, not WVS respondents")
    say(
        f"{len(groupset.groups)} groups x {len(questions)} questions ({question_label(config.questions, questions)}), "
        f"{len(groupset.suppressed)} groups suppressed (< {config.min_size} respondents)"
    )
    for note in res.unavailable_notes(unavailable(groupset)):
        say(note)
    held = hold_out_cells(method, list(groupset.groups), questions, country, truth)  # before the slow model load
    for note in held.notes:
        say(note)

    # 3. model side (the cache opens first: a bad --cache fails before the slow model load)
    cache = make_cache(config)
    with clock("load"):
        from .models import load_model

        loaded = load_model(spec)
        engine = make_engine(config, loaded, cache)
    mcfg = metrics_config(config)
    ctx = MethodContext(
        scorer=engine, groups=list(groupset.groups), questions=list(questions), country=country,
        survey=survey, seed=config.seed,
        extra={"ground_truth": truth, "config": config, "metrics_config": mcfg},
    )  # fmt: skip
    method.check(ctx)  # what only the loaded model can judge (steering layers, vectors), still before OUT changes
    if main:
        # from here on OUT describes this run: a previous complete audit there stays intact through every
        # error above (bad survey, reference, cache, model or method input), and is marked superseded only now
        res.write_pending(out, config)
    with clock("score"):
        predictions = method.predict(ctx)
    stats = getattr(engine, "stats", None) or {}
    if stats.get("cached"):  # a resumed or repeated run says what it did not recompute
        say(f"scores: {stats['cached']} from the cache {getattr(cache, 'path', '')}, {stats.get('computed', 0)} computed")

    # 4. figures
    items = res.build_items(groupset.groups, questions, truth, predictions, exclude=held.cells)
    if items.empty:
        raise DataError("every (group, question) cell is suppressed; lower --min-size or choose other questions")
    with clock("metrics"):
        from cvaudit.metrics import evaluate

        from .groundtruth import population_distributions

        replicates = human_replicates(config, items, survey, groupset.groups, questions)
        evaluation = evaluate(items.drop(columns=["extra"]), res.groups_frame(groupset.groups), mcfg,
                              human_replicates=replicates,
                              population=population_distributions(survey, questions))  # fmt: skip

    # 5. outputs: the complete results.json first (the single source), then the item tables and the report
    created = res.now_utc()  # one creation time for the record, its report and its final rewrite

    excluded_cells = res.excluded_cells_section(groupset.groups, questions, held)  # once; record() is built 3 times

    def record() -> dict:
        return res.assemble(
            config=config, model_info=dict(loaded.info), method=method, source=survey.source,
            questions=questions, suppressed=groupset.suppressed, items=items, evaluation=evaluation,
            unavailable=unavailable(groupset), question_notes=question_notes, excluded=excluded,
            cell_notes=held.notes, excluded_cells=excluded_cells,
            timings=clock.summary(), device=res.device_info(loaded), method_report=ctx.extra.get("method_report"),
            engine_stats=getattr(engine, "stats", None), created_at=created,
        )  # fmt: skip

    results_path = out / "results.json"
    if not main:
        return results_path
    res.write_results(record(), out)
    res.write_items(items, out, evaluation.get("item_metrics"))
    with clock("report"):
        reports = render(record(), out, config.formats, say)
    res.write_results(record(), out)  # again, now with the report's timing
    say(f"done in {clock.summary()['total_s']:.0f} s: {results_path}" + (f" and {len(reports)} report file(s)" if reports else ""))
    return results_path
