"""Test kits: fakes, fixtures and fault tools for the tests and the benchmarks.

Not part of the product: ``pyproject.toml`` does not install this package (room PCs never get
it) and no product module imports it (``tests/test_layers.py`` checks).  Run from a checkout:
the tests put the repository root on ``sys.path`` (``pythonpath`` in ``pyproject.toml``).

* :mod:`testkit.capture` — a test/bench hub (``python -m testkit.capture``), ``DirSegmentStore``,
  ``TcpProxy``, ``NetnsLink``, ``make_clip``, ``write_config``;
* :mod:`testkit.dashboard` — ``make_services`` with fakes, ``add_event``, role users;
* :mod:`testkit.hub` — Chromium settings and a whole-system config for browser tests.
"""
