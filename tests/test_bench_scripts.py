"""Every script ``make bench`` runs starts: it imports and parses its options (``--help``).

A bench that no longer imports (a constant moved, a helper renamed) stops ``make bench`` at that
script, and nothing else runs the benches between releases; this catches it in the default suite.
The helpers the Makefile skips (``hubproc``, ``accuracy_merge``) are imported by the others.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _make_bench_scripts() -> list[Path]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    m = re.search(r"for b in bench/\*\.py; do case \$\$b in ([^)]*)\) continue", makefile)
    assert m, "the Makefile's bench target no longer loops over bench/*.py"
    skipped = {ROOT / s for s in m.group(1).split("|")}
    return [p for p in sorted((ROOT / "bench").glob("*.py")) if p not in skipped]


def test_make_bench_skips_only_helpers() -> None:
    names = {p.name for p in _make_bench_scripts()}
    assert {"soak.py", "scale.py", "detector_eval.py", "accuracy.py"} <= names
    assert "hubproc.py" not in names and "accuracy_merge.py" not in names and "memgrowth.py" not in names


@pytest.mark.parametrize("script", _make_bench_scripts(), ids=lambda p: p.name)
def test_bench_script_imports_and_parses_its_options(script: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"{script.name} --help failed:\n{r.stderr[-2000:]}"
    assert "usage:" in r.stdout, r.stdout[:500]


@pytest.mark.parametrize("keep, ending", [
    (False, "pass"), (False, "raise KeyboardInterrupt"), (True, "pass"),
])
def test_tempdir_removed_at_exit_is_gone_when_the_process_ends(keep: bool, ending: str) -> None:
    """The Chromium profiles of the browser tests and the benches' work folders use it: #17 asks
    that tests and benches leave no temporary directories behind — also when the user stops a
    bench with Ctrl-C; ``--keep`` (``keep=True``) leaves the folder for its logs."""
    code = (
        "from pathlib import Path; from testkit.procs import tempdir_removed_at_exit; "
        f"d = Path(tempdir_removed_at_exit('evalwatch-exit-test-', keep={keep})); (d / 'sub').mkdir(); "
        f"(d / 'sub' / 'f').write_text('x'); print(d, flush=True); {ending}"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (r.returncode == 0) == (ending == "pass"), r.stderr[-2000:]
    d = Path(r.stdout.strip())
    assert d.name.startswith("evalwatch-exit-test-")
    try:
        if keep:
            assert (d / "sub" / "f").read_text() == "x", "keep=True removed the folder"
        else:
            assert not d.exists(), f"{d} was left behind"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_latency_bench_refuses_a_window_too_short_for_its_replay_seeks() -> None:
    """With ``--seconds 15`` it used to run for a minute and die in a Playwright timeout: the
    replay opened at a time with no archived footage yet.  Now: exit 2, naming the option."""
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "latency.py"), "--seconds", "15"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout[-1000:] + r.stderr[-1000:]
    assert "--seconds must be at least 40" in r.stderr and "got 15" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_latency_bench_reports_an_unmeasured_figure_as_null_not_nan() -> None:
    """A window in which no alert reached the browser used to print ``nan`` and write ``NaN``
    (not JSON) into ``--json``; now the figure is null / ``n/a`` (and the bench exits 1)."""
    import json

    from bench import latency

    assert latency.figures([3.0, 1.0, 2.0], 50, 95) == {"p50": 2.0, "p95": 3.0, "max": 3.0}
    none = latency.figures([], 50, 95)
    assert json.loads(json.dumps(none, allow_nan=False)) == {"p50": None, "p95": None, "max": None}
    assert latency.fmt(none["p95"], ".3f") == "n/a" and latency.fmt(0.25, ".3f") == "0.250"
    with pytest.raises(ValueError, match="no values"):
        latency.pct([], 50)
