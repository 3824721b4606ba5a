"""The database host's boot scripts, dump and runbooks, run against a real PostgreSQL 16 and moto.

See ``tests/postgres_support.py`` for what is substituted (paths, port, client range) and what not.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from postgres_support import ROOT, SERVER_USER, require_tools

from modules.database import SEED_REQUEST_TOKEN, role_connection_limit
from modules.settings.apps import MAINTENANCE_CONNECTIONS

# What Twenty's set-up runs through PG_DATABASE_URL, copied as fact from twentyhq/twenty
# packages/twenty-server/scripts/setup-db.ts (the FDW part runs only with IS_FDW_ENABLED=true).
TWENTY_SETUP_DB = [
    'CREATE SCHEMA IF NOT EXISTS "public"',
    'CREATE SCHEMA IF NOT EXISTS "core"',
    'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"',
    'CREATE EXTENSION IF NOT EXISTS "unaccent"',
    """CREATE OR REPLACE FUNCTION public.unaccent_immutable(input text)
    RETURNS text
    LANGUAGE sql
    IMMUTABLE
AS $$
SELECT public.unaccent('public.unaccent'::regdictionary, input)
$$;""",
]
# Then its migrations and workspace creation: tables in core, a workspace_<id> schema per workspace.
TWENTY_DATA = [
    'CREATE SCHEMA IF NOT EXISTS "metadata"',
    'CREATE TABLE core."workspace" (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), "displayName" text NOT NULL)',
    """INSERT INTO core."workspace" ("displayName") VALUES ('Olhai'), ('São Paulo Ação')""",
    'CREATE SCHEMA "workspace_1wgvd1injqtife6y4rvfbu3h5"',
    'CREATE TABLE "workspace_1wgvd1injqtife6y4rvfbu3h5"."person" (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), '
    '"name" text, "searchName" text GENERATED ALWAYS AS (public.unaccent_immutable("name")) STORED)',
    """INSERT INTO "workspace_1wgvd1injqtife6y4rvfbu3h5"."person" ("name") VALUES ('José'), ('Ângela')""",
]
RUNBOOK = ROOT / "docs" / "database.md"
RECOVERY = ROOT / "docs" / "failure-recovery.md"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"


def connect(url: str, **params) -> psycopg.Connection:
    """As Twenty's pods connect: the chart's URL; PG_SSL_ALLOW_SELF_SIGNED=true is TLS without
    verifying the certificate, which is libpq's sslmode=require."""
    return psycopg.connect(url, **{"sslmode": "require", "connect_timeout": 10, **params})


def runbook_block(name: str, doc: Path = RUNBOOK) -> str:
    """The fenced shell block under ``<!-- runbook:<name> -->`` in ``doc`` (docs/database.md)."""
    text = doc.read_text()
    match = re.search(rf"<!-- runbook:{name} -->\n *```sh\n(.*?)\n *```", text, re.DOTALL)
    assert match, f"{doc.relative_to(ROOT)} has no block marked <!-- runbook:{name} -->"
    return match.group(1)


def fresh_secrets(world, *names: str) -> list[str]:
    """New secrets in moto without a value, as Terraform creates them (names made unique per call)."""
    sm = world.aws.client("secretsmanager")
    suffix = uuid.uuid4().hex[:8]
    return [sm.create_secret(Name=f"twentycrm/dev/{name}-{suffix}")["ARN"] for name in names]


def snapshot(url: str) -> dict:
    """What a restore must bring back: schemas, tables, functions, extensions and every row."""
    with connect(url) as conn:
        schemas = [r[0] for r in conn.execute(
            "SELECT nspname || ':' || pg_get_userbyid(nspowner) FROM pg_namespace "
            "WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' ORDER BY 1")]  # fmt: skip
        tables = [r[0] for r in conn.execute(
            "SELECT schemaname || '.' || tablename || ':' || tableowner FROM pg_tables "
            "WHERE schemaname IN ('core', 'workspace_1wgvd1injqtife6y4rvfbu3h5') ORDER BY 1")]  # fmt: skip
        extensions = [r[0] for r in conn.execute("SELECT extname FROM pg_extension ORDER BY 1")]
        functions = [r[0] for r in conn.execute(
            "SELECT p.oid::regprocedure::text || ':' || pg_get_userbyid(p.proowner) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.proname = "
            "'unaccent_immutable'")]  # fmt: skip
        rows = {}
        for table in (t.split(":")[0] for t in tables):
            rows[table] = conn.execute(f"SELECT to_jsonb(t) FROM {table} t ORDER BY to_jsonb(t)::text").fetchall()
    return {"schemas": schemas, "tables": tables, "extensions": extensions, "functions": functions, "rows": rows}


