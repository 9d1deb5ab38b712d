"""Evaluation: score a split with a bundle (``scoring``), figures as dicts (``metrics``), temperature and
threshold rules (``calibration``, ``operating_point``), PNG plots (``plots``), the HTML report (``report``),
and ``pipeline``/``compare``, the library side of ``pneumo evaluate``, ``calibrate`` and ``compare``."""
