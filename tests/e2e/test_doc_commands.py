"""Every shell command in README.md and docs/*.md still works.

Each command of a ```bash block is matched by exactly one rule of ``RULES``: it is run here
(in a sandbox folder per page, against a real server where it is a ``curl``), checked
against its program's ``--help`` or a ``make -n`` / ``kubectl kustomize`` dry run, or
skipped for the reason the rule states. A command no rule matches fails the test, so a new
command in the docs needs a decision here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from tests.images import gradient
from tests.server_process import ROOT, RunningServer, start_server, stop_server

pytestmark = pytest.mark.slow

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.M | re.S)
DOCUMENTED_URL = "localhost:8000"


def without_comment(line: str) -> str:
    """``line`` up to a ``#`` that starts a shell comment (outside quotes, after a blank)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def shell_commands(page: Path) -> list[str]:
    """The page's shell commands in order, continuation lines joined, comments removed."""
    commands = []
    for block in SHELL_BLOCK.findall(page.read_text()):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            command = without_comment(line).strip()
            if command:
                commands.append(command)
    return commands


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES_WITH_COMMANDS = [page for page in PAGES if shell_commands(page)]


@dataclass
class Sandbox:
    """A page's working folder: the files its commands name, and a server once one is asked."""

    root: Path
    store: Path
    env: dict[str, str]
    server: RunningServer | None = None
    failures: list[str] = field(default_factory=list)

    def shell(self, command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def check(self, command: str, result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode != 0:
            self.failures.append(f"{command}\n-> exit {result.returncode}\n{result.stderr[-2000:]}")


Action = Callable[[Sandbox, str], None]


def run(sandbox: Sandbox, command: str) -> None:
    sandbox.check(command, sandbox.shell(command))


def help_lists_flags(sandbox: Sandbox, command: str) -> None:
    """The program's ``--help`` names every ``--flag`` the command uses."""
    words = shlex.split(command)
    program = next(i for i, w in enumerate(words) if (i > 2 and w.startswith("-")) or w == "...")
    result = sandbox.shell(shlex.join([*words[:program], "--help"]))
    sandbox.check(command, result)
    for flag in {w.split("=")[0] for w in words if w.startswith("--")}:
        if not re.search(rf"{re.escape(flag)}(?![\w-])", result.stdout):
            sandbox.failures.append(f"{command}\n-> {flag} is not in its --help")


def make_dry_run(sandbox: Sandbox, command: str) -> None:
    sandbox.check(command, sandbox.shell(command.replace("make", "make -n", 1), cwd=ROOT))


def kustomize_render(sandbox: Sandbox, command: str) -> None:
    folder = shlex.split(command)[-1]
    result = sandbox.shell(f"kubectl kustomize {shlex.quote(folder)}", cwd=ROOT)
    sandbox.check(command, result)
    if not re.search(r"^kind: (Deployment|InferenceService)$", result.stdout, re.M):
        sandbox.failures.append(f"{command}\n-> kubectl kustomize rendered no workload")


def curl_against_server(sandbox: Sandbox, command: str) -> None:
    """The request sent to a real server on the sandbox's store (on a free port)."""
    if sandbox.server is None:
        sandbox.server = start_server(sandbox.store, sandbox.root / "server.log")
    result = sandbox.shell(command.replace(DOCUMENTED_URL, sandbox.server.url, 1))
    sandbox.check(command, result)
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        sandbox.failures.append(f"{command}\n-> not JSON: {result.stdout[:500]}")
        return
    if "error" in answer:
        sandbox.failures.append(f"{command}\n-> {answer['error']}")


def skip(reason: str) -> Action:
    def skipped(sandbox: Sandbox, command: str) -> None:
        del sandbox, command  # nothing is run: the reason is in RULES

    skipped.__doc__ = reason
    return skipped


NO_CLUSTER = "needs a Kubernetes cluster; tests/e2e/test_kubernetes.py renders and validates it"
NO_DOCKER = "needs a Docker daemon and a base image: make test-docker builds and runs it"

# (pattern matched at the start of a command, what is done with it). Order matters.
RULES: list[tuple[str, Action]] = [
    (r"curl ", curl_against_server),
    (r"python -m service\.batch --model-store", run),
    (r"python -m service\.batch \.\.\.", help_lists_flags),  # elided arguments, Ray cluster
    (r"\.venv/bin/python -m service\.trainer (synth|fit|evaluate) ", run),
    (r"\.venv/bin/python -m service\.trainer zeroshot ", help_lists_flags),  # needs weights
    # trains three methods x three seeds (minutes); test_numclip_e2e.py runs it on a small budget
    (r"\.venv/bin/python -m service\.trainer compare ", help_lists_flags),
    (r"make ", make_dry_run),  # serve runs until stopped, test runs this test, bench 22 min
    (r"kubectl apply -n oclip -k ", kustomize_render),
    (r"kubectl (create|get|-n oclip get) ", skip(NO_CLUSTER)),
    (r"helm install ", skip(NO_CLUSTER)),
    (r"(STORE=\S+ )?docker ", skip(NO_DOCKER)),
    (r"pip install ", skip("changes the environment; make install installs the project's")),
    (
        r"openapi-python-client generate ",
        skip("tests/e2e/test_client_contract.py installs the generator and runs this command"),
    ),
]


def action_for(command: str) -> Action:
    matches = [action for pattern, action in RULES if re.match(pattern, command)]
    assert matches, f"no rule in RULES for the documented command: {command}"
    return matches[0]


def write_inputs(root: Path) -> None:
    """The files the documented commands name, made here (real photographs for faces)."""
    astronaut = Image.fromarray(skimage.data.astronaut())
    for name in ("photo.jpg", "group.jpg"):
        astronaut.save(root / name, quality=90)
    gradient(seed=1).save(root / "a.jpg", quality=90)
    gradient(seed=2).save(root / "b.png")
    (root / "photos").mkdir()
    astronaut.save(root / "photos" / "astronaut.jpg", quality=90)
    gradient(seed=3).save(root / "photos" / "gradient.png")
    (root / ".venv").symlink_to(Path(sys.prefix))


@pytest.fixture
def sandbox(tmp_path: Path, tiny_store: Path) -> Iterator[Sandbox]:
    write_inputs(tmp_path)
    store = tmp_path / "model_store"
    shutil.copytree(tiny_store, store)
    # `python` is this venv's; `$KEY` is sent and ignored (the server has no keys set).
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    box = Sandbox(tmp_path, store, {**os.environ, "PATH": path, "KEY": "docs-key"})
    yield box
    if box.server is not None:
        stop_server(box.server)


@pytest.mark.parametrize("page", PAGES_WITH_COMMANDS, ids=lambda page: page.name)
def test_documented_commands_work(page: Path, sandbox: Sandbox) -> None:
    for command in shell_commands(page):
        action_for(command)(sandbox, command)
    assert not sandbox.failures, "\n\n".join(sandbox.failures)


def test_every_rule_matches_a_documented_command() -> None:
    """A rule whose command left the docs is removed, so RULES lists only real decisions."""
    commands = [command for page in PAGES for command in shell_commands(page)]
    for pattern, _ in RULES:
        assert any(re.match(pattern, command) for command in commands), pattern


def test_comments_and_continuations_are_read_as_the_shell_does() -> None:
    assert without_comment("make serve   # builds") == "make serve   "
    assert without_comment("curl 'a#b' \"c #d\" # e") == "curl 'a#b' \"c #d\" "
    assert without_comment("# only a comment") == ""


def test_a_continued_command_is_one_command(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```bash\n# a comment\nmake a \\\n    --b  # why\ncurl c\n```\n")
    assert shell_commands(page) == ["make a --b", "curl c"]
