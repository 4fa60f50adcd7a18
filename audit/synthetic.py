"""Synthetic WVS-format respondents for demos and tests (no WVS respondent data may be shipped).

Files are written in the exact official per-country CSV format (455 columns in order,
``;``, UTF-8 BOM, quoted headers) so the real loader is exercised end to end, and carry
``cvaudit-synthetic`` in ``version`` and ``doi`` so everything built on them says so.

Answer model: every respondent has three latent traits (traditional vs secular,
survival vs self-expression, religiosity) shifted by age, religion, ethnicity,
education, income and sex. Each question loads on them with its own strength (some
strongly, most weakly), adds noise, and cuts the result at ordinal thresholds drawn
from a per-item baseline distribution; so subgroups differ a lot on some items and
hardly at all on others. Item parameters are fixed; ``seed`` draws the respondents.
"""

from __future__ import annotations

import json
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .countries import resolve_country
from .errors import ConfigError
from .io import atomic_write_bytes
from .types import Country

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .survey import SurveyData

MARKER_VERSION = "cvaudit-synthetic v1 (NOT WVS DATA)"
MARKER_DOI = "cvaudit-synthetic:no-doi"
MODEL_VERSION = 1
ITEM_SEED = 20200702  # fixed: item loadings and thresholds are part of the synthetic "world"
#: the whole file is built in memory (~10 kB per respondent): 200,000 is twice all of WVS Wave 7
#: (~97,000 respondents in 90 countries, a few thousand per country) and takes ~2 GB and ~40 s
MAX_RESPONDENTS = 200_000
NOT_ASKED = {"SG": ("Q86", "Q234A")}  # items left at -4 for a country, as real fieldwork does
COW = {702: (830, "SIN")}
SG_ETHNICITY = {702004: 0.74, 702006: 0.135, 702003: 0.09, 702001: 0.015, 702008: 0.01, 702999: 0.01}
# religion codes (Q289) by ethnicity label, Singapore census-like shares
SG_RELIGION = {
    702004: {7: 0.40, 0: 0.25, 9: 0.14, 2: 0.12, 1: 0.06, 8: 0.03},
    702006: {5: 0.97, 0: 0.02, 9: 0.01},
    702003: {6: 0.58, 5: 0.22, 2: 0.06, 1: 0.06, 9: 0.05, 0: 0.03},
    702001: {1: 0.35, 2: 0.30, 0: 0.35},
    702008: {1: 0.50, 2: 0.25, 0: 0.25},
    702999: {0: 0.30, 7: 0.20, 5: 0.20, 2: 0.15, 9: 0.15},
}
GENERIC_RELIGION = {0: 0.2, 1: 0.25, 2: 0.15, 3: 0.05, 5: 0.15, 6: 0.03, 7: 0.07, 8: 0.05, 9: 0.05}
RELIGIOSITY = {0: -1.4, 1: 0.8, 2: 0.9, 3: 0.6, 4: 0.5, 5: 1.3, 6: 0.9, 7: 0.1, 8: 1.1, 9: 0.3}
# hand-set loadings (traditional, survival, religiosity) for items with an obvious direction;
# positive pushes towards later options
FIXED_LOADINGS = {
    **{q: (0.3, 0.0, -1.6) for q in ("Q6",)},
    **{q: (0.3, 0.0, 1.8) for q in ("Q164",)},
    **{q: (0.2, 0.0, -1.4) for q in ("Q165", "Q166", "Q167", "Q168", "Q171", "Q172", "Q173")},
    **{q: (-1.3, -0.6, -0.6) for q in ("Q182", "Q184", "Q185", "Q186", "Q193")},
    **{q: (1.2, 0.3, 0.0) for q in ("Q29", "Q31", "Q33")},
    **{q: (-1.0, -0.8, 0.0) for q in ("Q22", "Q36")},
    "Q15": (-0.4, 0.0, -1.2), "Q1": (0.0, 0.1, -0.1), "Q46": (0.0, 0.6, 0.0), "Q49": (0.0, -0.8, 0.2),
    "Q195": (-0.6, -0.3, 0.0), "Q240": (0.6, 0.2, 0.3), "Q45": (-0.9, 0.0, -0.3),
}


@lru_cache(maxsize=1)
def official_header() -> tuple[str, ...]:
    """The 455 column names of an official per-country WVS7 CSV file, in order."""
    text = resources.files("cvaudit.audit.data").joinpath("wvs7_header.json").read_text(encoding="utf-8")
    return tuple(json.loads(text)["per_country_csv"])


