#!/usr/bin/env python
"""Synthesize the Terraform JSON of every environment in envs/ into cdktf.out/.

Composes only: read settings, build the stacks, synth. Settings are validated before the
provider packages are even imported, and the output is written to a scratch directory that
replaces cdktf.out only when synth succeeded, so a failure never leaves half-written stacks.
Each stack's Terraform working directory (``.terraform/``, ``.terraform.lock.hcl``) moves into
the new output: it records the backend the stack was last initialised with, which
``terraform init -migrate-state`` needs to move state from the local file into S3 and back.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from modules.settings import SettingsError, load_all

ROOT = Path(__file__).resolve().parent


def synth(envs_dir: Path, outdir: Path) -> list[str]:
    """Validate every file in ``envs_dir`` and write all stacks to ``outdir``; return the stack names."""
    environments = load_all(envs_dir)  # raises SettingsError before anything is written

    from cdktf import App  # the slow import (jsii + providers) happens only for valid input

    from modules.stacks import build_accounts, build_environment

    outdir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{outdir.name}-", dir=outdir.parent))
    try:
        app = App(outdir=str(scratch))
        # Account stacks first: each is applied once per account, before any environment of it (README).
        stacks = [*build_accounts(app, environments), *(s for env in environments for s in build_environment(app, env))]
        names = [stack.node.id for stack in stacks]
        app.synth()
        moved = keep_working_directories(outdir / "stacks", scratch / "stacks")
        old = outdir.with_name(f".{outdir.name}-old")
        try:
            shutil.rmtree(old, ignore_errors=True)
            if outdir.exists():
                outdir.rename(old)
            scratch.rename(outdir)
        except BaseException:
            if old.exists() and not outdir.exists():
                old.rename(outdir)
            for kept, new in moved:  # back where they were: the scratch directory is about to be deleted
                if new.exists() and not kept.exists():
                    new.rename(kept)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return names
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# What `terraform init` leaves in a stack directory and a re-synth must not take away.
WORKING_DIRECTORY = (".terraform", ".terraform.lock.hcl")


def keep_working_directories(old_stacks: Path, new_stacks: Path) -> list[tuple[Path, Path]]:
    """Move each stack's Terraform working directory from the old output into the new, for the stacks that are in
    both, and return the moves. A stack that is gone takes its working directory with it (as `cdktf synth` removes
    orphaned stacks)."""
    moved = []
    for new in sorted(new_stacks.iterdir()) if new_stacks.is_dir() else ():
        for name in WORKING_DIRECTORY:
            kept = old_stacks / new.name / name
            if kept.exists() and not (new / name).exists():
                kept.rename(new / name)
                moved.append((kept, new / name))
    return moved


def main() -> int:
    envs_dir = Path(os.environ.get("TWENTYCRM_ENVS_DIR", ROOT / "envs"))
    # `cdktf synth` tells the app where to write; plain `python main.py` writes to ./cdktf.out.
    outdir = Path(os.environ.get("CDKTF_OUTDIR", ROOT / "cdktf.out"))
    try:
        names = synth(envs_dir, outdir)
    except SettingsError as err:
        print("Invalid environment settings; nothing was synthesized:", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    print(f"Synthesized {len(names)} stacks into {outdir}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
