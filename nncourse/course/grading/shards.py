"""A class too big for one machine: grade it in shards, then merge (issue 28, item 3).

``nncourse grade SUBMISSIONS --exercise NN --shard K/N --out part-K`` grades the submissions whose
student id falls in shard K of N -- decided by a hash of the id alone, so every machine given the
same folder agrees without talking to the others -- and writes a partial gradebook plus
``shard.json``. ``nncourse grade merge part-1 part-2 ... --out grades-NN`` checks that the parts
belong together (same exercise, same master notebook, same N, each shard once, no student in two
parts), then writes the one gradebook, feedback set and summary that a single machine would have.
Any scheduler can run the shards: a Slurm job array, a GitHub Actions matrix (docs/grading.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from nncourse.course.grading.batch import Entry, ExerciseGrade, Grade

__all__ = ["parse_shard", "in_shard", "select", "shard_record", "load_part", "merge"]

SHARD_FILE = "shard.json"


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``; a clear ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"--shard must be K/N with 1 <= K <= N, e.g. 2/3; got {text!r}")
    return int(m.group(1)), int(m.group(2))


def in_shard(student: str, k: int, n: int) -> bool:
    """Whether ``student`` belongs to shard ``k`` of ``n`` (a hash of the id: stable anywhere)."""
    digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def select(entries: list[Entry], k: int, n: int) -> list[Entry]:
    return [e for e in entries if in_shard(e.student, k, n)]


def master_digest(master_path: Path) -> str:
    return hashlib.sha256(Path(master_path).read_bytes()).hexdigest()


def shard_record(k: int, n: int, exercise: str, master_path: Path, entries: list[Entry],
                 everyone: list[Entry]) -> dict:
    """What ``merge`` needs to check a part: which shard, of what, and each row's place in the
    whole folder's listing (so the merged gradebook keeps a single machine's order)."""
    place = {id(e): i for i, e in enumerate(everyone)}
    return {"shard": [k, n], "exercise": f"{int(exercise):02d}", "master": Path(master_path).name,
            "master_sha256": master_digest(master_path),
            "order": [place[id(e)] for e in entries]}


def _grade_from(record: dict) -> Grade:
    fields = {k: record[k] for k in Grade.__dataclass_fields__ if k in record}
    fields["exercises"] = [ExerciseGrade(**{k: e[k] for k in ExerciseGrade.__dataclass_fields__
                                            if k in e}) for e in record.get("exercises", [])]
    return Grade(**fields)


def load_part(folder: Path) -> tuple[dict, list[Grade]]:
    """A part's ``shard.json`` and its grades (from ``grades.json``)."""
    folder = Path(folder)
    try:
        info = json.loads((folder / SHARD_FILE).read_text())
        records = json.loads((folder / "grades.json").read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"{folder} is not a shard's output ({Path(exc.filename).name} is "
                         "missing): grade with --shard K/N first") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{folder}: a damaged file ({exc.msg})") from None
    return info, [_grade_from(r) for r in records]


def merge(folders: list[Path]) -> tuple[dict, list[Grade]]:
    """The parts' grades as one list (in the order a single machine gives), after checking them.

    Raises ValueError naming the problem: parts of other exercises or masters, a different N,
    a shard given twice, a student in two parts, or shards missing.
    """
    if not folders:
        raise ValueError("merge needs the folders written by grade --shard K/N")
    parts = [(Path(f), *load_part(f)) for f in folders]
    first = parts[0][1]
    n = first["shard"][1]
    seen: dict[int, Path] = {}
    owner: dict[str, Path] = {}
    rows: list[tuple[int, Grade]] = []
    for folder, info, part in parts:
        for key in ("exercise", "master_sha256"):
            if info[key] != first[key]:
                raise ValueError(f"{folder} was graded with another {key.replace('_', ' ')} "
                                 f"({info[key]}) than {parts[0][0]} ({first[key]})")
        k, nk = info["shard"]
        if nk != n:
            raise ValueError(f"{folder} is shard {k}/{nk}, but {parts[0][0]} is one of {n}")
        if k in seen:
            raise ValueError(f"shard {k}/{n} is given twice: {seen[k]} and {folder}")
        seen[k] = folder
        order = info.get("order")
        if not isinstance(order, list) or len(order) != len(part):
            raise ValueError(f"{folder}: shard.json does not match its grades.json")
        for g in part:
            if owner.get(g.student, folder) != folder:
                raise ValueError(f"student {g.student!r} is in both {owner[g.student]} and "
                                 f"{folder}: the parts overlap")
            owner[g.student] = folder
        rows += zip(order, part)
    missing = sorted(set(range(1, n + 1)) - set(seen))
    if missing:
        raise ValueError(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing: the "
                         "gradebook would lack their students")
    places = [i for i, _ in rows]
    if len(set(places)) != len(places):
        raise ValueError("two parts claim the same submission: were they graded from different "
                         "folders?")
    rows.sort(key=lambda r: r[0])
    return ({"exercise": first["exercise"], "master": first["master"],
             "master_sha256": first["master_sha256"], "shards": n}, [g for _, g in rows])