@pytest.fixture(scope="session")
def twenty_database(database_world):
    """Twenty's set-up and some data, done once through the role and the chart's URL."""
    with connect(database_world.host.url(database_world.password)) as conn:
        for statement in TWENTY_SETUP_DB + TWENTY_DATA:
            conn.execute(statement)
    return database_world


# --- where the postgres user runs -------------------------------------------------------------


def test_the_postgres_user_runs_all_it_runs_from_outside_the_checkout(pg_distribution):
    """initdb, psql, pg_dump, pg_restore, dropdb and pg_isready as the host's scripts find them (its PATH: the
    session's copy of pgserver's tools, not a system PostgreSQL's), pg_ctl and the server as ScratchHost starts them,
    and a host's directory: none in the checkout, whose parent may be a home directory only its owner enters (mode
    700), and each really run or entered by that user."""
    from postgres_support import ScratchHost  # noqa: PLC0415

    require_tools()
    dist = pg_distribution
    host = ScratchHost({}, {}, dist)
    by_name = ("initdb", "psql", "pg_dump", "pg_restore", "dropdb", "pg_isready")
    wanted = {tool: dist.client_bin / tool for tool in by_name}
    wanted |= {"pg_ctl": dist.server_bin / "pg_ctl", "postgres": dist.server_bin / "postgres"}
    problems = {}
    try:
        for name, path in wanted.items():
            # pg_ctl and the server by their path; the others by name, as the scripts call them
            program = str(path) if path.parent == dist.server_bin else name
            command = f"runuser -u {SERVER_USER} -- bash -c 'command -v \"$0\"; \"$0\" --version' \"{program}\""
            result = host.bash(command, check=False)
            found = result.stdout.split("\n")[0]
            if result.returncode != 0 or found != str(path):
                problems[name] = f"runs {found or 'nothing'}, not {path}: {result.stderr.strip()}"
        enter = f'runuser -u {SERVER_USER} -- bash -c \'cd "$0" && test -w "$1"\' "{host.root}" "{host.run_dir}"'
        result = host.bash(enter, check=False)
        if result.returncode != 0:
            problems["the host's directory"] = f"{host.root}: {result.stderr.strip() or 'not writable'}"
    finally:
        host.cleanup()
    assert not problems, f"as the {SERVER_USER} user: {problems}"
    inside = [str(p) for p in (*wanted.values(), host.root) if p.resolve().is_relative_to(ROOT)]
    assert not inside, f"in the checkout, out of the {SERVER_USER} user's reach under a private parent: {inside}"


# --- secrets -----------------------------------------------------------------------------------


def test_first_boot_seeds_both_secrets_once_and_a_second_run_keeps_them(database_world):
    sm = database_world.aws.client("secretsmanager")
    before = {arn: sm.get_secret_value(SecretId=arn) for arn in (database_world.password_arn,
                                                                 database_world.encryption_key_arn)}  # fmt: skip
    password, key = (before[database_world.password_arn]["SecretString"],
                     before[database_world.encryption_key_arn]["SecretString"])  # fmt: skip
    assert re.fullmatch(r"[A-Za-z0-9]{40}", password) and re.fullmatch(r"[A-Za-z0-9]{64}", key)
    assert password != key[:40]
    # the fixed client request token became the version: a retried put is that same version
    assert {v["VersionId"] for v in before.values()} == {SEED_REQUEST_TOKEN}
    result = database_world.host.run_script("twenty-db-init")
    assert result.stderr.count("has a value; keeping it") == 2, result.stderr
    for arn, first in before.items():
        now = sm.get_secret_value(SecretId=arn)
        assert (now["SecretString"], now["VersionId"]) == (first["SecretString"], first["VersionId"])
        assert len(sm.list_secret_version_ids(SecretId=arn)["Versions"]) == 1


