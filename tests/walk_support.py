"""A person at a terminal, walking a procedure of the docs in a fresh copy of the project.

- ``fresh_copy``: the working tree's files (``git ls-files``: what a clone of this commit holds) in a new directory
  that is its own git repository, with the installed toolchain (``.venv``, ``node_modules``, …) linked in, so the
  scripts' set-up finds it installed instead of installing it again. Its env files start as the template ships them
  (nothing bootstrapped, nothing handed over), since the walk starts from an empty account.
- ``procedure``: the command blocks of one section of a document, in order. A ```` ```sh ```` block is a command
  block; a ```` ```toml ```` block whose first line is ``# envs/<file>.toml`` is an edit a person makes to that file.
  A block that cannot run here is a ```` ```text ```` block, and the document says why beside it.
- ``Terminal.run``: one block, run by bash from the project root in a pseudo-terminal, as typed; Terraform's
  approval prompt ("Enter a value:") is answered ``yes``, as the person reading the plan would.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# installed by scripts/env.sh from the lock files; linked, not reinstalled (their stamps travel with them)
TOOLCHAIN = (".venv", ".tools", "node_modules", "tools/checkov/.venv")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROMPT = "Enter a value:"


def fresh_copy(target: Path) -> Path:
    """The project as a clone of the working tree's commit would hold it, plus the installed toolchain."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not any(name == t or name.startswith(f"{t}/") for t in TOOLCHAIN):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for name in TOOLCHAIN:
        if (ROOT / name).exists():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).symlink_to(ROOT / name)
    # the walk starts from an empty account: the env files as before any bootstrap or hand-over, whatever this
    # repository's own environments have reached
    for path in (target / "envs").glob("*.toml"):
        text = re.sub(r'^own_backend = "s3"', 'own_backend = "local"', path.read_text(), flags=re.M)
        path.write_text(re.sub(r"^handed_over = true", "handed_over = false", text, flags=re.M))
    git = ["git", "-c", "user.name=walk", "-c", "user.email=walk@example.invalid"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh clone"]):
        subprocess.run([*git, *command], cwd=target, check=True, capture_output=True)
    return target


@dataclass(frozen=True)
class Block:
    kind: str  # "sh", "toml" (an edit of an env file) or "text" (not run here)
    text: str
    line: int  # where it starts in the document

    @property
    def edited_file(self) -> str:
        first = self.text.splitlines()[0]
        if not first.startswith("# envs/"):
            raise ValueError(f"line {self.line}: a toml edit block starts with '# envs/<file>.toml'")
        return first[2:].strip()


def procedure(document: Path, heading: str) -> list[Block]:
    """The fenced blocks under ``heading`` (to the next heading of the same or a higher level), in order."""
    lines = document.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        raise AssertionError(f"{document}: no heading {heading!r}")
    level = len(heading) - len(heading.lstrip("#"))
    blocks, fence, body = [], None, []
    for number, line in enumerate(lines[start + 1 :], start + 2):
        stripped = line.strip()
        if fence is None and stripped.startswith("#") and not stripped.startswith("#" * (level + 1)):
            break
        if fence is None and stripped.startswith("```") and len(stripped) > 3:
            fence, body, first, indent = stripped[3:], [], number, len(line) - len(line.lstrip())
        elif fence is not None and stripped == "```":
            blocks.append(Block(fence, "\n".join(body), first))
            fence = None
        elif fence is not None:
            body.append(line[indent:] if line[:indent].isspace() else line.lstrip())
    return blocks


def apply_edit(project: Path, block: Block) -> None:
    """A person's edit of an env file: set each key of the block's tables, keeping every other line."""
    path = project / block.edited_file
    wanted = tomllib.loads(block.text)
    lines = path.read_text().splitlines(keepends=True)
    for table, values in wanted.items():
        for key, value in values.items():
            rendered = f"{key} = {_toml_value(value)}"
            current, header, done = None, None, False
            for i, line in enumerate(lines):
                match = re.match(r"^\s*\[([^\[\]]+)\]", line)
                if match:
                    current = match.group(1).strip()
                    header = i if current == table else header
                elif current == table and re.match(rf"^\s*{re.escape(key)}\s*=", line):
                    comment = line[line.index("#"):].rstrip("\n") if "#" in line.split("=", 1)[1] else ""
                    lines[i] = f"{rendered}   {comment}\n" if comment else f"{rendered}\n"
                    done = True
                    break
            if not done:
                assert header is not None, f"{path}: no [{table}] table for the edit at line {block.line}"
                lines.insert(header + 1, f"{rendered}\n")
    path.write_text("".join(lines))
    assert all(tomllib.loads("".join(lines))[t][k] == v for t, vs in wanted.items() for k, v in vs.items())


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


class Terminal:
    """bash in a pseudo-terminal, from the project root, with the person's environment."""

    def __init__(self, project: Path, env: dict[str, str]):
        self.project = project
        self.env = env
        self.transcript: list[str] = []

    def run(self, script: str, *, timeout: float = 900) -> tuple[int, str]:
        """Run one command block with ``bash -e -o pipefail`` (a failed command stops the block); return the exit
        status and what the terminal showed, colours removed."""
        pid, fd = pty.fork()
        if pid == 0:  # the child: the person's shell
            os.chdir(self.project)
            os.execvpe("bash", ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script], self.env)
        shown, answered, deadline = "", 0, time.monotonic() + timeout
        try:
            while True:
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    raise AssertionError(f"still running after {timeout} s:\n{script}\n{shown[-3000:]}")
                ready, _, _ = select.select([fd], [], [], 1)
                if not ready:
                    continue
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the shell has exited and the terminal closed
                    break
                if not data:
                    break
                shown += _ANSI.sub("", data.decode(errors="replace"))
                if shown.count(PROMPT) > answered and shown.rstrip().endswith(PROMPT):
                    answered += 1
                    os.write(fd, b"yes\n")
        finally:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.transcript.append(f"$ {script}\n{shown}\n[exit {code}]")
        return code, shown
