"""The CI switch (issue 16, item 19): any usual truthy ``CI`` makes a missing service a
failure instead of a skip, the same rule in Python (tests.conftest.in_ci) and in
scripts/services.sh."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT, in_ci

TRUTHY = ["1", "true", "TRUE", "True", "yes", "YES", "on", " true "]
FALSY = ["", "0", "false", "no", "off", "nope"]


@pytest.mark.parametrize("value", TRUTHY + FALSY)
def test_q19_ci_switch_accepts_any_truthy_value(value: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is (value in TRUTHY)


def test_q19_ci_switch_unset_is_not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert in_ci() is False


@pytest.mark.parametrize("value", TRUTHY + FALSY)
def test_q19_services_script_uses_the_same_rule(value: str) -> None:
    """scripts/services.sh's ``in_ci`` (its definition only, not the script's service
    start-up) agrees with :func:`in_ci` for every value."""
    script = (ROOT / "scripts" / "services.sh").read_text()
    [definition] = [line for line in script.splitlines() if line.startswith("in_ci()")]
    done = subprocess.run(["bash", "-c", f"{definition}\nin_ci"], env={"CI": value},
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == (0 if value in TRUTHY else 1), done.stderr


def test_q19_test_script_defaults_to_ci() -> None:
    """A local ``scripts/test.sh`` run fails, rather than skips, like CI does."""
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert 'export CI=${CI:-true}' in script