def test_init_refuses_a_password_that_cannot_go_into_the_url(database_world):
    """The gate on the secret's value: a punctuation character would break the chart's URL."""
    sm = database_world.aws.client("secretsmanager")
    good = database_world.password
    sm.put_secret_value(SecretId=database_world.password_arn, SecretString="not/url@safe")
    try:
        result = database_world.host.run_script("twenty-db-init", check=False)
        assert result.returncode == 1
        assert "the secret must be a non-empty alphanumeric password" in result.stderr
    finally:
        sm.put_secret_value(SecretId=database_world.password_arn, SecretString=good)
    with connect(database_world.host.url(good)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --- access ------------------------------------------------------------------------------------


def test_twenty_setup_runs_through_its_url_over_tls_with_scram(twenty_database):
    world = twenty_database
    with connect(world.host.url(world.password)) as conn:
        assert conn.execute("SELECT system_user").fetchone() == ("scram-sha-256:twenty",)
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
        assert conn.execute("SELECT current_database(), current_user").fetchone() == ("twenty", "twenty")
        # what Twenty's set-up ran again, as its entrypoint does on every start: idempotent for the role
        for statement in TWENTY_SETUP_DB:
            conn.execute(statement)
        assert conn.execute("SELECT public.unaccent_immutable('São Paulo Ação')").fetchone() == ("Sao Paulo Acao",)
        names = conn.execute('SELECT "searchName" FROM "workspace_1wgvd1injqtife6y4rvfbu3h5"."person" ORDER BY 1')
        assert [r[0] for r in names] == ["Angela", "Jose"]
        assert conn.execute('SELECT count(*) FROM core."workspace"').fetchone() == (2,)


def test_the_role_owns_its_database_and_nothing_more(twenty_database):
    world = twenty_database
    with connect(world.host.url(world.password)) as conn:
        flags = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
                             "FROM pg_roles WHERE rolname = current_user").fetchone()  # fmt: skip
        assert flags == (False, False, False, False, False)
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'twenty'").fetchone() == (
            "twenty",
        )
        assert conn.execute("SELECT pg_has_role('pg_read_server_files', 'MEMBER') OR "
                            "pg_has_role('pg_write_server_files', 'MEMBER') OR "
                            "pg_has_role('pg_execute_server_program', 'MEMBER')").fetchone() == (False,)  # fmt: skip
        # uuid-ossp and unaccent are trusted: the database owner could create them without the boot
        trusted = conn.execute("SELECT DISTINCT name, trusted FROM pg_available_extension_versions "
                               "WHERE name IN ('uuid-ossp', 'unaccent') ORDER BY 1").fetchall()  # fmt: skip
        assert trusted == [("unaccent", True), ("uuid-ossp", True)]
        for database in ("postgres", "template1"):
            assert conn.execute("SELECT has_database_privilege(%s, 'CONNECT')", [database]).fetchone() == (False,)
    with connect(world.host.url(world.password), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to create database"):
            conn.execute("CREATE DATABASE other")


def test_the_role_leaves_the_maintenance_headroom_free(twenty_database, settings):
    """CONNECTION LIMIT = max_connections - the budget's maintenance headroom: the role's next
    connection is refused while the superuser (and pg_dump, operators) still get in."""
    world = twenty_database
    limit = role_connection_limit(settings["dev"])
    assert limit == settings["dev"].database.max_connections - MAINTENANCE_CONNECTIONS
    superuser = "runuser -u postgres -- psql -d postgres -At -c"
    query = "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'twenty'"
    assert world.host.bash(f'{superuser} "{query}"').stdout.strip() == str(limit)
    url = world.host.url(world.password)
    held = []
    try:
        for _ in range(limit):
            held.append(connect(url))
        with pytest.raises(psycopg.OperationalError, match='too many connections for role "twenty"'):
            connect(url).close()
        count = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'twenty'"
        assert world.host.bash(f'{superuser} "{count}"').stdout.strip() == str(limit)
        # the check can fail: without the limit the same connection gets in; a re-run of init restores it
        world.host.bash(f"{superuser} 'ALTER ROLE twenty CONNECTION LIMIT -1'")
        held.append(connect(url))
    finally:
        for conn in held:
            conn.close()
        world.host.run_script("twenty-db-init")
    assert world.host.bash(f'{superuser} "{query}"').stdout.strip() == str(limit)


REFUSALS = {
    "database postgres": ({"database": "postgres"}, {}, "no pg_hba.conf entry"),
    "database template1": ({"database": "template1"}, {}, "no pg_hba.conf entry"),
    "another user": ({"user": "postgres"}, {}, "no pg_hba.conf entry"),
    "no TLS": ({}, {"sslmode": "disable"}, "no encryption"),
    "wrong password": ({"password": "wrong0password0of0forty0characters00000"}, {}, "password authentication failed"),
    # a client that would only answer an md5 challenge: the server offers SCRAM and nothing else
    "md5 client": ({}, {"require_auth": "md5"}, 'server requested SASL authentication'),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_the_host_refuses_everything_else(twenty_database, case):
    world = twenty_database
    url_args, params, message = REFUSALS[case]
    url_args = dict(url_args)
    password = url_args.pop("password", world.password)
    with pytest.raises(psycopg.OperationalError, match=re.escape(message)):
        connect(world.host.url(password, **url_args), **params).close()


def test_the_refusal_checks_fail_on_a_loose_pg_hba(twenty_database):
    """The checks above can fail: with a plain `host` line a connection without TLS gets in."""
    host = twenty_database.host
    hba = host.pgdata / "pg_hba.conf"
    host.bash(f'cp -p "{hba}" "{hba}.kept" && echo "host  all  twenty  127.0.0.1/32  scram-sha-256" >> "{hba}"')
    try:
        host.reload()
        with connect(host.url(twenty_database.password), sslmode="disable") as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)
    finally:
        host.bash(f'mv "{hba}.kept" "{hba}"')
        host.reload()
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(host.url(twenty_database.password), sslmode="disable").close()


def test_server_settings_come_from_the_rendered_configuration(database_world, settings):
    db = settings["dev"].database
    names = ("max_connections", "work_mem", "shared_buffers", "password_encryption", "ssl", "ssl_min_protocol_version")
    # as the superuser over the local socket (the role may not read every setting)
    shows = " ".join(f"-c 'SHOW {name}'" for name in names)
    out = database_world.host.bash(f"runuser -u postgres -- psql -d postgres -At {shows}").stdout
    show = dict(zip(names, out.split(), strict=True))
    assert show["max_connections"] == str(db.max_connections)
    assert (show["password_encryption"], show["ssl"], show["ssl_min_protocol_version"]) == (
        "scram-sha-256", "on", "TLSv1.2")
    # every connection sorting at once (a few work_mem each) stays within the memory beside shared_buffers
    work_mem_mb = int(show["work_mem"].removesuffix("MB"))
    shared_mb = int(show["shared_buffers"].removesuffix("GB")) * 1024
    assert work_mem_mb * db.max_connections * 3 <= db.memory_gib * 1024 - shared_mb


# --- backups and runbooks ----------------------------------------------------------------------


def test_nightly_dump_restores_into_a_fresh_host_by_the_runbook(twenty_database, tmp_path):
    world = twenty_database
    original = snapshot(world.host.url(world.password))
    world.host.run_script("twenty-db-dump")
    s3 = world.aws.client("s3")
    [dump] = [o["Key"] for o in s3.list_objects_v2(Bucket=world.bucket)["Contents"]]
    assert re.fullmatch(r"twentycrm-dev-db/twenty-\d{4}-\d\d-\d\dT\d{6}Z\.dump", dump)
    # the runbook's own way to find the newest dump prints the line the on-host block starts with
    found = world.host.bash(runbook_block("find-dump"), extra_env={
        "ENV": "dev", "REGION": "sa-east-1", "BUCKET": world.bucket}).stdout.strip()  # fmt: skip
    assert found == f"BUCKET={world.bucket} KEY={dump}"

    fresh = world.new_host()  # a new instance with an empty volume: the boot made an empty database
    assert snapshot(fresh.url(world.password))["tables"] == []
    # systemd is the host's; here a stand-in records what the runbook asks of it
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/systemctl.log"\n')
    (shims / "systemctl").chmod(0o755)
    block = fresh.localize(runbook_block("restore-on-host"))
    block, count = re.subn(r"(?m)^BUCKET=\S+ KEY=\S+$", found, block)
    assert count == 1, "the runbook's first line names the dump to restore"
    result = fresh.bash("set -euo pipefail\n" + block, extra_env={"PATH": f"{shims}:{fresh.env['PATH']}"})
    assert snapshot(fresh.url(world.password)) == original
    assert re.search(r"^\s*2\s*$", result.stdout, re.MULTILINE), "the runbook's count of workspaces"
    assert (tmp_path / "systemctl.log").read_text().splitlines() == [
        "stop twenty-db-dump.timer", "start twenty-db-dump.timer"
    ]


def test_password_rotation_by_the_runbook(twenty_database):
    world = twenty_database
    old = world.password
    block = world.host.localize(runbook_block("rotate-password"))
    world.host.bash("set -euo pipefail\n" + block, extra_env={
        "REGION": "sa-east-1", "SECRET": world.password_arn, "INSTANCE": "i-0123456789abcdef0"})  # fmt: skip
    new = world.password
    # until the host runs twenty-db-init the database still has the old password (the window starts there)
    with connect(world.host.url(old)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("twenty",)
    assert new != old and re.fullmatch(r"[A-Za-z0-9]{40}", new)
    # what the runbook's SSM command runs on the host
    [command] = world.aws.client("ssm").list_commands()["Commands"]
    assert command["Parameters"]["commands"] == [f"{world.host.sbin}/twenty-db-init"]
    world.host.run_script("twenty-db-init")
    with connect(world.host.url(new)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("twenty",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(world.host.url(old)).close()


def _kubectl_with_secret(directory: Path, key: str | None) -> Path:
    """A stand-in kubectl answering the runbook's one question from a copy of the Secret (None: it is gone)."""
    directory.mkdir()
    expected = "-n twenty get secret twenty-secrets -o jsonpath={.data.ENCRYPTION_KEY}"
    answer = (f"printf %s {base64.b64encode(key.encode()).decode()}" if key is not None
              else 'echo \'Error from server (NotFound): secrets "twenty-secrets" not found\' >&2; exit 1')
    check = f'[ "$*" = "{expected}" ] || {{ echo "unexpected: $*" >&2; exit 2; }}'
    (directory / "kubectl").write_text(f"#!/bin/sh\n{check}\n{answer}\n")
    (directory / "kubectl").chmod(0o755)
    return directory


def test_a_lost_encryption_key_comes_back_from_the_kubernetes_secret(database_world, tmp_path):
    """docs/failure-recovery.md: the key in Secrets Manager is overwritten; the Secret's copy is put back."""
    world = database_world
    sm = world.aws.client("secretsmanager")
    [arn] = fresh_secrets(world, "twenty/encryption-key")
    original = "K" * 32 + "ey0fTwenty" + "x" * 22
    sm.put_secret_value(SecretId=arn, SecretString=original)
    sm.put_secret_value(SecretId=arn, SecretString="wrong-value-written-by-mistake")
    shims = _kubectl_with_secret(tmp_path / "bin", original)
    block = runbook_block("recover-encryption-key", RECOVERY)
    result = world.host.bash(block, extra_env={"REGION": "sa-east-1", "SECRET": arn,
                                               "PATH": f"{shims}:{world.host.env['PATH']}"})  # fmt: skip
    assert world.secret(arn) == original, result.stderr
    assert original not in result.stdout + result.stderr


def test_the_key_recovery_refuses_to_write_when_the_secret_is_gone_too(database_world, tmp_path):
    """The same block, pasted as is, when twenty-secrets no longer exists: nothing is written."""
    world = database_world
    sm = world.aws.client("secretsmanager")
    [arn] = fresh_secrets(world, "twenty/encryption-key")
    sm.put_secret_value(SecretId=arn, SecretString="still-the-current-value")
    shims = _kubectl_with_secret(tmp_path / "bin", None)
    result = world.host.bash(runbook_block("recover-encryption-key", RECOVERY), extra_env={
        "REGION": "sa-east-1", "SECRET": arn, "PATH": f"{shims}:{world.host.env['PATH']}"})  # fmt: skip
    assert "twenty-secrets holds no ENCRYPTION_KEY: go to step 2" in result.stderr
    assert world.secret(arn) == "still-the-current-value"
    assert len(sm.list_secret_version_ids(SecretId=arn)["Versions"]) == 1

    # step 2, only then: a new key of the seeded form
    world.host.bash("set -euo pipefail\n" + runbook_block("new-encryption-key", RECOVERY),
                    extra_env={"REGION": "sa-east-1", "SECRET": arn})  # fmt: skip
    assert re.fullmatch(r"[A-Za-z0-9]{64}", world.secret(arn))


# --- a boot that fails -------------------------------------------------------------------------


def _stand_ins(directory: Path, scripts: dict[str, str]) -> Path:
    """Commands of the host's OS that this machine must not run (dnf, sleep), recording their calls."""
    directory.mkdir()
    for name, body in scripts.items():
        (directory / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{directory}/calls.log"\n{body}\n')
        (directory / name).chmod(0o755)
    return directory


def _boot(world, files: dict[str, str], tmp_path: Path, instance: str, dnf_exit: int):
    """twenty-db-setup as rendered on a scratch host, with dnf and sleep replaced by stand-ins."""
    from postgres_support import ScratchHost  # noqa: PLC0415

    host = ScratchHost(files, world.aws.env, world.dist)
    world.hosts.append(host)
    (host.root / "instance-id").write_text(instance + "\n")
    shims = _stand_ins(tmp_path / "bin", {"dnf": f"exit {dnf_exit}", "sleep": "exit 0"})
    result = host.bash('exec "$@"', str(host.sbin / "twenty-db-setup"), check=False,
                       extra_env={"PATH": f"{shims}:{host.env['PATH']}"})  # fmt: skip
    return result, shims


def test_the_secrets_get_their_values_even_when_the_package_mirrors_fail(database_world, tmp_path):
    """Seeding is the boot's first step: a boot that never gets past dnf still gives the apps stack
    both values (without them its plan fails with the AWSCURRENT error of troubleshooting.md 17)."""
    world = database_world
    password_arn, key_arn = fresh_secrets(world, "database/password", "twenty/encryption-key")
    symptom = world.host.bash(f'aws secretsmanager get-secret-value --secret-id "{key_arn}"', check=False)
    message = re.search(r"ResourceNotFoundException\).*?: (.*)", symptom.stderr).group(1).strip()
    assert f"`ResourceNotFoundException: {message}`" in TROUBLESHOOTING.read_text(), message

    files = {path: content.replace(world.password_arn, password_arn).replace(world.encryption_key_arn, key_arn)
             for path, content in world.files.items()}  # fmt: skip
    result, _ = _boot(world, files, tmp_path, "i-0seedfirst00000000", dnf_exit=1)
    assert result.returncode == 1 and "package installation failed 6 times" in result.stderr
    sm = world.aws.client("secretsmanager")
    for arn, length in ((password_arn, 40), (key_arn, 64)):
        value = sm.get_secret_value(SecretId=arn)
        assert re.fullmatch(rf"[A-Za-z0-9]{{{length}}}", value["SecretString"])
        assert value["VersionId"] == SEED_REQUEST_TOKEN
    assert result.stderr.index("first value stored") < result.stderr.index("package installation failed")


@pytest.mark.parametrize(("dnf_exit", "expected"), [
    (1, "package installation failed 6 times"),
    (0, "data volume vol-0123456789abcdef0 did not appear"),
])  # fmt: skip
def test_a_boot_that_fails_part_way_publishes_the_boot_failed_metric(database_world, tmp_path, dnf_exit, expected):
    """twenty-db-setup as rendered: packages retried 6 times with a doubling pause, and any failure
    publishes BootFailed = 1 for the instance (what the db-boot-failed alarm reads)."""
    instance = f"i-0boot{dnf_exit}failed000000"
    result, shims = _boot(database_world, database_world.files, tmp_path, instance, dnf_exit)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr
    assert "failed (exit 1); see docs/database.md, 'A boot that fails'" in result.stderr
    calls = (shims / "calls.log").read_text().splitlines()
    installs = [c for c in calls if c.startswith("dnf install")]
    if dnf_exit:
        assert len(installs) == 6
        assert [c for c in calls if c.startswith("sleep")] == [f"sleep {s}" for s in (5, 10, 20, 40, 80)]
    else:
        assert len(installs) == 1 and "postgresql16-server postgresql16-contrib amazon-cloudwatch-agent" in installs[0]
    cloudwatch = database_world.aws.client("cloudwatch")
    [metric] = cloudwatch.list_metrics(Namespace="TwentyCRM/Database", MetricName="BootFailed",
                                       Dimensions=[{"Name": "InstanceId", "Value": instance}])["Metrics"]  # fmt: skip
    now = datetime.now(timezone.utc)
    data = cloudwatch.get_metric_data(MetricDataQueries=[{"Id": "m", "MetricStat": {
        "Metric": metric, "Period": 60, "Stat": "Maximum"}}], StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=10))["MetricDataResults"][0]["Values"]  # fmt: skip
    assert data == [1.0]
