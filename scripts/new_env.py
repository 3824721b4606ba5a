"""Add an environment in one step: envs/<name>.toml made from an existing file, and everything generated from envs/.

    scripts/new-env <name> --from <env> --account <12-digit id> [--domain <name>] [--cidr <cidr>] [--after <env>]

The new file is the --from file with its comments, rewritten where an environment must differ: the domain, the
buckets, lock table and cluster name (the --from environment's name in them becomes <name>; a value without it
gets "-<name>" appended), ci.github_environment, a VPC range that overlaps no other environment's (the first free
one of the --from file's size, or --cidr) with the subnets at the same places in it, the state stack back on its
local bootstrap backend, and ci.handed_over = false (CI neither plans nor deploys it until a person hands it over).
--after sets ci.deploy_after (the environment it is promoted from; default: the --from file's).

--account: an account no other file names gets its own [account] (the account stack's state bucket named after it,
local bootstrap backend, shared_with = []); the account of existing environments gets that account's [account]
values and the mutual shared_with entries in every file of that account (docs/ci-cd.md, "Accounts").

Then every generated file is rewritten from envs/: the architecture diagram (scripts/diagram.py), deploy.yml's
environment jobs (scripts/ci_environments.py) and the IAM fence table of docs/security.md (tests/test_iam_fences.py).
The result is checked by the settings loader first; on any error nothing is left changed. The steps left to a
person are printed at the end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from modules.settings import EnvironmentSettings, SettingsError, load_all  # noqa: E402
from modules.settings.account import ACCOUNT_SCOPE, ACCOUNT_WIDE_FIELDS  # noqa: E402
from modules.settings.fields import _ENV_NAME  # noqa: E402

ENVS = ROOT / "envs"
# Files generated from envs/, each with the command that regenerates it (run with the new file in place).
IAM_TABLE = "UPDATE_IAM_TABLE=1 ./scripts/test tests/test_iam_fences.py"
GENERATED = {
    ROOT / "docs" / "architecture.md": "python scripts/diagram.py",
    ROOT / ".github" / "workflows" / "deploy.yml": "python scripts/ci_environments.py",
    ROOT / "docs" / "security.md": IAM_TABLE,
}


# The names that must differ per environment (S3 names are global; the others per account), derived from the
# --from file's by putting the new environment's name where the old one's is.
DERIVED = (("state", "bucket"), ("state", "lock_table"), ("cluster", "name"), ("database", "dump_bucket"),
           ("apps", "files_bucket"), ("load_balancer", "access_log_bucket"))


class Refused(Exception):
    """Bad input: the message names the option or file and the fix."""


# --- a small TOML editor: replaces values in place, so comments and layout stay as they were -------------------

_HEADER = re.compile(r"^[ \t]*(\[\[?)[ \t]*([A-Za-z0-9_.-]+)[ \t]*\]\]?[ \t]*(?:#.*)?$")
_KEY = re.compile(r"^[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*")


def _string_end(text: str, i: int) -> int:
    """The index after the one-line string starting at ``text[i]`` (basic "..." or literal '...')."""
    if text.startswith(('"""', "'''"), i):
        raise Refused("the file has a multi-line string; scripts/new-env edits one-line values only")
    quote, j = text[i], i + 1
    while j < len(text) and text[j] != quote:
        if text[j] == "\n":
            raise Refused(f"unterminated string at {text[i:j]!r}")
        j += 2 if quote == '"' and text[j] == "\\" else 1
    return j + 1


def _value_end(text: str, i: int) -> int:
    """The index after the TOML value starting at ``text[i]``: a string, an array or inline table (which may span
    lines, with comments inside), or a bare number, boolean or date."""
    if text[i] in "\"'":
        return _string_end(text, i)
    if text[i] in "[{":
        depth, j = 0, i
        while j < len(text):
            c = text[j]
            if c in "\"'":
                j = _string_end(text, j)
                continue
            if c == "#":
                j = text.index("\n", j) if "\n" in text[j:] else len(text)
                continue
            depth += c in "[{"
            depth -= c in "]}"
            j += 1
            if depth == 0:
                return j
        raise Refused(f"unclosed array or table at {text[i:i + 40]!r}")
    match = re.compile(r"[^\s#,\]}]+").match(text, i)
    if not match:
        raise Refused(f"no value at {text[i:i + 40]!r}")
    return match.end()


