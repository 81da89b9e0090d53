"""The README's transcripts run as written (a doc test), so they cannot drift.

Every ```console block right after a ``<!-- doctest -->`` line is run, in order, in one
bash session against a fresh ``authgate serve`` (``http://localhost:8000`` becomes the
test server's address). A command is a ``$ `` line (continued with a trailing ``\\``);
the lines after it are what the README says it prints. The check is on what cannot
change between runs: every HTTP status line, every response header name (and each
``Set-Cookie``'s cookie name), every JSON member name and every ``"error"`` value.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server

MARK = "<!-- doctest -->"
PORT_IN_README = "http://localhost:8000"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def steps(readme: str) -> list[Step]:
    found: list[Step] = []
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK and i + 1 < len(lines) and \
                lines[i + 1].startswith("```console"):
            i += 2
            while i < len(lines) and not lines[i].startswith("```"):
                line = lines[i]
                if line.startswith("$ "):
                    command = line[2:]
                    while command.endswith("\\") and i + 1 < len(lines):
                        i += 1
                        command = command + "\n" + lines[i]
                    found.append(Step(command))
                elif found and line.strip():
                    found[-1].expected.append(line)
                i += 1
        i += 1
    return found


def _keys(text: str) -> set[str]:
    return set(re.findall(r'"([A-Za-z_]+)":', text))


def check(step: Step, actual: str) -> None:
    where = f"README command:\n{step.command}\nprinted:\n{actual}"
    headers = {line.split(":", 1)[0].lower() for line in actual.splitlines()
               if re.match(r"^[A-Za-z-]+: ", line)}
    cookies = {m.group(1) for m in re.finditer(r"(?im)^set-cookie: ([^=]+)=", actual)}
    for line in step.expected:
        if line.startswith("HTTP/"):
            assert line.split()[1] in re.findall(r"(?m)^HTTP/[\d.]+ (\d{3})", actual), where
        elif re.match(r"^[a-z-]+: ", line):
            name = line.split(":", 1)[0]
            assert name in headers, f"header {name} missing. {where}"
            if name == "set-cookie":
                assert line.split(": ", 1)[1].split("=", 1)[0] in cookies, where
        elif line.lstrip().startswith(("{", "[")):
            missing = _keys(line) - _keys(actual)
            assert not missing, f"members {missing} missing. {where}"
            for code in re.findall(r'"error":"([a-z_]+)"', line):
                assert f'"error":"{code}"' in actual, where


def test_readme_transcripts_run_as_written(make_server: object, tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("jq") is None:
        pytest.fail("the README's transcripts need curl and jq (scripts/install-tools.sh)")
    found = steps((ROOT / "README.md").read_text())
    assert len(found) >= 10, "the README lost its runnable transcripts"
    srv: Server = make_server()  # type: ignore[operator]
    base = srv.url.replace("127.0.0.1", "localhost")
    script = ["set -u"]
    for n, step in enumerate(found):
        script += [f"echo '@@{n}@@'", step.command.replace(PORT_IN_README, base), "echo"]
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    outputs = re.split(r"(?m)^@@\d+@@\n", done.stdout)[1:]
    assert len(outputs) == len(found), done.stdout
    for step, actual in zip(found, outputs, strict=True):
        check(step, actual)
