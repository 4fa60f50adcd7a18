"""Fuzzing the survey loader (issue 10.6): whatever the file holds, ``load_survey`` returns a valid
SurveyData or raises DataError, never another exception; and what it accepts, the subgroup and
ground-truth stages accept too (or refuse with a CVAuditError).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cvaudit.audit.errors import CVAuditError, DataError
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEPARATORS = (";", ",", "\t", "|", " ")
COLUMNS = ("B_COUNTRY", "Q1", "Q2", "Q46", "Q57", "Q260", "Q262", "X003R", "Q289", "Q290", "Q275", "W_WEIGHT",
           "S018", "D_INTERVIEW", "version", "doi", "b_country", " Q1 ", "Q1", "X", "")  # fmt: skip
CELLS = st.one_of(
    st.integers(-5, 12).map(str),
    st.sampled_from(["702", "702", "276", "1", "2", "-1", "-4", "", " ", "NA", "nan", "inf", "-inf", "1e400", "1.5",
                     "0x10", '"3"', '"a;b"', "yes", "9" * 30, "1,5", "\u00e9", "\x00"]),
)  # fmt: skip


def _load(data: bytes, suffix: str = ".csv"):
    """Write ``data`` to a fresh file and load it for Singapore; return SurveyData or the DataError."""
    from cvaudit.audit.survey import load_survey

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"survey{suffix}"
        path.write_bytes(data)
        try:
            return load_survey(path, "SG")
        except DataError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg, repr(msg)  # one line for the CLI
            return exc


def _check_valid(survey) -> None:
    """The SurveyData contract (audit/survey.py): what every later stage relies on."""
    import pandas as pd

    frame = survey.frame
    assert isinstance(frame.index, pd.RangeIndex) and len(frame) > 0
    assert all(str(t) == "float64" for t in frame.dtypes)
    values = frame.to_numpy()
    assert not (values[~np.isnan(values)] < 0).any(), "negative (missing) codes must be NaN"
    assert (frame["B_COUNTRY"] == 702).all()
    assert survey.weights.shape == (len(frame),)
    assert np.isfinite(survey.weights).all() and (survey.weights > 0).all()
    assert survey.source.n_respondents == len(frame)


def _downstream(survey) -> None:
    """Groups and ground truth on whatever was accepted: results or a CVAuditError, nothing else."""
    from cvaudit.audit.groundtruth import ground_truth
    from cvaudit.audit.questions import select_questions
    from cvaudit.audit.subgroups import build_groups

    try:
        groups = build_groups(survey, attributes=None, min_size=1)
        truth = ground_truth(survey, groups, select_questions("Q1,Q2,Q46,Q57"), min_size=1)
    except CVAuditError:
        return
    for row in truth.itertuples(index=False):
        if row.human_dist is not None:
            assert np.isfinite(row.human_dist).all() and abs(sum(row.human_dist) - 1) < 1e-9


def _check(outcome) -> None:
    event("refused" if isinstance(outcome, DataError) else "accepted")  # --hypothesis-show-statistics
    if not isinstance(outcome, DataError):
        _check_valid(outcome)
        _downstream(outcome)


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([".csv", ".dta", ".sav", ".parquet", ".tsv"]))
def test_random_bytes(data, suffix):
    _check(_load(data, suffix))


@FUZZ
@given(
    header=st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=10),
    rows=st.lists(st.lists(CELLS, min_size=0, max_size=12), min_size=0, max_size=8),
    sep=st.sampled_from(SEPARATORS),
    bom=st.booleans(),
    quote=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_random_csv_text(header, rows, sep, bom, quote, newline):
    head = sep.join(f'"{h}"' if quote else h for h in header)
    text = newline.join([head, *(sep.join(r) for r in rows)]) + newline
    _check(_load(("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass")))


@FUZZ
@given(
    n=st.integers(1, 40),
    codes=st.lists(st.sampled_from([-5, -2, -1, 0, 1, 2, 3, 4, 5, 9, 99, 702, 10**12]), min_size=1, max_size=40),
    weight=st.sampled_from(["1", "0", "-1", "0.5", "", "inf"]),
    drop=st.sets(st.sampled_from(["Q260", "Q262", "X003R", "Q289", "Q290", "W_WEIGHT", "Q2"])),
)
def test_wellformed_header_random_values(n, codes, weight, drop):
    """A well-formed file with hostile values: the path that reaches subgroups and ground truth."""
    cols = [c for c in ("B_COUNTRY", "Q1", "Q2", "Q46", "Q57", "Q260", "Q262", "X003R", "Q289", "Q290", "W_WEIGHT")
            if c not in drop]  # fmt: skip
    lines = [";".join(cols)]
    for i in range(n):
        cells = []
        for j, c in enumerate(cols):
            if c == "B_COUNTRY":
                cells.append("702")
            elif c == "W_WEIGHT":
                cells.append(weight if i == 0 else "1")
            else:
                cells.append(str(codes[(i * len(cols) + j) % len(codes)]))
        lines.append(";".join(cells))
    _check(_load(("\n".join(lines) + "\n").encode()))


@pytest.fixture(scope="module")
def official_bytes() -> bytes:
    from cvaudit.audit.synthetic import generate_frame, to_csv_bytes

    return to_csv_bytes(generate_frame("SG", n=40, seed=5))


def test_intact_official_file_loads(official_bytes):
    survey = _load(official_bytes)
    assert not isinstance(survey, DataError), survey
    _check_valid(survey)
    assert len(survey.frame) == 40 and survey.source.synthetic


@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_official_file(official_bytes, cut):
    data = official_bytes[: int(len(official_bytes) * cut)]
    assume(data != official_bytes)
    outcome = _load(data)
    if not isinstance(outcome, DataError):
        # a cut at a line end, or one that leaves a last row whose every field is whole, is a shorter
        # valid file: exactly its complete rows are loaded
        n_fields = official_bytes.split(b"\n", 1)[0].count(b";") + 1
        rows = data.split(b"\n")[1:]
        assert len(outcome.frame) == sum(1 for r in rows if r.strip() and r.count(b";") + 1 == n_fields)
        assert data.endswith(b"\n") or re.fullmatch(rb"-?\d+(\.\d+)?", rows[-1].rsplit(b";", 1)[-1])
        _check(outcome)


@FUZZ
@given(pos=st.integers(0, 10**9), byte=st.integers(0, 255))
def test_one_corrupted_byte_in_official_file(official_bytes, pos, byte):
    data = bytearray(official_bytes)
    data[pos % len(data)] = byte
    _check(_load(bytes(data)))


@FUZZ
@given(
    row=st.integers(0, 7),
    column=st.sampled_from(["B_COUNTRY", "Q1", "Q2", "Q57", "Q260", "Q262", "Q289", "Q290"]),
    value=st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).filter(lambda v: v != int(v)),
                    st.sampled_from([float("inf"), float("-inf")])),
    whole=st.sampled_from(["1", "2.0", "1e0", "", "-1", "-4.0"]),
)
def test_non_integer_code_is_refused_with_column_and_row(row, column, value, whole):
    """Defect 3: any fractional or infinite code is a DataError naming its column and data row; whole
    numbers written as floats and empty cells are accepted."""
    cols = ["B_COUNTRY", "Q1", "Q2", "Q57", "Q260", "Q262", "Q289", "Q290", "W_WEIGHT"]
    base = {"B_COUNTRY": "702", "W_WEIGHT": "0.5", "Q260": whole, "Q1": whole}
    lines = [";".join(cols)]
    for i in range(8):
        cells = {c: base.get(c, "2") for c in cols}
        if i == row:
            cells[column] = repr(value)
        lines.append(";".join(cells[c] for c in cols))
    outcome = _load(("\n".join(lines) + "\n").encode())
    assert isinstance(outcome, DataError), outcome
    assert f"column {column} has a non-integer code" in str(outcome) and f"(data row {row + 1})" in str(outcome)
    lines[row + 1] = ";".join(base.get(c, "2") for c in cols)
    fine = _load(("\n".join(lines) + "\n").encode())
    assert not isinstance(fine, DataError), fine
    _check(fine)