@dataclass
class _Entry:
    table: tuple
    key: str
    start: int  # of the value
    end: int
    line_end: int  # the end of the line the value ends on (after any comment)


def _entries(text: str) -> tuple[list[_Entry], dict[tuple, int]]:
    """Every ``key = value`` with its table (``("network", "subnets", 2)`` for the third ``[[network.subnets]]``),
    and where each table's header line ends (``()`` is the top level, before the first header)."""
    entries, tables, counts = [], {(): 0}, {}
    table: tuple = ()
    i = 0
    while i < len(text):
        line_end = text.find("\n", i)
        line_end = len(text) if line_end < 0 else line_end
        line = text[i:line_end]
        header, key = _HEADER.match(line), _KEY.match(line)
        if header:
            path = tuple(header.group(2).split("."))
            if header.group(1) == "[[":
                counts[path] = counts.get(path, -1) + 1
                path = (*path, counts[path])
            table = path
            tables[table] = line_end
        elif key and not line.lstrip().startswith("#"):
            start = i + key.end()
            end = _value_end(text, start)
            value_line_end = text.find("\n", end)
            value_line_end = len(text) if value_line_end < 0 else value_line_end
            entries.append(_Entry(table, key.group(1), start, end, value_line_end))
            line_end = value_line_end
        i = line_end + 1
    return entries, tables


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: the same escapes (\" \\ \n \uXXXX)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _lookup(data: dict, path: tuple) -> object:
    for part in path:
        data = data[part]
    return data


def set_values(text: str, changes: dict[tuple, object]) -> str:
    """``text`` with each ``(table..., key): value`` of ``changes`` written in place (the line's comment kept), or
    added after the table's last key when the table lacks it; checked by reading the result back with tomllib:
    exactly those values changed, nothing else."""
    entries, tables = _entries(text)
    found = {(*e.table, e.key): e for e in entries}
    edits: list[tuple[int, int, str]] = []
    for path, value in changes.items():
        table, key = path[:-1], path[-1]
        if path in found:
            entry = found[path]
            edits.append((entry.start, entry.end, toml_value(value)))
            continue
        if table not in tables:
            raise Refused(f"the file has no table [{'.'.join(map(str, table))}] for {key}")
        last = [e for e in entries if e.table == table]
        at = last[-1].line_end if last else tables[table]
        edits.append((at, at, f"\n{key} = {toml_value(value)}"))
    result = text
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        result = result[:start] + new + result[end:]
    expected = tomllib.loads(text)
    for path, value in changes.items():
        _lookup(expected, path[:-1])[path[-1]] = value
    if tomllib.loads(result) != expected:
        raise Refused("internal: the rewritten file does not read back as intended; nothing was written")
    return result


def _comment_start(line: str) -> int | None:
    i = 0
    while i < len(line):
        if line[i] in "\"'":
            try:
                i = _string_end(line, i)
            except Refused:
                return None
            continue
        if line[i] == "#":
            return i
        i += 1
    return None


def rewrite_comments(text: str, replace) -> str:
    """``replace`` applied to the comment part of every line (never to a value)."""
    if '"""' in text or "'''" in text:
        return text
    lines = []
    for line in text.split("\n"):
        at = _comment_start(line)
        lines.append(line if at is None else line[:at] + replace(line[at:]))
    return "\n".join(lines)


# --- what the new environment gets ----------------------------------------------------------------------------


def _token(name: str) -> re.Pattern[str]:
    """``name`` as a part of a longer name: not inside another word ('qa' in 'olhai-twentycrm-qa-files')."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")


def derive_name(value: str, old: str, new: str) -> str:
    pattern = _token(old)
    return pattern.sub(new, value) if pattern.search(value) else f"{value}-{new}"


def derive_domain(domain: str, old: str, new: str) -> str:
    """mGenialQA.olhai.app.br (qa) -> mgenialstaging.olhai.app.br; mGenial.olhai.app.br (prod) -> the same."""
    first, _, parent = domain.partition(".")
    stem = re.sub(rf"{re.escape(old)}$", "", first, flags=re.IGNORECASE)
    return f"{stem}{new}.{parent}".lower()


def free_cidr(source: ipaddress.IPv4Network, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first network of ``source``'s size, in its private block, that overlaps none of ``taken``."""
    blocks = [ipaddress.IPv4Network(b) for b in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    block = next((b for b in blocks if source.subnet_of(b)), None)
    if block is None:
        raise Refused(f"the VPC range {source} is in no private block (10/8, 172.16/12, 192.168/16); pass --cidr")
    for candidate in block.subnets(new_prefix=source.prefixlen):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise Refused(f"no free /{source.prefixlen} is left in {block}; pass --cidr")


def rebase(subnet: str, old_vpc: ipaddress.IPv4Network, new_vpc: ipaddress.IPv4Network) -> str:
    """The subnet at the same offset in ``new_vpc`` as ``subnet`` has in ``old_vpc``."""
    net = ipaddress.IPv4Network(subnet)
    offset = int(net.network_address) - int(old_vpc.network_address)
    moved = ipaddress.IPv4Network((int(new_vpc.network_address) + offset, net.prefixlen))
    if not moved.subnet_of(new_vpc):
        raise Refused(f"--cidr {new_vpc} cannot hold the subnet {subnet} of {old_vpc} (its offset falls outside); "
                      f"give a /{old_vpc.prefixlen} or larger")
    return str(moved)


@dataclass
class Plan:
    name: str
    source: EnvironmentSettings
    account: str
    domain: str
    cidr: ipaddress.IPv4Network
    changes: dict[tuple, object] = field(default_factory=dict)
    shared: list[EnvironmentSettings] = field(default_factory=list)  # the account's existing environments
    after: str = ""


def plan(args: argparse.Namespace, envs: list[EnvironmentSettings]) -> Plan:
    by_name = {e.name: e for e in envs}
    source = by_name[args.source]
    name = args.name
    data = tomllib.loads(Path(source.source).read_text(encoding="utf-8"))
    if args.cidr:
        try:
            cidr = ipaddress.IPv4Network(args.cidr, strict=True)
        except ValueError as err:
            raise Refused(f"--cidr '{args.cidr}': not an IPv4 network in CIDR form such as 10.9.0.0/16 "
                          f"({err})") from None
    else:
        taken = [ipaddress.IPv4Network(e.network.cidr) for e in envs]
        cidr = free_cidr(ipaddress.IPv4Network(source.network.cidr), taken)
    domain = (args.domain or derive_domain(source.domain, source.name, name)).lower()
    shared = [e for e in envs if e.account.id == args.account]
    after = source.ci.deploy_after if args.after is None else args.after
    p = Plan(name, source, args.account, domain, cidr, shared=shared, after=after)
    c = p.changes
    c[("domain",)] = domain
    for section, key in DERIVED:
        c[(section, key)] = derive_name(getattr(getattr(source, section), key), source.name, name)
    c[("state", "own_backend")] = "local"  # its state stack is bootstrapped by a person first
    old_vpc = ipaddress.IPv4Network(source.network.cidr)
    c[("network", "cidr")] = str(cidr)
    for i, subnet in enumerate(source.network.subnets):  # in the file's order
        c[("network", "subnets", i, "cidr")] = rebase(subnet.cidr, old_vpc, cidr)
    old_zone = source.domain
    names = list(source.dns.extra_certificate_names)
    if names:
        c[("dns", "extra_certificate_names")] = [
            n[: -len(old_zone)] + domain if n.lower().endswith(f".{old_zone}") else n for n in names
        ]
    c[("ci", "github_environment")] = name
    c[("ci", "handed_over")] = False
    c[("ci", "deploy_after")] = p.after
    c[("account", "id")] = args.account
    if shared:
        owner = shared[0].account
        for key in ACCOUNT_WIDE_FIELDS:
            if getattr(owner, key) != getattr(source.account, key) or key in data.get("account", {}):
                c[("account", key)] = getattr(owner, key)
        c[("account", "shared_with")] = sorted(e.name for e in shared)
    else:
        bucket = source.account.state_bucket
        if source.account.id in bucket:
            c[("account", "state_bucket")] = bucket.replace(source.account.id, args.account)
        else:
            c[("account", "state_bucket")] = f"{bucket}-{args.account}"
        c[("account", "own_backend")] = "local"  # a new account: its account stack is bootstrapped first
        c[("account", "shared_with")] = []
    return p


def render(p: Plan) -> dict[Path, str]:
    """The text of every environment file the plan writes: the new one, and the account's others (shared_with)."""
    old, new = p.source, p.name
    text = set_values(Path(old.source).read_text(encoding="utf-8"), p.changes)
    word, domain = _token(old.name), re.compile(re.escape(old.domain), re.IGNORECASE)

    def comment(part: str) -> str:
        part = domain.sub(p.domain, part).replace(old.account.id, p.account)
        part = part.replace("PLACEHOLDER: replace with the 12-digit ID of", "The 12-digit ID of")
        part = word.sub(new, part)
        return part.replace(f"{new}'s own AWS account", f"{new}'s AWS account (shared_with)") if p.shared else part

    text = rewrite_comments(text, comment)
    lines = text.split("\n")
    first_key = next(i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#"))
    intro = f"# {new}: made from envs/{old.name}.toml by scripts/new-env. Every key is described in docs/settings.md."
    files = {ENVS / f"{new}.toml": "\n".join([intro, *lines[first_key:]])}
    for other in p.shared:
        path = Path(other.source)
        shared_with = {("account", "shared_with"): [*other.account.shared_with, new]}
        files[path] = set_values(path.read_text(encoding="utf-8"), shared_with)
    return files


def check_input(args: argparse.Namespace, envs: list[EnvironmentSettings]) -> None:
    names = sorted(e.name for e in envs)
    if args.name == ACCOUNT_SCOPE or not _ENV_NAME.match(args.name):
        raise Refused(f"<name> '{args.name}': not a valid environment name; use 1-12 lower-case letters, digits or "
                      "hyphens, starting with a letter, not 'account' (e.g. staging)")
    if (ENVS / f"{args.name}.toml").exists():
        raise Refused(f"envs/{args.name}.toml already exists; pick another name (or edit that file)")
    if args.source not in names:
        raise Refused(f"--from '{args.source}': there is no envs/{args.source}.toml; copy one of {', '.join(names)}")
    if not re.fullmatch(r"[0-9]{12}", args.account):
        raise Refused(f"--account '{args.account}': not an AWS account ID; give all 12 digits, e.g. --account "
                      "123456789012")
    if args.after not in (None, "") and args.after not in names:
        raise Refused(f"--after '{args.after}': there is no envs/{args.after}.toml; name one of {', '.join(names)}, "
                      "or --after '' to deploy right after the tests")


def validate(files: dict[Path, str]) -> list[EnvironmentSettings]:
    """Load envs/ as it would be, in a scratch copy: the settings model and the checks across files."""
    with tempfile.TemporaryDirectory() as scratch:
        copy_dir = Path(scratch) / "envs"
        shutil.copytree(ENVS, copy_dir)
        for path, text in files.items():
            (copy_dir / path.name).write_text(text, encoding="utf-8")
        try:
            return load_all(copy_dir)
        except SettingsError as err:
            problems = [p.replace(str(copy_dir), "envs") for p in err.problems]
            raise Refused("the new file would not pass the settings checks; nothing was written:\n"
                          + "\n".join(f"  - {p}" for p in problems)) from None


def regenerate() -> None:
    """Every file generated from envs/, with the command that regenerates it."""
    import ci_environments
    import diagram

    if diagram.main([]) or ci_environments.main([]):
        raise Refused("regenerating the diagram or deploy.yml failed (above)")
    print(f"regenerating the IAM fence table of docs/security.md ({IAM_TABLE}; about a minute) ...", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "TWENTYCRM_ENVS_DIR"}
    # the project's pytest, not ./scripts/test: its preamble installs Debian tools the table does not need
    command = [sys.executable, "-m", "pytest", "tests/test_iam_fences.py", "-n", "0", "-q", "-p", "no:cacheprovider", "-k",
               "test_docs_keep_the_computed_table"]
    # CI=true: a missing Node fails the test instead of skipping it, so a skip never passes for a regeneration
    env = {**env, "UPDATE_IAM_TABLE": "1", "CI": "true"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or "1 passed" not in done.stdout:
        raise Refused(f"regenerating docs/security.md's IAM fence table failed:\n{done.stdout[-3000:]}{done.stderr}")


def next_steps(p: Plan) -> str:
    n, account, project = p.name, p.account, p.source.project
    if p.shared:
        where = (f"in account {account} with {', '.join(e.name for e in p.shared)} (one account stack, "
                 f"{project}-account-{account}, bootstrapped once with the account's first environment)")
        account_step = ""
    else:
        where = f"in a new account {account}"
        account_step = f"the account stack {project}-account-{account}, then "
    summary = (f"envs/{n}.toml is made from envs/{p.source.name}.toml, {where}: domain {p.domain}, VPC {p.cidr}, "
               f"promoted after {p.after or 'the tests'} ([ci] deploy_after). The settings loader accepts it; "
               "docs/architecture.md (the diagram), .github/workflows/deploy.yml (the environment jobs) and "
               f"docs/security.md (the IAM fence table) are regenerated. CI neither plans nor deploys {n} yet "
               "([ci] handed_over = false). Left to a person (docs/ci-cd.md, \"Handing an environment over to CI\"):")
    steps = [
        f"Review envs/{n}.toml (sizes, [monitoring] email_subscribers, cluster.admin_principal_arns, the names) and "
        "open a pull request with it and the regenerated files.",
        f"Bootstrap: `scripts/bootstrap {n}` applies {account_step}the state stack {project}-{n}-state and moves "
        "them into their buckets; then seed the Docker Hub credential (docs/implementation-guide.md, \"First "
        "deploy\", steps 2 and 3).",
        f"GitHub environments {n} (required reviewers, deployment branch main) and {n}-plan (branch main), each with "
        f"the variable AWS_ACCOUNT_ID = {account} (docs/ci-cd.md, \"Set-up in GitHub\").",
        f"During the first platform apply: delegate {p.domain} from its parent zone (NS records from `terraform "
        "output zone_name_servers`), then publish the DS record (docs/edge.md, \"DNSSEC and query logging\"), and "
        f"authorise the GitHub connection {project}-{n}-github.",
        f"Hand it over to CI: [ci] handed_over = true in envs/{n}.toml, in a pull request.",
    ]
    wrap = textwrap.TextWrapper(116, break_on_hyphens=False, break_long_words=False)
    lines = ["", *wrap.wrap(summary)]
    for i, step in enumerate(steps, 1):
        wrap.initial_indent, wrap.subsequent_indent = f"  {i}. ", "     "
        lines += wrap.wrap(step)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/new-env", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the new environment's name: envs/<name>.toml")
    parser.add_argument("--from", dest="source", required=True, help="the environment file to copy")
    parser.add_argument("--account", required=True, help="its 12-digit AWS account ID")
    parser.add_argument("--domain", help="its domain (default: derived from the --from file's)")
    parser.add_argument("--cidr", help="its VPC range (default: the first free one of the --from file's size)")
    parser.add_argument("--after", help="ci.deploy_after: the environment it is promoted from (default: --from's)")
    args = parser.parse_args(argv)
    os.environ.pop("TWENTYCRM_ENVS_DIR", None)  # this command works on the repository's envs/ and its generated files
    try:
        try:
            envs = load_all(ENVS)
        except SettingsError as err:
            raise Refused("envs/ does not pass the settings checks as it is; fix it first:\n"
                          + "\n".join(f"  - {p}" for p in err.problems)) from None
        check_input(args, envs)
        p = plan(args, envs)
        files = render(p)
        validate(files)
    except Refused as err:
        print(f"scripts/new-env: {err}", file=sys.stderr)
        return 2
    kept = {path: path.read_bytes() for path in [*files, *GENERATED] if path.exists()}
    try:
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
        regenerate()
    except BaseException as err:  # an interrupt too: leave nothing half-written
        for path in files:
            path.unlink(missing_ok=True)
        for path, content in kept.items():
            path.write_bytes(content)
        if not isinstance(err, (Refused, SettingsError, OSError, SystemExit)):
            raise
        print(f"scripts/new-env: {err}\nNothing was changed.", file=sys.stderr)
        return 1
    print(next_steps(p))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
