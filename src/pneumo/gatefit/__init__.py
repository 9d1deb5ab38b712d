"""Fitting the chest-X-ray gate (:mod:`pneumo.gate` is what runs at inference): features of the training
X-rays and their acquisition variants (``variants``), non-X-ray images to measure it on (``negatives``), and
``fit``, which stores the gate in the bundle. It runs the Predictor, so it sits above :mod:`pneumo.inference`."""