def _item_params(qid: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Loadings (3,) and K-1 thresholds for one item, fixed by the item id."""
    import numpy as np
    from scipy.stats import norm

    rng = np.random.default_rng([ITEM_SEED, zlib.crc32(qid.encode())])
    if qid in FIXED_LOADINGS:
        load = np.asarray(FIXED_LOADINGS[qid], dtype=float)
    else:
        strength = rng.choice([0.15, 0.35, 0.7, 1.2], p=[0.35, 0.35, 0.2, 0.1])
        direction = rng.normal(size=3)
        load = strength * direction / np.linalg.norm(direction)
    base = rng.dirichlet(np.full(k, 1.5))
    cum = np.clip(np.cumsum(base)[:-1], 1e-3, 1 - 1e-3)
    scale = np.sqrt(1.0 + float(load @ load))  # latent sd, so `base` is the population distribution
    return load, norm.ppf(cum) * scale


def _choice(rng: np.random.Generator, table: dict[int, float], size: int) -> np.ndarray:
    import numpy as np

    codes = np.asarray(list(table), dtype=np.int64)
    p = np.asarray(list(table.values()), dtype=float)
    return codes[rng.choice(len(codes), size=size, p=p / p.sum())]


def _demographics(rng: np.random.Generator, country: Country, n: int) -> dict[str, np.ndarray]:
    import numpy as np

    from .subgroups import ethnicity_labels

    ages = np.arange(18, 86)
    p_age = np.where(ages < 65, 1.0, np.exp(-(ages - 65) / 8.0))
    age = rng.choice(ages, size=n, p=p_age / p_age.sum())
    sex = rng.choice([1, 2], size=n, p=[0.49, 0.51])
    if country.numeric == 702:
        eth = _choice(rng, SG_ETHNICITY, n)
        rel = np.array([_choice(rng, SG_RELIGION[int(e)], 1)[0] for e in eth])
    else:
        codes = sorted(ethnicity_labels(country.numeric))
        if codes:
            share = 0.6 ** np.arange(len(codes))
            eth = _choice(rng, dict(zip(codes, share)), n)
        else:
            eth = np.full(n, -4)
        rel = _choice(rng, GENERIC_RELIGION, n)
    young = (age < 40).astype(float)
    edu_shift = 1.2 * young - 0.8 * (age >= 60)
    isced = np.clip(np.round(rng.normal(3.8 + edu_shift, 1.8)), 0, 8).astype(int)
    income = np.clip(np.round(rng.normal(3.2 + 0.45 * isced, 1.8)), 1, 10).astype(int)
    mid_marital = rng.choice([1, 6, 3, 4, 2, 5], size=n, p=[0.70, 0.17, 0.06, 0.02, 0.03, 0.02])
    marital = np.where(age < 27, rng.choice([6, 1, 2], size=n, p=[0.85, 0.12, 0.03]),
                       np.where(age > 70, rng.choice([1, 5, 3, 6], size=n, p=[0.55, 0.35, 0.05, 0.05]), mid_marital))
    mid_work = rng.choice([1, 2, 3, 5, 7, 8], size=n, p=[0.62, 0.1, 0.11, 0.1, 0.04, 0.03])
    employment = np.where(age < 24, rng.choice([6, 1, 2, 7], size=n, p=[0.6, 0.25, 0.1, 0.05]),
                          np.where(age >= 63, rng.choice([4, 2, 5, 1], size=n, p=[0.6, 0.12, 0.13, 0.15]), mid_work))
    urban = np.ones(n, dtype=int) if country.numeric == 702 else rng.choice([1, 2], size=n, p=[0.7, 0.3])
    return {"age": age, "sex": sex, "eth": eth, "rel": rel, "isced": isced, "income": income,
            "marital": marital, "employment": employment, "urban": urban}


def _traits(rng: np.random.Generator, d: dict[str, np.ndarray], country: Country) -> np.ndarray:
    """(n, 3): traditional, survival, religiosity, each ~N(shift, 1)."""
    import numpy as np

    n = len(d["age"])
    z_age = (d["age"] - 45) / 15.0
    z_edu = (d["isced"] - 4) / 2.0
    z_inc = (d["income"] - 5) / 2.5
    female = (d["sex"] == 2).astype(float)
    relig = np.array([RELIGIOSITY.get(int(r), 0.0) for r in d["rel"]]) + 0.25 * z_age
    eth_shift = np.zeros(n)
    if country.numeric == 702:
        eth_shift = np.select([d["eth"] == 702006, d["eth"] == 702003, d["eth"] == 702001],
                              [0.5, 0.3, -0.6], 0.0)
    trad = 0.55 * z_age - 0.45 * z_edu + 0.5 * relig + eth_shift + 0.1 * female
    surv = 0.35 * z_age - 0.3 * z_edu - 0.4 * z_inc + 0.15 * female
    noise = rng.normal(size=(n, 3))
    return np.column_stack([trad, surv, relig]) + noise


def generate_frame(country: str | int | Country = "SG", n: int = 2012, seed: int = 0) -> pd.DataFrame:
    """All 455 official columns for ``n`` synthetic respondents (strings for the string columns)."""
    import numpy as np
    import pandas as pd

    from .questions import load_bank

    if n < 1:
        raise ConfigError(f"--n must be a positive number of respondents, got {n}")
    if n > MAX_RESPONDENTS:  # a typo like 100000000 would otherwise exhaust memory, not fail
        raise ConfigError(f"--n {n} is too large: at most {MAX_RESPONDENTS:,} respondents (all of WVS Wave 7 "
                          f"has ~97,000)")
    ctry = country if isinstance(country, Country) else resolve_country(country)
    rng = np.random.default_rng([int(seed), ctry.numeric, MODEL_VERSION])
    d = _demographics(rng, ctry, n)
    traits = _traits(rng, d, ctry)
    header = official_header()
    cols: dict[str, object] = {h: np.full(n, -4, dtype=np.int64) for h in header}
    cow_num, cow_alpha = COW.get(ctry.numeric, (-5, ctry.alpha3))
    cols.update({
        "version": [MARKER_VERSION] * n, "doi": [MARKER_DOI] * n, "A_YEAR": np.full(n, 2020),
        "B_COUNTRY": np.full(n, ctry.numeric), "B_COUNTRY_ALPHA": [ctry.alpha3] * n,
        "C_COW_NUM": np.full(n, cow_num), "C_COW_ALPHA": [cow_alpha] * n,
        "D_INTERVIEW": ctry.numeric * 1_000_000 + 70_000 + np.arange(1, n + 1),
        "J_INTDATE": 20200100 + rng.integers(1, 29, n) + 100 * rng.integers(0, 3, n),
        "FW_START": np.full(n, 202001), "FW_END": np.full(n, 202003), "Q_MODE": np.full(n, 1),
        "N_REGION_ISO": [f"{ctry.alpha2}-{r:02d}" for r in rng.integers(1, 6, n)],
        "LNGE_ISO": ["en"] * n, "H_URBRURAL": d["urban"], "H_SETTLEMENT": np.where(d["urban"] == 1, 1, 5),
        "Q260": d["sex"], "Q261": 2020 - d["age"], "Q262": d["age"],
        "X003R": np.searchsorted([25, 35, 45, 55, 65], d["age"], side="right") + 1,
        "X003R2": np.searchsorted([30, 50], d["age"], side="right") + 1,
        "Q273": d["marital"], "Q275": d["isced"], "Q275R": np.select([d["isced"] <= 2, d["isced"] <= 4], [1, 2], 3),
        "Q279": d["employment"], "Q288": d["income"], "Q288R": np.select([d["income"] <= 3, d["income"] <= 7], [1, 2], 3),
        "Q289": d["rel"], "Q290": d["eth"], "Q263": np.full(n, 1), "Q287": np.clip(6 - d["income"] // 2, 1, 5),
    })
    w = np.exp(rng.normal(0.0, 0.25, n))
    w = w / w.mean()
    cols["W_WEIGHT"] = np.round(w, 6)
    cols["S018"] = np.round(w * 1000.0 / n, 8)
    cols["PWGHT"] = np.round(w, 6)
    skip = set(NOT_ASKED.get(ctry.alpha2, ()))
    for q in load_bank().values():
        if q.id not in header or q.id in skip:
            continue
        load, cuts = _item_params(q.id, q.k)
        latent = traits @ load + rng.normal(size=n)
        option = np.searchsorted(cuts, latent)
        codes = np.array([cs[0] for cs in q.codes], dtype=np.int64)[option]
        dropped = _dropped_code(q)
        u = rng.random(n)
        if dropped is not None:
            codes = np.where(u < 0.02, dropped, codes)
        codes = np.where((u >= 0.02) & (u < 0.045), -1, codes)  # don't know
        codes = np.where((u >= 0.045) & (u < 0.06), -2, codes)  # no answer
        cols[q.id] = codes
    return pd.DataFrame({h: cols[h] for h in header})


def _dropped_code(q) -> int | None:
    """A valid WVS code that answer_adjustment drops (e.g. Q254 5 'I am not [nationality]'), if any."""
    dropped = {"Q111": 3, "Q221": 4, "Q222": 4, "Q254": 5}
    return dropped.get(q.id)


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """Official CSV layout: ``;``, UTF-8 BOM, every header name and string value in double quotes."""
    import csv

    text = frame.to_csv(sep=";", index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    return b"\xef\xbb\xbf" + text.encode("utf-8")


def write_synthetic(path: str | Path, country: str | int = "SG", n: int = 2012, seed: int = 0) -> Path:
    """Write a synthetic file atomically; same arguments give the same bytes."""
    return atomic_write_bytes(path, to_csv_bytes(generate_frame(country, n, seed)))


def demo_path(country: str | int = "SG", seed: int = 0, n: int = 2012) -> Path:
    """Cached demo file under cache_root()/synthetic/, generated on first use."""
    from .embedded import cache_root

    ctry = resolve_country(country)
    path = cache_root() / "synthetic" / f"wvs7-synthetic-v{MODEL_VERSION}-{ctry.alpha3}-n{n}-seed{seed}.csv"
    if not path.is_file():
        write_synthetic(path, ctry.alpha2, n, seed)
    return path


def demo_survey(country: str | int = "SG", seed: int = 0) -> SurveyData:
    """Load the synthetic demo sample for ``country`` through the real loader."""
    from .survey import load_survey

    ctry = resolve_country(country)
    return load_survey(demo_path(ctry.alpha2, seed), ctry)
