"""deploy/microblog-web@.service and microblog-worker@.service: valid units (`systemd-analyze verify`),
with the open-files limit matching MAX_CONNECTIONS."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT

UNITS = ["microblog-web@.service", "microblog-worker@.service"]
CHECKOUT = "/srv/microblog"  # where the shipped units expect the checkout


def setting(unit: str, key: str) -> list[str]:
    """Every value of `key=` in a unit (Environment= may appear several times)."""
    return re.findall(rf"^{key}=(.*)$", (ROOT / "deploy" / unit).read_text(), re.M)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """Both units verify cleanly (no errors, no unknown keys) with this checkout in place of /srv/microblog."""
    for unit in UNITS:  # verify checks that ExecStart's binary exists: point it at this checkout
        (tmp_path / unit).write_text((ROOT / "deploy" / unit).read_text().replace(CHECKOUT, str(ROOT)))
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / u) for u in UNITS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr + result.stdout


def test_web_unit_open_files_cover_max_connections() -> None:
    """LimitNOFILE is at least MAX_CONNECTIONS (each socket is a descriptor), with room for the rest."""
    env = dict(e.split("=", 1) for e in setting("microblog-web@.service", "Environment"))
    (limit,) = setting("microblog-web@.service", "LimitNOFILE")
    assert int(limit) >= int(env["MAX_CONNECTIONS"]) + 100, (limit, env["MAX_CONNECTIONS"])
    assert env["PORT"] == "%i", "the instance name is the port"
    assert setting("microblog-web@.service", "ExecStart") == [f"{CHECKOUT}/.venv/bin/python run.py"]


def test_worker_unit_stops_warm() -> None:
    """The worker gets SIGTERM alone (RQ's warm shutdown) and time to finish its job."""
    assert setting("microblog-worker@.service", "ExecStart") == [f"{CHECKOUT}/.venv/bin/python -m worker"]
    assert setting("microblog-worker@.service", "KillMode") == ["mixed"]
    assert int(setting("microblog-worker@.service", "TimeoutStopSec")[0]) >= 60
