"""Bootstrap the two stacks that keep Terraform state, and take them apart again (docs/implementation-guide.md).

``scripts/bootstrap <env>``: the account stack of the environment's account, when its state is not in its own bucket
yet, then the environment's state stack. Each is applied on a local state file in the project root
(``terraform.<stack>.tfstate``), its ``own_backend`` is set to ``"s3"`` in the env file(s), and the state is pushed
into the bucket the apply created. The push is checked: every resource of the local file must be listed by
``terraform state list`` from the bucket before the local file is renamed ``….tfstate.moved``.

``scripts/bootstrap <env> --bring-home state|account``: the reverse, for a teardown: the stack's state is pulled from
its bucket into the local file, ``own_backend`` goes back to ``"local"``, and the local state is checked to list every
resource the bucket's did.

Safe to run again after a failure at any point: what each step finds (the local file, the bucket's state object, the
setting) decides what is left to do. A state in the bucket of another lineage than the local file's is never
overwritten, nor a newer one by an older one. Terraform asks before every apply (``--yes`` answers for you).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from modules.settings import SettingsError, load_all  # noqa: E402
from modules.settings.environment import EnvironmentSettings  # noqa: E402

ENVS = Path(os.environ.get("TWENTYCRM_ENVS_DIR", ROOT / "envs"))
OUTDIR = Path(os.environ.get("CDKTF_OUTDIR", ROOT / "cdktf.out"))


class BootstrapError(Exception):
    """A stop with the reason and the fix; nothing after the failed step was done."""


@dataclass(frozen=True)
class StateHolder:
    """One of the two stacks that bootstrap: where its state is, and which env files say so."""

    section: str  # "account" or "state": the TOML table that holds own_backend
    name: str  # the stack's name, cdktf.out/stacks/<name>
    files: tuple[Path, ...]  # every env file whose own_backend decides this stack's backend
    own_backend: str
    bucket: str
    region: str
    account_id: str
    handed_over: tuple[str, ...]  # the environments of ``files`` that CI deploys ([ci] handed_over = true)

    @property
    def key(self) -> str:
        return f"{self.name}/terraform.tfstate"

    @property
    def local_file(self) -> Path:
        # the stacks' LocalBackend path, ../../../terraform.<stack>.tfstate from cdktf.out/stacks/<stack>/
        return OUTDIR.parent / f"terraform.{self.name}.tfstate"

    @property
    def directory(self) -> Path:
        return OUTDIR / "stacks" / self.name

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def holders(env_name: str) -> dict[str, StateHolder]:
    """The account and state stacks of ``env_name``, read from the env files as they are now."""
    environments = {env.name: env for env in load_all(ENVS)}
    if env_name not in environments:
        raise BootstrapError(f"{ENVS}/{env_name}.toml does not exist; environments: {', '.join(sorted(environments))}")
    env = environments[env_name]
    same_account = tuple(ENVS / f"{e.name}.toml" for e in environments.values() if e.account.id == env.account.id)
    return {
        "account": StateHolder(
            section="account",
            name=f"{env.project}-account-{env.account.id}",
            files=same_account,
            own_backend=env.account.own_backend,
            bucket=env.account.state_bucket,
            region=env.account.region,
            account_id=env.account.id,
            handed_over=tuple(e.name for e in environments.values() if e.account.id == env.account.id
                              and e.ci.handed_over),
        ),
        "state": _state_holder(env),
    }


def _state_holder(env: EnvironmentSettings) -> StateHolder:
    return StateHolder(
        section="state",
        name=env.stack_name("state"),
        files=(ENVS / f"{env.name}.toml",),
        own_backend=env.state.own_backend,
        bucket=env.state.bucket,
        region=env.region,
        account_id=env.account.id,
        handed_over=(env.name,) if env.ci.handed_over else (),
    )


# --- the env files -----------------------------------------------------------------------------------------------

_TABLE = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_OWN_BACKEND = re.compile(r'^(\s*own_backend\s*=\s*)"(local|s3)"')


def set_own_backend(paths: tuple[Path, ...], section: str, value: str) -> None:
    """Set ``[section] own_backend = "<value>"`` in every file, keeping every other line and comment. Every new text is
    made and checked before the first file is written, so the files of one account never end up disagreeing."""
    texts = {path: _with_own_backend(path, section, value) for path in paths}
    for path, text in texts.items():
        scratch = path.with_name(f".{path.name}.bootstrap")
        scratch.write_text(text)
        scratch.replace(path)
        print(f"[bootstrap] {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
              f'{section}.own_backend = "{value}" (commit this change)')


def _with_own_backend(path: Path, section: str, value: str) -> str:
    lines = path.read_text().splitlines(keepends=True)
    table, header, done = None, None, False
    for i, line in enumerate(lines):
        match = _TABLE.match(line)
        if match:
            table = match.group(1).strip()
            header = i if table == section else header
            continue
        if table == section and _OWN_BACKEND.match(line):
            lines[i] = _OWN_BACKEND.sub(rf'\g<1>"{value}"', line)
            done = True
            break
    if not done:
        if header is None:
            raise BootstrapError(f"{path}: no [{section}] table; add it (docs/settings.md)")
        lines.insert(header + 1, f'own_backend = "{value}"\n')
    text = "".join(lines)
    if tomllib.loads(text)[section].get("own_backend") != value:
        raise BootstrapError(f"{path}: could not set {section}.own_backend; set it to \"{value}\" by hand")
    return text


# --- terraform, synth and the state object --------------------------------------------------------------------------


def synth() -> None:
    """Write cdktf.out as ``./scripts/synth`` does (``main.py`` is what the cdktf CLI runs)."""
    run([sys.executable, str(ROOT / "main.py")], cwd=ROOT)


def run(command: list[str], *, cwd: Path, capture: bool = False) -> str:
    result = subprocess.run(command, cwd=cwd, text=True, stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        raise BootstrapError(f"`{' '.join(command)}` failed in {cwd} (exit {result.returncode}); fix what it printed "
                             "and run the same scripts/bootstrap command again: it goes on from where it stopped")
    return result.stdout or ""


def terraform(holder: StateHolder, *args: str, capture: bool = False) -> str:
    return run(["terraform", *args], cwd=holder.directory, capture=capture)


def local_state(holder: StateHolder) -> dict[str, Any] | None:
    return json.loads(holder.local_file.read_text()) if holder.local_file.exists() else None


def remote_state(holder: StateHolder) -> dict[str, Any] | None:
    """The state object in the stack's bucket, or None when the bucket or the object does not exist yet."""
    import boto3  # noqa: PLC0415 (only the checks talk to AWS directly)
    from botocore.exceptions import ClientError  # noqa: PLC0415

    s3 = boto3.client("s3", region_name=holder.region)
    try:
        body = s3.get_object(Bucket=holder.bucket, Key=holder.key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchBucket", "NoSuchKey", "404"):
            return None
        raise BootstrapError(f"reading {holder.where}: {err}") from None
    return json.loads(body) if body.strip() else None


def check_account(holder: StateHolder) -> None:
    import boto3  # noqa: PLC0415

    account = boto3.client("sts", region_name=holder.region).get_caller_identity()["Account"]
    if account != holder.account_id:
        raise BootstrapError(f"the credentials are for account {account}, but {holder.files[0]} says account.id = "
                             f'"{holder.account_id}"; use credentials of that account (AWS_PROFILE) and run again')


def addresses(state: dict[str, Any]) -> set[str]:
    """Every resource instance of a state, as ``terraform state list`` names it."""
    found = set()
    for resource in state.get("resources", []):
        prefix = f"{resource['module']}." if resource.get("module") else ""
        prefix += "data." if resource["mode"] == "data" else ""
        base = f"{prefix}{resource['type']}.{resource['name']}"
        for instance in resource.get("instances", []):
            key = instance.get("index_key")
            found.add(base if key is None else f"{base}[{json.dumps(key)}]")
    return found


def objects(state: dict[str, Any]) -> dict[str, object]:
    """Every managed resource instance of a state and the ID of the object it tracks."""
    found = {}
    for resource in state.get("resources", []):
        if resource["mode"] == "managed":
            for instance in resource.get("instances", []):
                address = f"{resource['type']}.{resource['name']}[{json.dumps(instance.get('index_key'))}]"
                found[f"{resource.get('module', '')}{address}"] = instance.get("attributes", {}).get("id")
    return found


def same_lineage(holder: StateHolder, local: dict | None, remote: dict | None) -> None:
    """Refuse two states of different histories, unless the bucket's tracks every object the local file does: that is
    a move made by hand (``terraform init -migrate-state`` gives the copy a new lineage)."""
    tracked = objects(local) if local else {}
    if local and remote and local["lineage"] != remote["lineage"] and not (tracked and tracked.items() <= objects(
        remote
    ).items()):
        raise BootstrapError(
            f"{holder.where} holds a state of lineage {remote['lineage']}, but {holder.local_file} is lineage "
            f"{local['lineage']}: they are two different stacks' histories, and neither is overwritten. Find out which "
            "one is this stack's (terraform state list in each), move the other away, and run again")


# --- the two moves -----------------------------------------------------------------------------------------------


def to_s3(section: str, env_name: str, *, yes: bool) -> None:
    holder = holders(env_name)[section]
    check_account(holder)
    local, remote = local_state(holder), remote_state(holder)
    same_lineage(holder, local, remote)
    if holder.own_backend == "s3" and local is None and remote is None:
        raise BootstrapError(
            f"{holder.files[0]}: {section}.own_backend is \"s3\", but {holder.where} does not exist and there is no "
            f"{holder.local_file}: the stack was never applied. Set own_backend = \"local\" and run again")
    by_hand = bool(local and remote and local["lineage"] != remote["lineage"])  # same objects: same_lineage passed
    if holder.own_backend == "local":
        if remote is None or (local is not None and not by_hand and local["serial"] >= remote["serial"]):
            print(f"[bootstrap] {holder.name}: apply on the local state file {holder.local_file.name}")
            synth()
            terraform(holder, "init", "-reconfigure", "-input=false")
            terraform(holder, "apply", *(["-auto-approve"] if yes else []))
            local = local_state(holder)
        set_own_backend(holder.files, section, "s3")
        holder = holders(env_name)[section]
    synth()
    terraform(holder, "init", "-reconfigure", "-input=false")
    remote = remote_state(holder)
    same_lineage(holder, local, remote)
    moved_by_hand = bool(local and remote and local["lineage"] != remote["lineage"])
    if local is not None and not moved_by_hand and (remote is None or local["serial"] > remote["serial"]):
        print(f"[bootstrap] {holder.name}: push {holder.local_file.name} to {holder.where}")
        terraform(holder, "state", "push", str(holder.local_file))
    listed = set(terraform(holder, "state", "list", capture=True).split())
    missing = addresses(local) - listed if local else set()
    if missing:
        raise BootstrapError(f"{holder.where} lacks {sorted(missing)} of {holder.local_file}; the local file is kept. "
                             "Check `terraform state list` there and run again")
    if local is not None:
        kept = holder.local_file.with_name(f"{holder.local_file.name}.moved")
        if kept.exists():  # an earlier move's copy stays as it is
            kept = kept.with_name(f"{kept.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        holder.local_file.replace(kept)
        print(f"[bootstrap] {holder.name}: the local file is now {kept.name} (a copy; keep it until you have checked "
              "the stack, then delete it)")
    print(f"[bootstrap] {holder.name}: {len(listed)} resources in {holder.where}")


def bring_home(section: str, env_name: str) -> None:
    holder = holders(env_name)[section]
    if holder.handed_over:
        raise BootstrapError(
            f"{', '.join(holder.handed_over)} still handed over to CI ([ci] handed_over = true): a deploy could plan "
            "and apply the stacks while they come apart, and the settings refuse a local backend for an environment "
            "CI deploys. Merge handed_over = false first (docs/implementation-guide.md, \"Tear down an "
            "environment\", step 0); nothing was changed")
    local = local_state(holder)
    if holder.own_backend == "local":
        if local is None:
            raise BootstrapError(f"{holder.files[0]}: {section}.own_backend is already \"local\", but there is no "
                                 f"{holder.local_file}; set it to \"s3\" and run again")
        print(f"[bootstrap] {holder.name}: already home, {len(addresses(local))} resources in {holder.local_file.name}")
        return
    check_account(holder)
    synth()
    terraform(holder, "init", "-reconfigure", "-input=false")
    pulled = terraform(holder, "state", "pull", capture=True)
    if not pulled.strip():
        raise BootstrapError(f"{holder.where} holds no state: nothing to bring home")
    remote = json.loads(pulled)
    same_lineage(holder, local, remote)
    if local is not None and local["lineage"] == remote["lineage"] and local["serial"] > remote["serial"]:
        raise BootstrapError(f"{holder.local_file} (serial {local['serial']}) is newer than {holder.where} (serial "
                             f"{remote['serial']}); it is not overwritten. Move it away if it is stale, and run again")
    scratch = holder.local_file.with_name(f".{holder.local_file.name}.bootstrap")
    scratch.write_text(pulled)
    scratch.replace(holder.local_file)
    set_own_backend(holder.files, section, "local")
    holder = holders(env_name)[section]
    synth()
    terraform(holder, "init", "-reconfigure", "-input=false")
    listed = set(terraform(holder, "state", "list", capture=True).split())
    if listed != addresses(remote):
        raise BootstrapError(f"{holder.local_file} lists {sorted(listed ^ addresses(remote))} differently from "
                             f"{holder.where}; nothing was deleted")
    print(f"[bootstrap] {holder.name}: {len(listed)} resources in {holder.local_file.name}; "
          f"{holder.where} is left as it was")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bootstrap", description=__doc__.split("\n\n")[0])
    parser.add_argument("env", help="the environment, as in envs/<env>.toml")
    parser.add_argument("--bring-home", choices=("state", "account"),
                        help="move that stack's state from its bucket back to the local file (teardown)")
    parser.add_argument("--yes", action="store_true", help="apply without asking (terraform apply -auto-approve)")
    args = parser.parse_args(argv)
    try:
        if args.bring_home:
            bring_home(args.bring_home, args.env)
        else:
            account = holders(args.env)["account"]
            check_account(account)
            if account.own_backend == "local" or remote_state(account) is None:
                to_s3("account", args.env, yes=args.yes)
            else:
                print(f"[bootstrap] {account.name}: already in its bucket")
            to_s3("state", args.env, yes=args.yes)
    except SettingsError as err:
        print("Invalid environment settings; nothing was done:", *(f"  - {p}" for p in err.problems), sep="\n",
              file=sys.stderr)
        return 2
    except BootstrapError as err:
        print(f"scripts/bootstrap: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
