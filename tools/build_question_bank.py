"""Build the shipped question bank and country tables from the WVS7 reference files.

Run once by a maintainer (``python tools/build_question_bank.py [REFERENCE_DIR]``);
the outputs ``audit/data/questions.json``, ``countries.json``, ``ethnicity.json`` and
``wvs7_header.json`` (the official per-country CSV column order)
are committed so the package never needs the reference files at run time.
Only question wording, answer labels and code lists are copied: no respondent data.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "audit" / "data"
DEFAULT_REF = Path("/work/shared/reference/wvs7")

# Items outside question_metadata.json that still ask for a value or opinion.
# (Q82 is a country-specific regional body, Q91-Q93 are knowledge tests, Q223 is party choice.)
EXTRA_ITEMS: dict[str, tuple[str, str, bool]] = {
    # id: (prompt text, category, ordinal)
    "Q42": ("Which of the following best describes your own opinion of the society we live in?",
            "Social Values, Norms, Stereotypes", False),
    "Q83": ("How much confidence do you have in the following organization: The United Nations (UN)?",
            "Social Capital, Trust and Organizational Membership", True),
    "Q84": ("How much confidence do you have in the following organization: The International Monetary Fund (IMF)?",
            "Social Capital, Trust and Organizational Membership", True),
    "Q85": ("How much confidence do you have in the following organization: The International Criminal Court (ICC)?",
            "Social Capital, Trust and Organizational Membership", True),
    "Q86": ("How much confidence do you have in the following organization: The North Atlantic Treaty Organization (NATO)?",
            "Social Capital, Trust and Organizational Membership", True),
    "Q87": ("How much confidence do you have in the following organization: The World Bank?",
            "Social Capital, Trust and Organizational Membership", True),
    "Q88": ("How much confidence do you have in the following organization: The World Health Organization (WHO)?",
            "Social Capital, Trust and Organizational Membership", True),
    "Q89": ("How much confidence do you have in the following organization: The World Trade Organization (WTO)?",
            "Social Capital, Trust and Organizational Membership", True),
    "Q90": ("International organizations can be effective or democratic; which matters more to you: "
            "being effective or being democratic?", "Political Culture and Political Regimes", True),
    "Q105": ("What is your affiliation to any other voluntary organization?",
             "Social Capital, Trust and Organizational Membership", True),
    "Q152": ("Which of the following should be the most important aim of this country for the next ten years?",
             "Postmaterialist Index", False),
    "Q153": ("Which of the following should be the second most important aim of this country for the next ten years?",
             "Postmaterialist Index", False),
    "Q154": ("Which of the following do you consider the most important?", "Postmaterialist Index", False),
    "Q155": ("Which of the following do you consider the second most important?", "Postmaterialist Index", False),
    "Q156": ("Which of the following do you consider the most important for society?", "Postmaterialist Index", False),
    "Q157": ("Which of the following do you consider the second most important for society?",
             "Postmaterialist Index", False),
}

# Wording fixes for metadata texts that are not standalone questions or have slips.
TEXT_OVERRIDES: dict[str, str] = {
    "Q174": "Which is the basic meaning of religion to you: to follow religious norms and ceremonies, "
            "or to do good to other people?",
    "Q175": "Which is the basic meaning of religion to you: to make sense of life after death, "
            "or to make sense of life in this world?",
    "Q111": "Which comes closer to your view: protecting the environment should be given priority, even if it "
            "causes slower economic growth and some loss of jobs, or economic growth and creating jobs should be "
            "the top priority, even if the environment suffers to some extent?",
}
WORDING_FIXES = [
    ("if it in the near future", "if it were to happen in the near future"),
    ("how much you trust", "how much do you trust"),
    ("how much confidence you have", "how much confidence do you have"),
    ("how often you use", "how often do you use"),
    ("how often you or your family have experienced", "how often have you or your family experienced"),
    ("your parents standard", "your parents' standard"),
    ('statement: "on the whole, women are less corrupt than men"?',
     "statement: On the whole, women are less corrupt than men?"),
]
OPTION_OVERRIDES: dict[str, list[str]] = {
    **{f"Q{i}": ["Yes", "No"] for i in range(7, 27)},  # "Important/Mentioned" vs "Not mentioned"
    "Q56": ["Better off", "About the same", "Worse off"],
    "Q111": ["Protecting the environment", "Economic growth and creating jobs"],
    # the codebook labels code 1 "Rather bad"; the questionnaire's scale (and its question) say "very bad"
    "Q121": ["Very bad", "Quite bad", "Neither good, nor bad", "Quite good", "Very good"],
}
CORE = [
    "Q1", "Q6", "Q8", "Q22", "Q29", "Q33", "Q36", "Q45", "Q46", "Q49", "Q57", "Q62", "Q65", "Q71",
    "Q106", "Q111", "Q121", "Q131", "Q150", "Q151", "Q152", "Q158", "Q164", "Q171", "Q177", "Q182",
    "Q184", "Q186", "Q195", "Q199", "Q238", "Q240", "Q250", "Q254",
]
PREFIX = re.compile(r"^On a scale of -?\d+ to \d+, -?\d+ meaning '(.*?)' and \d+ meaning '(.*?)',\s*", re.S)
ALPHA2 = {  # ISO 3166-1 alpha-2 by WVS numeric code; 909 (Northern Ireland) has none, XI is the UK's own code
    8: "AL", 20: "AD", 31: "AZ", 32: "AR", 36: "AU", 40: "AT", 50: "BD", 51: "AM", 68: "BO", 70: "BA",
    76: "BR", 100: "BG", 104: "MM", 112: "BY", 124: "CA", 152: "CL", 156: "CN", 158: "TW", 170: "CO",
    191: "HR", 196: "CY", 203: "CZ", 208: "DK", 218: "EC", 231: "ET", 233: "EE", 246: "FI", 250: "FR",
    268: "GE", 276: "DE", 300: "GR", 320: "GT", 344: "HK", 348: "HU", 352: "IS", 360: "ID", 364: "IR",
    368: "IQ", 380: "IT", 392: "JP", 398: "KZ", 400: "JO", 404: "KE", 410: "KR", 417: "KG", 422: "LB",
    428: "LV", 434: "LY", 440: "LT", 446: "MO", 458: "MY", 462: "MV", 484: "MX", 496: "MN", 499: "ME",
    504: "MA", 528: "NL", 554: "NZ", 558: "NI", 566: "NG", 578: "NO", 586: "PK", 604: "PE", 608: "PH",
    616: "PL", 620: "PT", 630: "PR", 642: "RO", 643: "RU", 688: "RS", 702: "SG", 703: "SK", 704: "VN",
    705: "SI", 716: "ZW", 724: "ES", 752: "SE", 756: "CH", 762: "TJ", 764: "TH", 788: "TN", 792: "TR",
    804: "UA", 807: "MK", 818: "EG", 826: "GB", 840: "US", 858: "UY", 862: "VE", 909: "XI",
}
ALPHA3_FIX = {344: "HKG", 643: "RUS", 752: "SWE"}
ISO_ALPHA3 = {504: "MAR"}  # WVS writes MOR for Morocco
ETHNICITY_OVERRIDES = {
    "702001": "Caucasian", "702003": "Indian", "702004": "Chinese", "702006": "Malay",
    "702008": "Eurasian", "702999": "Other",
}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def standalone(text: str) -> str:
    text = PREFIX.sub("", text).strip()
    for old, new in WORDING_FIXES:
        text = text.replace(old, new)
    if "where does your opinion fall" in text:
        raise ValueError(text)
    return text[0].upper() + text[1:]


def opinion_text(raw: str) -> str:
    """'On a scale ..., where does your opinion fall?' -> a standalone either/or question."""
    m = PREFIX.match(raw)
    assert m, raw
    return f"Which comes closer to your view: \"{m.group(1)}\" or \"{m.group(2)}\"?"


def build_options(qid: str, choices: dict[str, str], adjust: dict[str, str],
                  lo: int | None, hi: int | None) -> tuple[list[str], list[list[int]]]:
    raw = {int(c): label.strip() for c, label in choices.items() if int(c) >= 0}
    if qid == "Q105":
        raw = {c: lab for c, lab in raw.items() if c <= 2}
    new: dict[int, list[int]] = {}
    for code in sorted(raw):
        target = adjust.get(str(code), str(code))
        if target == "":
            continue
        new.setdefault(int(target), []).append(code)
    if lo is not None:
        assert sorted(new) == list(range(lo, hi + 1)), (qid, sorted(new), lo, hi)
    numeric = any(raw[c] == str(c) for c in raw)
    labels, codes = [], []
    for n in sorted(new):
        src = n if n in new[n] else new[n][0]
        label = raw[src]
        if numeric:
            label = str(n) if label == str(n) else f"{n} - {label}"
        labels.append(label)
        codes.append(sorted(new[n]))
    if qid in OPTION_OVERRIDES:
        assert len(OPTION_OVERRIDES[qid]) == len(labels), qid
        labels = list(OPTION_OVERRIDES[qid])
    return labels, codes


def build(ref: Path) -> None:
    meta = json.loads((ref / "question_metadata.json").read_text())
    book = json.loads((ref / "codebook.json").read_text())
    adjust_all = json.loads((ref / "answer_adjustment.json").read_text())
    items = {}
    for qid, m in meta.items():
        if m["use_case"] != "value":
            continue
        if qid in TEXT_OVERRIDES:
            text = TEXT_OVERRIDES[qid]
        elif "where does your opinion fall" in m["question"]:
            text = opinion_text(m["question"])
        else:
            text = standalone(m["question"])
        options, codes = build_options(qid, book[qid]["choices"], adjust_all.get(qid, {}),
                                       int(m["answer_scale_min"]), int(m["answer_scale_max"]))
        items[qid] = dict(text=text, category=m["category"], ordinal=m["answer_data_type"] == "ordinal",
                          options=options, codes=codes)
    for qid, (text, category, ordinal) in EXTRA_ITEMS.items():
        options, codes = build_options(qid, book[qid]["choices"], adjust_all.get(qid, {}), None, None)
        items[qid] = dict(text=text, category=category, ordinal=ordinal, options=options, codes=codes)

    def order(q: str) -> tuple[int, str]:
        m = re.match(r"Q(\d+)(.*)", q)
        return (int(m.group(1)), m.group(2))

    questions = []
    for qid in sorted(items, key=order):
        it = items[qid]
        questions.append({
            "id": qid, "text": it["text"], "short": book[qid]["question"].strip(), "category": it["category"],
            "category_slug": slug(it["category"]), "ordinal": it["ordinal"], "options": it["options"],
            "codes": it["codes"], "positions": list(range(len(it["options"]))) if it["ordinal"] else None,
        })
    assert all(q in items and len(items[q]["options"]) <= 10 for q in CORE)
    bank = {"format": "cvaudit-question-bank", "version": 1,
            "source": "WVS Wave 7 master questionnaire, codebook v6.0, question metadata; answer_adjustment.json",
            "sets": {"core": CORE}, "questions": questions}
    (DATA / "questions.json").write_text(json.dumps(bank, indent=1, ensure_ascii=False) + "\n")

    names = book["B_COUNTRY"]["choices"]
    alpha = book["B_COUNTRY_ALPHA"]["choices"]
    by_name = {v.split()[0]: k for k, v in alpha.items()}
    countries = []
    for num, name in sorted(names.items(), key=lambda x: int(x[0])):
        n = int(num)
        a3 = ALPHA3_FIX.get(n) or by_name[name.split()[0]]
        countries.append({"numeric": n, "alpha2": ALPHA2[n], "alpha3": a3, "name": name,
                          "aliases": [ISO_ALPHA3[n]] if n in ISO_ALPHA3 else []})
    (DATA / "countries.json").write_text(json.dumps({"countries": countries}, indent=1, ensure_ascii=False) + "\n")

    eth: dict[str, dict[str, str]] = {}
    for code, label in book["Q290"]["choices"].items():
        c = int(code)
        if c <= 0:
            continue
        text = ETHNICITY_OVERRIDES.get(code) or re.sub(r"^[A-Z]+:\s*", "", label)
        text = text.replace(", please describe", "").strip()
        text = "Other" if text in ("Others", "Other") else text
        eth.setdefault(str(c // 1000), {})[code] = text
    (DATA / "ethnicity.json").write_text(json.dumps(eth, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    header_line = [ln for ln in (ref / "OFFICIAL_FORMAT.md").read_text().splitlines() if ln.startswith('"version";')][0]
    header = [h.strip('"') for h in header_line.split(";")]
    assert len(header) == 455, len(header)
    (DATA / "wvs7_header.json").write_text(json.dumps({"per_country_csv": header}) + "\n")
    print(f"{len(questions)} questions, {len(countries)} countries, {sum(map(len, eth.values()))} ethnic codes")


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_REF)
