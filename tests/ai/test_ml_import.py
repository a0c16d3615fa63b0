"""The [ml] modules are imported once, under a lock, whichever thread asks first: a device page
asks for appliances and forecast at the same time, and two threads importing scikit-learn for
the first time can see it half initialised."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, threading
from wattwatch.ai import service
assert "sklearn" not in sys.modules, "imported too early"
errors = []
gate = threading.Barrier(8)
def ask():
    gate.wait()
    try:
        service.require_ml()
        from wattwatch.ai import forecast
        from wattwatch.ai.models import load_model
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=ask) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
assert not errors
"""


def test_first_ml_import_from_many_threads_at_once() -> None:
    # A fresh interpreter: in this one scikit-learn is imported already.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
