"""How long the site report takes on a history of N analyses (a third of them reviewed), SQLite.

    PYTHONPATH=src python bench/site_report_scale.py --rows 20000

The page's Site figures card and `pneumo site report` both build it from the whole history on each call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from pneumo.service.history import open_history
from pneumo.service.history_schema import analyses, reviews
from pneumo.service.site_data import site_report


def seed(url: str, rows: int, rng: np.random.Generator) -> None:
    history = open_history(url)
    start = np.datetime64("2026-01-05T08:00")
    values, labels = [], []
    for i in range(rows):
        p = float(rng.beta(0.6, 0.6))
        created = str(start + np.timedelta64(int(i * 365 * 24 * 60 / rows), "m")) + ":00.000Z"
        values.append({"created": created, "image_sha256": f"{i:064x}", "file_type": "png", "model_version": "v",
                       "result": json.dumps({"label": "PNEUMONIA" if p >= 0.5 else "NORMAL", "probability": p,
                                             "out_of_distribution": bool(rng.random() < 0.05)}),
                       "source": "upload", "model_id": "site@0123456789ab"})
        labels.append("PNEUMONIA" if rng.random() < p else "NORMAL")
    with history.engine.begin() as connection:
        connection.execute(sa.insert(analyses), values)
        connection.execute(sa.insert(reviews), [{"analysis_id": i + 1, "created": values[i]["created"],
                                                 "reviewer": "r", "label": labels[i], "source": "import"}
                                                for i in range(0, rows, 3)])
    history.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'h.sqlite3'}"
        seed(url, args.rows, np.random.default_rng(0))
        history = open_history(url)
        try:
            for attempt in range(3):
                started = time.perf_counter()
                report = site_report(history.engine)
                print(f"{args.rows} analyses, {len(report['models'][0]['weeks'])} weeks: "
                      f"{time.perf_counter() - started:.2f} s")
        finally:
            history.close()


if __name__ == "__main__":
    main()
