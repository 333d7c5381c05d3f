"""Import parsing speed: `python bench/import_parse.py [--rows 1048576] [--encoding utf-8]`.

Writes a synthetic contacts CSV (our export's headers, Vietnamese names, phones in mixed formats,
emails, stages, owners, amounts, tags, dates) to a temporary directory, then times
domain.imports.parse over it — decoding, delimiter and header recognition, phone normalization and
every row's conversion — and prints rows/s and the peak memory of the process (ru_maxrss, which
includes the file's bytes held in memory). Asserts nothing."""

from __future__ import annotations

import argparse
import csv
import random
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from domain.imports import EXPORT_COLUMNS, parse

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi"]
MIDDLE = ["Văn", "Thị", "Hữu", "Minh", "Ngọc", "Thanh", "Quốc", "Đức"]
GIVEN = ["An", "Bình", "Chi", "Dũng", "Hà", "Hải", "Hương", "Khoa", "Linh", "Mai", "Nam", "Phúc"]
STAGES = ["Lead", "MQL", "SQL", "Customer", "Loyal customer", "Unsubscribed", "Disqualified"]
OWNERS = ["Trần Minh", "Lê Hoa", "Phạm Quân", "Alice Smith", "Bob Jones"]
SOURCES = ["Facebook", "Zalo", "Website", "Hội chợ", "Giới thiệu"]
TAGS = ["vip", "hot", "hội chợ 2024", "zalo", "b2b"]


def write_file(path: Path, rows: int, encoding: str) -> None:
    rng = random.Random(7)
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for i in range(rows):
            n = 1_000_000 + i  # unique 7 digits after the operator prefix (a 9-digit mobile)
            prefix = rng.choice(["90", "91", "93", "94", "96", "97", "98", "86", "88", "70"])
            style = i % 4
            if style == 0:
                phone = f"0{prefix}{n}"
            elif style == 1:
                phone = f"0{prefix[:1]}{prefix[1:]}{n // 1000:04d} {n % 1000:03d}"
            elif style == 2:
                phone = f"+84 {prefix}{n // 1000:04d}-{n % 1000:03d}"
            else:
                phone = f"84{prefix}{n}"
            name = f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"
            writer.writerow(
                [
                    i + 1,
                    name,
                    phone,
                    f"user{i}@example.vn" if i % 3 else "",
                    f"EXT-{i}",
                    f"Công ty {i % 5000}",
                    rng.choice(SOURCES),
                    rng.choice(OWNERS),
                    rng.choice(STAGES),
                    f"{rng.randint(1, 900) * 100_000:,}" if i % 2 else "",
                    "; ".join(rng.sample(TAGS, rng.randint(0, 2))),
                    # a distinct moment per row, as real creation times are
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} "
                    f"{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}",
                    f"{1 + i % 28:02d}/{1 + i % 12:02d}/2025" if i % 5 == 0 else "",
                    "",
                ]
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_048_576)
    parser.add_argument("--encoding", default="utf-8", help="utf-8, utf-8-sig, utf-16, cp1258")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "contacts.csv"
        started = time.perf_counter()
        write_file(path, args.rows, args.encoding)
        size = path.stat().st_size
        took = time.perf_counter() - started
        print(f"wrote {args.rows:,} rows, {size / 1e6:.1f} MB, in {took:.1f} s")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with path.open("rb") as stream:
            parsed = parse(
                stream,
                default_region="VN",
                zone=ZoneInfo("Asia/Ho_Chi_Minh"),
                now=datetime.now(UTC),
            )
            count = sum(1 for _ in parsed.rows)
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"parsed {count:,} rows ({len(parsed.errors):,} errors) in {elapsed:.2f} s")
    print(f"{count / elapsed:,.0f} rows/s")
    print(f"peak memory (ru_maxrss): {peak / 1024:.0f} MB (before parsing: {before / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
