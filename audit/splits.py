"""The seed 003 group split: which subgroups a fine-tune may see, and which are kept for testing.

Seed 003 trains on single attributes (sex, age, ethnicity, religion) and on sex crossed
with age, religion and ethnicity, and tests on age x religion, age x ethnicity and
ethnicity x religion. Held-out groups are unseen *combinations*: "25-34, Buddhist"
is never trained on, though "25-34" and "Buddhist" each are (as single-attribute
groups). Overlap is therefore defined as the same group (the same set of
attribute=value pairs), and the split guarantees none by construction: an attribute
combination may belong to the train side or the held-out side, never both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .types import Group

if TYPE_CHECKING:
    from .subgroups import GroupSet
    from .survey import SurveyData

TRAIN_ATTRIBUTES: tuple[str, ...] = ("sex", "age", "ethnicity", "religion")
TRAIN_INTERSECTIONS: tuple[str, ...] = ("sex:age", "sex:religion", "sex:ethnicity")
HELDOUT_INTERSECTIONS: tuple[str, ...] = ("age:religion", "age:ethnicity", "ethnicity:religion")
#: seed 003's specs, in the form :func:`split_groups` takes
SEED003_TRAIN: tuple[str, ...] = TRAIN_ATTRIBUTES + TRAIN_INTERSECTIONS
SEED003_HELDOUT: tuple[str, ...] = HELDOUT_INTERSECTIONS


def combo(attribute: str) -> frozenset[str]:
    """The attribute combination of a spec or group attribute: "sex:age" == "age:sex"."""
    parts = [p.strip() for p in attribute.split(":") if p.strip()]
    if not parts:
        raise ConfigError(f"empty attribute spec {attribute!r}; write e.g. sex or sex:age")
    return frozenset(parts)


def group_key(group: Group | dict[str, Any]) -> frozenset[tuple[str, str]]:
    """A group's identity: its set of (attribute, value) pairs, independent of spelling order."""
    if isinstance(group, Group):
        return frozenset(group.values)
    if group.get("values"):
        return frozenset((str(a), str(v)) for a, v in group["values"])
    attrs = str(group["attribute"]).split(":")
    labels = [s.strip() for s in str(group["group"]).split(", ")]
    if len(labels) != len(attrs):  # a label that itself contains ", ": keep it whole
        labels = [str(group["group"])]
        attrs = [str(group["attribute"])]
    return frozenset(zip(attrs, labels))


@dataclass(frozen=True)
class GroupSplit:
    """Train and held-out groups (kept: at least ``min_size`` respondents), plus the specs used."""

    train: tuple[Group, ...]
    heldout: tuple[Group, ...]
    train_specs: tuple[str, ...] = SEED003_TRAIN
    heldout_specs: tuple[str, ...] = SEED003_HELDOUT
    excluded: tuple[Group, ...] = ()  # below min_size, or of an attribute in neither side

    def role(self, group: Group | dict[str, Any]) -> str:
        """"train", "heldout" or "unseen" (in neither side, e.g. an attribute not in the split)."""
        return role_of(group, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record saved next to the adapter (group identities and sizes, no respondents)."""

        def rows(groups: Iterable[Group]) -> list[dict[str, Any]]:
            return [{"attribute": g.attribute, "group": g.label, "n": g.n, "values": [list(v) for v in g.values]}
                    for g in groups]

        return {
            "train_specs": list(self.train_specs),
            "heldout_specs": list(self.heldout_specs),
            "train": rows(self.train),
            "heldout": rows(self.heldout),
            "excluded": rows(self.excluded),
        }


def check_specs(train_specs: Sequence[str], heldout_specs: Sequence[str]) -> None:
    """Refuse a split in which one attribute combination is on both sides (it would leak)."""
    train = {combo(s) for s in train_specs}
    both = [s for s in heldout_specs if combo(s) in train]
    if both:
        raise ConfigError(f"split spec {both[0]!r} is both trained on and held out; list it on one side only")


def split_groups(groups: Sequence[Group], train_specs: Sequence[str] = SEED003_TRAIN,
                 heldout_specs: Sequence[str] = SEED003_HELDOUT, min_size: int = 1) -> GroupSplit:
    """Assign each group to train or held-out by its attribute combination.

    Groups below ``min_size`` respondents and groups whose combination is in neither
    list go to ``excluded``. A group is never on both sides, and if the same group
    (same attribute=value pairs) appears twice it is kept once.
    """
    check_specs(train_specs, heldout_specs)
    train_c = {combo(s) for s in train_specs}
    held_c = {combo(s) for s in heldout_specs}
    train: list[Group] = []
    held: list[Group] = []
    excluded: list[Group] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for g in groups:
        key = group_key(g)
        if key in seen:
            continue
        seen.add(key)
        c = combo(g.attribute)
        if g.n < min_size:
            excluded.append(g)
        elif c in train_c:
            train.append(g)
        elif c in held_c:
            held.append(g)
        else:
            excluded.append(g)
    return GroupSplit(tuple(train), tuple(held), tuple(train_specs), tuple(heldout_specs), tuple(excluded))


def seed003_groups(survey: SurveyData, min_size: int = 30, train_specs: Sequence[str] = SEED003_TRAIN,
                   heldout_specs: Sequence[str] = SEED003_HELDOUT) -> tuple[GroupSplit, GroupSet]:
    """Build the split's groups from a survey (suppressed groups excluded) and split them."""
    from .subgroups import build_groups

    check_specs(train_specs, heldout_specs)
    specs = [*train_specs, *heldout_specs]
    singles = [s for s in specs if ":" not in s]
    inters = [s for s in specs if ":" in s]
    groupset = build_groups(survey, attributes=singles, intersections=inters, min_size=min_size)
    split = split_groups(groupset.groups, train_specs, heldout_specs, min_size=min_size)
    split = GroupSplit(split.train, split.heldout, split.train_specs, split.heldout_specs,
                       split.excluded + tuple(groupset.suppressed))
    return split, groupset


def role_of(group: Group | dict[str, Any], record: dict[str, Any]) -> str:
    """Role of an audited group in a saved split record: "train", "heldout" or "unseen".

    A group counts as trained on only when that exact group was trained on; a held-out
    *combination* whose values each appear in training is still "heldout".
    """
    key = group_key(group)
    if any(group_key(r) == key for r in record.get("train", ())):
        return "train"
    if any(group_key(r) == key for r in record.get("heldout", ())):
        return "heldout"
    return "unseen"
