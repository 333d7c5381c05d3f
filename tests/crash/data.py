"""The crash tests' data, as CSV files the command line imports: the same for every run (its own
fixed seed, not the crash seed), so that a replayed run starts from the same database.

- `seed.csv`: the contacts of the seeded database, created over two years in every stage;
- `seed-moves.csv`: later stage changes of a third of them (forward moves, wins and losses), so
  that their history and report rows hold paths of several stages and stays that ended;
- `import.csv`: the import the tests kill: new contacts (some of them owned by people and in a
  stage the import creates) and forward moves of known ones;
- `import-padded.csv`: the same with an ignored column that makes it 8 MiB, from which the
  import is read by a child process."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DATA_SEED = 17
# Weighted: a bulk move of the search "Trần" takes about a quarter of the contacts.
FAMILIES = {"Nguyễn": 30, "Trần": 25, "Lê": 10, "Phạm": 10, "Hoàng": 8, "Võ": 7, "Đặng": 5}
MIDDLE = ("Văn", "Thị", "Minh", "Ngọc", "Quốc", "Thanh", "Đức")
GIVEN = ("An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Khoa", "Lan", "Nam", "Phúc", "Sơn", "Vy")
SOURCES = ("Zalo", "Facebook", "Website", "Referral", "")
OWNERS = tuple(f"Agent {n}" for n in range(8))
# The amis template's stages (`stagekeeper init --template amis`), weighted for the seed.
FIRST_STAGES = {"Lead": 6, "MQL": 5, "SQL": 3, "Customer": 2, "Loyal customer": 1}
FIRST_STAGES |= {"Unsubscribed": 1, "Disqualified": 1}
LOST = frozenset({"Unsubscribed", "Disqualified"})
# Moves every rule lets an import make: forward, and never out of a won or lost stage.
FORWARD = {
    "Lead": ("MQL", "SQL", "Customer", "Disqualified"),
    "MQL": ("SQL", "Customer", "Unsubscribed"),
    "SQL": ("Customer", "Disqualified"),
}
NEXT_OPEN = {"Lead": "MQL", "MQL": "SQL", "SQL": "Customer"}
NEW_OWNERS = ("Agent 8", "Agent 9")
NEW_STAGE = "Webinar"
HEADER = (
    "name",
    "phone",
    "email",
    "external_id",
    "company",
    "source",
    "owner",
    "stage",
    "created_at",
    "stage_changed_at",
    "lost_reason",
)
ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
PADDING = 8 * 1024 * 1024 + 4096  # bytes from which an import is read by a child process
FILE_NAMES = ("seed.csv", "seed-moves.csv", "import.csv", "import-padded.csv")


@dataclass(frozen=True)
class Files:
    seed: Path
    seed_moves: Path
    import_file: Path
    import_padded: Path  # the same rows, and a column that makes it 8 MiB


def _name(rng: random.Random) -> str:
    family = rng.choices(list(FAMILIES), weights=list(FAMILIES.values()))[0]
    return f"{family} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"


def _row(number: int, rng: random.Random, stage: str) -> tuple[list[str], datetime]:
    created = ORIGIN - timedelta(days=rng.randrange(730), seconds=rng.randrange(86_400))
    row = [
        _name(rng),
        f"+8490{number:07d}",
        f"c{number}@example.vn",
        f"X{number}",
        f"Công ty số {number % 400}",
        rng.choice(SOURCES),
        rng.choice(OWNERS),
        stage,
        created.isoformat(),
        (created + timedelta(hours=rng.randrange(1, 240))).isoformat(),
        "Price" if stage in LOST else "",
    ]
    return row, created


def write(directory: Path, contacts: int) -> Files:
    """The files for a database of `contacts` contacts (once in `directory`); the import adds
    a fifth as many new ones and moves a tenth of them forward."""
    files = Files(*(directory / name for name in FILE_NAMES))
    done = directory / f".written-{contacts}"
    if done.exists():  # for another kind of database
        return files
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(DATA_SEED)
    stages: dict[int, str] = {}
    created: dict[int, datetime] = {}
    with files.seed.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for number in range(contacts):
            stage = rng.choices(list(FIRST_STAGES), weights=list(FIRST_STAGES.values()))[0]
            row, created[number] = _row(number, rng, stage)
            stages[number] = stage
            writer.writerow(row)
    with files.seed_moves.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("external_id", "stage", "stage_changed_at", "lost_reason"))
        for number in rng.sample(range(contacts), contacts // 3):
            if stages[number] not in FORWARD:
                continue
            stage = rng.choice(FORWARD[stages[number]])
            stages[number] = stage
            at = created[number] + timedelta(days=rng.randrange(11, 90))
            writer.writerow((f"X{number}", stage, at.isoformat(), "Price" if stage in LOST else ""))
    rows = []
    for number in range(contacts, contacts + contacts // 5):
        stage = rng.choices(list(FIRST_STAGES), weights=list(FIRST_STAGES.values()))[0]
        row = _row(number, rng, stage)[0]
        if number % 50 == 0:  # people and a stage the import creates (--create-*)
            row[HEADER.index("owner")] = NEW_OWNERS[number // 50 % len(NEW_OWNERS)]
        if number % 100 == 0:
            row[HEADER.index("stage")] = NEW_STAGE
            row[HEADER.index("lost_reason")] = ""
        rows.append(row)
    movable = [n for n in range(contacts) if stages[n] in NEXT_OPEN]
    for number in sorted(rng.sample(movable, min(len(movable), contacts // 10))):
        row = [""] * len(HEADER)
        row[HEADER.index("external_id")] = f"X{number}"
        row[HEADER.index("stage")] = NEXT_OPEN[stages[number]]
        rows.append(row)
    with files.import_file.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([HEADER, *rows])
    note = "x" * (PADDING // len(rows) + 1)
    with files.import_padded.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*HEADER, "notes"])
        writer.writerows([*row, note] for row in rows)
    done.touch()
    return files
