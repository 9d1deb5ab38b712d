"""How often the site report's drift rule alarms on a week with no drift, and how often it catches a shift.

    PYTHONPATH=src python bench/site_drift_null.py

Draws a reference of ``reference_min`` probabilities and weeks of ``week_min`` from the same Beta distribution
(no drift) or a shifted one, and counts the weeks the report's rule calls watch and alarm.
"""

from __future__ import annotations

import numpy as np

from pneumo.site.report import ReportRules, drift


def rates(rules: ReportRules, reference: tuple[float, float], week: tuple[float, float], trials: int,
          rng: np.random.Generator) -> tuple[float, float]:
    statuses = [drift(rng.beta(*reference, rules.reference_min), rng.beta(*week, rules.week_min), rules)["status"]
                for _ in range(trials)]
    return statuses.count("watch") / trials, statuses.count("alarm") / trials


def main() -> None:
    rules, rng = ReportRules(), np.random.default_rng(0)
    print(f"reference {rules.reference_min}, week {rules.week_min}, watch {rules.psi_watch}, alarm {rules.psi_alarm}")
    for name, reference, week in (("no drift, mostly normal", (2, 8), (2, 8)),
                                  ("no drift, two peaks", (0.5, 0.5), (0.5, 0.5)),
                                  ("shift Beta(2,8) -> Beta(2.5,7)", (2, 8), (2.5, 7)),
                                  ("shift Beta(2,8) -> Beta(3,6)", (2, 8), (3, 6)),
                                  ("more pneumonia: Beta(.6,.4)", (0.5, 0.5), (0.6, 0.4))):
        watch, alarm = rates(rules, reference, week, 2000, rng)
        print(f"{name:<32} watch {watch:6.1%}  alarm {alarm:6.1%}")


if __name__ == "__main__":
    main()
