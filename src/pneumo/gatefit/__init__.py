"""Fitting the chest-X-ray gate (:mod:`pneumo.gate` is what runs at inference): non-X-ray images to fit and
measure it on (``negatives``, with CT slices from ``ct`` and ``phantom`` and figures, slides and viewer
screenshots from ``composites``), a held-out share of each kind (``holdout``), the counts (``report``), and
``fit``, which stores the gate in the bundle. It runs the Predictor, so it sits above :mod:`pneumo.inference`."""
