"""Every validation rule of the environment files, and the message a user sees for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, copy_envs, edit, lock_with, problems_for

from modules.settings import load_all, load_environment


@pytest.fixture
def envs(tmp_path) -> Path:
    return copy_envs(tmp_path)


def test_the_document_values_are_read(settings):
    dev, qa, prod = settings["dev"], settings["qa"], settings["prod"]
    assert (dev.domain, qa.domain, prod.domain) == (
        "mgenialdev.olhai.app.br",
        "mgenialqa.olhai.app.br",
        "mgenial.olhai.app.br",
    )
    assert [e.network.cidr for e in (dev, qa, prod)] == ["10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"]
    assert {e.region for e in (dev, qa, prod)} == {"sa-east-1"}
    assert [(s.name, s.cidr) for s in qa.network.subnets] == [
        ("Public-1A", "10.1.1.0/24"),
        ("Public-1B", "10.1.2.0/24"),
        ("Private-1A", "10.1.3.0/24"),
        ("Private-1B", "10.1.4.0/24"),
    ]
    assert (prod.cluster.frontend.instance_type, prod.cluster.frontend.desired_size) == ("t3.large", 3)
    assert (prod.cluster.backend.instance_type, prod.cluster.backend.desired_size) == ("t3.xlarge", 3)
    assert (dev.database.instance_type, dev.database.volume_size_gb) == ("t3.large", 50)
    assert (prod.database.instance_type, prod.database.volume_size_gb) == ("t3.xlarge", 100)
    assert [(e.dns.id, e.dns.certificate_id, e.load_balancer.id) for e in (dev, qa, prod)] == [
        ("DNS-101", "DNS-102", "ALB-101"),
        ("DNS-201", "DNS-202", "ALB-201"),
        ("DNS-301", "DNS-302", "ALB-301"),
    ]
    assert [e.load_balancer.deletion_protection for e in (dev, qa, prod)] == [True, True, True]  # lifted only to tear down
    assert {(e.load_balancer.target_port, e.load_balancer.health_check_path) for e in (dev, qa, prod)} == {(3000, "/healthz")}


def test_the_edge_defaults_are_the_safe_ones(envs):
    """A file that names only the required keys gets TLS 1.2+, defensive desync mitigation, no existing zone."""
    path = envs / "dev.toml"
    text = path.read_text()
    start = text.index("[load_balancer]")
    path.write_text(
        text[:start]
        + '[load_balancer]\nid = "ALB-101"\naccess_log_bucket = "olhai-twentycrm-dev-alb-logs"\n'
    )
    lb = load_environment(path).load_balancer
    assert (lb.ssl_policy, lb.desync_mitigation_mode, lb.deletion_protection) == (
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "defensive",
        True,
    )
    assert (lb.idle_timeout_seconds, lb.access_log_retention_days, lb.target_port) == (60, 90, 3000)
    assert load_environment(path).zone_name == "mgenialdev.olhai.app.br"


def test_settings_are_frozen(settings):
    with pytest.raises(Exception, match="frozen"):
        settings["dev"].network.cidr = "10.9.0.0/16"


def test_region_defaults_to_sao_paulo(envs):
    edit(envs / "dev.toml", 'region = "sa-east-1"', "")
    assert load_environment(envs / "dev.toml").region == "sa-east-1"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("[state]", 'colour = "blue"\n[state]', r"dev\.toml: colour: unknown key", id="unknown-key"),
        pytest.param('lock_table = "twentycrm-dev-tflock"\n', "", r"dev\.toml: state\.lock_table: required field is missing", id="missing-field"),
        pytest.param('cidr = "10.0.1.0/24"', 'cidr = "10.5.1.0/24"', r"dev\.toml: network: .*Public-1A\) 10\.5\.1\.0/24 lies outside the VPC 10\.0\.0\.0/16", id="subnet-outside-vpc"),
        pytest.param('cidr = "10.0.2.0/24"', 'cidr = "10.0.1.128/25"', r"dev\.toml: network: .*Public-1A\) 10\.0\.1\.0/24 overlaps subnets\[1\] \(Public-1B\) 10\.0\.1\.128/25", id="subnets-overlap"),
        pytest.param('cidr = "10.0.3.0/24"', 'cidr = "10.0.3.0/33"', r"dev\.toml: network\.subnets\.2\.cidr: '10\.0\.3\.0/33' is not an IPv4 network", id="invalid-cidr"),
        pytest.param('cidr = "10.0.3.0/24"', 'cidr = "10.0.3.7/24"', r"dev\.toml: network\.subnets\.2\.cidr: .*has host bits set", id="cidr-host-bits"),
        pytest.param("min_size = 2\nmax_size = 4\nmax_unavailable", "min_size = 5\nmax_size = 4\nmax_unavailable", r"dev\.toml: cluster\.frontend: min_size \(5\) <= desired_size \(2\) <= max_size \(4\) must hold", id="min-above-max"),
        pytest.param('domain = "mGenialDev.olhai.app.br"', 'domain = "mgenial_dev.olhai.app.br"', r"dev\.toml: domain: 'mgenial_dev\.olhai\.app\.br' is not a valid DNS name", id="invalid-domain"),
        pytest.param('bucket = "olhai-twentycrm-dev-tfstate"', 'bucket = "Olhai_TFState"', r"dev\.toml: state\.bucket: 'Olhai_TFState' is not a valid S3 bucket name", id="invalid-bucket"),
        pytest.param('bucket = "olhai-twentycrm-dev-tfstate"', 'bucket = "192.168.10.1"', r"dev\.toml: state\.bucket: .*not shaped like an IP address", id="ip-shaped-bucket"),
        pytest.param('id = "NET-204"', 'id = "NET-201"', r"dev\.toml: \(top level\): component IDs must be unique within one environment; repeated: NET-201", id="duplicate-component-id"),
        pytest.param('id = "NET-204"', 'id = "net204"', r"dev\.toml: network\.subnets\.3\.id: 'net204' is not a document component ID", id="malformed-component-id"),
        pytest.param('nat_gateways = "single"', 'nat_gateways = "two"', r"dev\.toml: network\.nat_gateways: allowed values are 'single' or 'per_zone'", id="bad-choice"),
        pytest.param('flow_log_retention_days = 365', 'flow_log_retention_days = 45', r"dev\.toml: network\.flow_log_retention_days: allowed values are 1, 3, 5", id="bad-retention"),
        pytest.param('zone = "b"\ncidr = "10.0.2.0/24"', 'zone = "a"\ncidr = "10.0.2.0/24"', r"dev\.toml: network: .*needs public subnets in at least two zones", id="one-zone-only"),
        pytest.param('region = "sa-east-1"', 'region = "Sao Paulo"', r"dev\.toml: region: 'Sao Paulo' is not an AWS region code", id="bad-region"),
        pytest.param('desired_size = 2', 'desired_size = 0', r"dev\.toml: cluster\.frontend\.desired_size: Input should be greater than or equal to 1", id="count-too-small"),
        pytest.param('instance_type = "t3.medium"', 'instance_type = "large"', r"dev\.toml: cluster\.frontend\.instance_type: 'large' is not an EC2 instance type", id="bad-instance-type"),
        pytest.param('domain = "mGenialDev.olhai.app.br"', 'domain = "mGenialDev.olhai.app.br"\nname = "staging"', r"dev\.toml: name: do not set it; the environment name is the file name", id="reserved-name"),
        pytest.param("[state]", "[state", r"dev\.toml: not valid TOML", id="bad-toml"),
        pytest.param('id = "111122223333"', "id = 111122223333", r"dev\.toml: account\.id: 111122223333 is not a string; write the 12-digit AWS account ID in quotes, e\.g\. id = \"111122223333\" \(TOML integers drop leading zeros\)", id="account-id-integer"),
        pytest.param('id = "111122223333"', 'id = "11112222333"', r"dev\.toml: account\.id: '11112222333' is not an AWS account ID; use exactly 12 digits in quotes", id="account-id-11-digits"),
        pytest.param('id = "111122223333"', 'id = "1111-2222-3333"', r"dev\.toml: account\.id: '1111-2222-3333' is not an AWS account ID", id="account-id-dashes"),
        pytest.param('id = "111122223333"\n', "", r"dev\.toml: account\.id: required field is missing", id="account-id-missing"),
        pytest.param('github_environment = "dev"', 'github_environment = "dev"\noidc_provider = "create"', r"dev\.toml: ci\.oidc_provider: moved to \[account\] github_oidc_provider", id="moved-oidc-provider"),
        pytest.param('github_environment = "dev"', 'github_environment = "dev"\nexisting_oidc_provider_arn = "arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com"', r"dev\.toml: ci\.existing_oidc_provider_arn: no longer needed: the provider's ARN follows from \[account\] id", id="moved-oidc-arn"),
        pytest.param('github_oidc_provider = "create"', 'github_oidc_provider = "maybe"', r"dev\.toml: account\.github_oidc_provider: allowed values are 'create' or 'existing'", id="oidc-provider-choice"),
        pytest.param('state_bucket = "olhai-twentycrm-account-111122223333-tfstate"', 'state_bucket = "olhai-twentycrm-dev-tfstate"', r"dev\.toml: \(top level\): account\.state_bucket must differ from state\.bucket", id="account-bucket-is-state-bucket"),
        pytest.param('# existing_zone = "olhai.app.br"', 'existing_zone = "example.com"', r"dev\.toml: \(top level\): dns\.existing_zone 'example\.com' must be the domain 'mgenialdev\.olhai\.app\.br' or a parent of it", id="zone-not-a-parent"),
        pytest.param('# existing_zone = "olhai.app.br"', 'existing_zone = "olhai..app.br"', r"dev\.toml: dns\.existing_zone: 'olhai\.\.app\.br' is not a valid DNS name", id="invalid-existing-zone"),
        pytest.param("extra_certificate_names = []", 'extra_certificate_names = ["www.example.com"]', r"dev\.toml: \(top level\): dns\.extra_certificate_names\[0\] 'www\.example\.com' lies outside the zone 'mgenialdev\.olhai\.app\.br'; use a name ending in '\.mgenialdev\.olhai\.app\.br'", id="certificate-name-outside-zone"),
        pytest.param("extra_certificate_names = []", 'extra_certificate_names = ["MGENIALDEV.olhai.app.br"]', r"dev\.toml: \(top level\): dns\.extra_certificate_names\[0\] 'mgenialdev\.olhai\.app\.br' is listed twice", id="certificate-name-twice"),
        pytest.param("extra_certificate_names = []", 'extra_certificate_names = ["www_1.mgenialdev.olhai.app.br"]', r"dev\.toml: dns\.extra_certificate_names\.0: 'www_1\.mgenialdev\.olhai\.app\.br' is not a valid DNS name", id="invalid-certificate-name"),
        pytest.param('certificate_id = "DNS-102"', 'certificate_id = "DNS-101"', r"dev\.toml: \(top level\): component IDs must be unique within one environment; repeated: DNS-101", id="duplicate-dns-id"),
        pytest.param('id = "ALB-101"', 'id = "ALB101"', r"dev\.toml: load_balancer\.id: 'ALB101' is not a document component ID", id="malformed-alb-id"),
        pytest.param('access_log_bucket = "olhai-twentycrm-dev-alb-logs"\n', "", r"dev\.toml: load_balancer\.access_log_bucket: required field is missing", id="missing-log-bucket"),
        pytest.param('access_log_bucket = "olhai-twentycrm-dev-alb-logs"', 'access_log_bucket = "olhai-twentycrm-dev-tfstate"', r"dev\.toml: \(top level\): load_balancer\.access_log_bucket must differ from state\.bucket", id="log-bucket-is-state-bucket"),
        pytest.param('ssl_policy = "ELBSecurityPolicy-TLS13-1-2-2021-06"', 'ssl_policy = "ELBSecurityPolicy-2016-08"', r"dev\.toml: load_balancer\.ssl_policy: allowed values are 'ELBSecurityPolicy-TLS13-1-2-2021-06'", id="tls-policy-below-1-2"),
        pytest.param('desync_mitigation_mode = "defensive"', 'desync_mitigation_mode = "monitor"', r"dev\.toml: load_balancer\.desync_mitigation_mode: allowed values are 'defensive' or 'strictest'", id="desync-monitor"),
        pytest.param("idle_timeout_seconds = 60", "idle_timeout_seconds = 0", r"dev\.toml: load_balancer\.idle_timeout_seconds: Input should be greater than or equal to 1", id="idle-timeout-zero"),
        pytest.param("deletion_protection = true   # lift", 'deletion_protection = "maybe"   # lift', r"dev\.toml: load_balancer\.deletion_protection: Input should be a valid boolean", id="deletion-protection-not-bool"),
    ],
)
def test_a_bad_file_is_rejected_naming_file_field_and_fix(envs, old, new, expected):
    edit(envs / "dev.toml", old, new)
    assert re.search(expected, problems_for(envs)), problems_for(envs)


def test_vpc_ranges_must_not_overlap_across_environments(envs):
    edit(envs / "qa.toml", 'cidr = "10.1.0.0/16"', 'cidr = "10.0.0.0/15"')
    edit(envs / "qa.toml", "10.1.", "10.0.", count=99)
    message = problems_for(envs)
    assert re.search(r"qa\.toml: network\.cidr: 10\.0\.0\.0/15 overlaps 10\.0\.0\.0/16 of .*dev\.toml", message)


@pytest.mark.parametrize(
    ("field", "old", "new"),
    [
        ("domain", 'domain = "mGenialQA.olhai.app.br"', 'domain = "MGENIALDEV.olhai.app.br"'),
        ("state.bucket", "olhai-twentycrm-qa-tfstate", "olhai-twentycrm-dev-tfstate"),
        ("load_balancer.access_log_bucket", "olhai-twentycrm-qa-alb-logs", "olhai-twentycrm-dev-alb-logs"),
    ],
)
def test_global_names_must_be_unique_across_environments_and_accounts(envs, field, old, new):
    """S3 bucket names and domains are global: separate accounts do not make them free."""
    edit(envs / "qa.toml", old, new)
    assert re.search(rf"qa\.toml: {re.escape(field)}: '.*' is already used by .*dev\.toml", problems_for(envs))


DEV_ACCOUNT, QA_ACCOUNT = "111122223333", "444455556666"


def _share_devs_account(envs: Path) -> None:
    """qa moves into dev's account, agreeing on every [account] value (the account stack is shared), and both
    files say so in shared_with."""
    edit(envs / "qa.toml", QA_ACCOUNT, DEV_ACCOUNT, count=99)
    edit(envs / "qa.toml", "shared_with = []", 'shared_with = ["dev"]')
    edit(envs / "dev.toml", "shared_with = []", 'shared_with = ["qa"]')


def test_a_copied_account_id_is_refused_until_both_files_share_it_on_purpose(envs):
    """staging.toml copied from prod.toml with prod's account.id left in: refused, naming both files."""
    text = (envs / "prod.toml").read_text().replace("mGenial.olhai", "mGenialStaging.olhai").replace("-prod-", "-stg-")
    (envs / "staging.toml").write_text(text.replace('"twentycrm-prod"', '"twentycrm-stg"').replace("10.2.", "10.9.")
                                       .replace('github_environment = "prod"', 'github_environment = "staging"'))
    message = problems_for(envs)
    assert re.search(r"prod\.toml and .*staging\.toml: account\.id: both are account 777788889999, and sharing an "
                     r"account must be explicit: if they really share it, add shared_with = \[\"staging\"\] in "
                     r".*prod\.toml and shared_with = \[\"prod\"\] in .*staging\.toml \(\[account\]\); otherwise "
                     r"give each its own account\.id \(one account per environment is the stronger choice", message), \
        message
    edit(envs / "staging.toml", "shared_with = []", 'shared_with = ["prod"]')  # one side only: still refused
    assert re.search(r"add shared_with = \[\"staging\"\] in .*prod\.toml \(\[account\]\)", problems_for(envs))
    edit(envs / "prod.toml", "shared_with = []", 'shared_with = ["staging"]')
    assert "staging" in [e.name for e in load_all(envs)]


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ("qa", rf"dev\.toml: account\.shared_with: lists 'qa', but 'qa' is in account {QA_ACCOUNT} \(.*qa\.toml\), "
               rf"not in this account {DEV_ACCOUNT}; remove it, or set the same account\.id in both files"),
        ("staging", r"dev\.toml: account\.shared_with: lists 'staging', but there is no envs/staging\.toml"),
        ("dev", r"dev\.toml: \(top level\): account\.shared_with lists 'dev', this environment itself"),
    ],
)
def test_shared_with_names_only_other_environments_of_the_same_account(envs, listed, expected):
    edit(envs / "dev.toml", "shared_with = []", f'shared_with = ["{listed}"]')
    assert re.search(expected, problems_for(envs)), problems_for(envs)


@pytest.mark.parametrize("shared", [False, True], ids=["alone-in-its-account", "first-of-a-shared-pair"])
def test_a_state_lock_table_that_is_the_account_stacks_is_refused_in_every_file(envs, shared):
    """Checked per file: an environment alone in its account (or the first of a pair) is checked too."""
    if shared:
        _share_devs_account(envs)
    edit(envs / "dev.toml", 'lock_table = "twentycrm-dev-tflock"', 'lock_table = "twentycrm-account-tflock"')
    assert re.search(r"dev\.toml: \(top level\): state\.lock_table 'twentycrm-account-tflock' is the account "
                     r"stack's lock table \(account\.lock_table, same region\); the state stack would try to create "
                     r"it again: pick another", problems_for(envs)), problems_for(envs)


def test_per_account_names_are_free_in_separate_accounts(envs):
    """Cluster names and lock tables are named per account: qa may reuse dev's while they are apart."""
    edit(envs / "qa.toml", 'name = "twentycrm-qa"', 'name = "twentycrm-dev"')
    edit(envs / "qa.toml", 'lock_table = "twentycrm-qa-tflock"', 'lock_table = "twentycrm-dev-tflock"')
    assert [e.cluster.name for e in load_all(envs)][:2] == ["twentycrm-dev", "twentycrm-prod"]  # no SettingsError
    _share_devs_account(envs)
    message = problems_for(envs)
    assert f"qa.toml: cluster.name: 'twentycrm-dev' is already used by {envs / 'dev.toml'} in the same account " \
        f"{DEV_ACCOUNT}; pick another" in message
    assert "qa.toml: state.lock_table: 'twentycrm-dev-tflock' is already used by" in message


def test_a_shared_account_is_accepted_when_names_are_apart(envs):
    _share_devs_account(envs)
    assert {e.account.id for e in load_all(envs) if e.name in ("dev", "qa")} == {DEV_ACCOUNT}


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('github_oidc_provider = "create"', 'github_oidc_provider = "existing"', "account.github_oidc_provider"),
        ('own_backend = "local"   # scripts/bootstrap switches it to "s3" (docs/implementation-guide.md, '
         '"First deploy")\ndeletion_protection = true   # of the account',
         'own_backend = "s3"\ndeletion_protection = true   # of the account', "account.own_backend"),
        ('lock_table = "twentycrm-account-tflock"', 'lock_table = "other-account-tflock"', "account.lock_table"),
        ("deletion_protection = true   # of the account", "deletion_protection = false   # of the account",
         "account.deletion_protection"),
    ],
)  # fmt: skip
def test_environments_sharing_an_account_must_agree_on_it(envs, old, new, field):
    for path in envs.glob("*.toml"):  # the files as the template ships them, whatever this repository's reached
        text = re.sub(r'^own_backend = "s3"', 'own_backend = "local"', path.read_text(), flags=re.M)
        path.write_text(re.sub(r"^handed_over = true", "handed_over = false", text, flags=re.M))
    _share_devs_account(envs)
    edit(envs / "qa.toml", old, new)
    message = problems_for(envs)
    assert re.search(rf"qa\.toml: {re.escape(field)}: '.*' differs from '.*' in .*dev\.toml; both are in account "
                     rf"{DEV_ACCOUNT}, whose one account stack needs one value: make them equal", message), message


def test_a_domain_inside_another_environments_domain_is_refused_in_one_account(envs):
    edit(envs / "qa.toml", 'domain = "mGenialQA.olhai.app.br"', 'domain = "qa.mGenialDev.olhai.app.br"')
    load_all(envs)  # separate accounts: each deploy role writes only its own account's zones
    _share_devs_account(envs)
    assert re.search(r"qa\.toml: domain: 'qa\.mgenialdev\.olhai\.app\.br' lies inside 'mgenialdev\.olhai\.app\.br' "
                     r"of .*dev\.toml in the same account 111122223333", problems_for(envs))


def test_overlapping_iam_names_are_refused_in_one_account(envs):
    """twentycrm-dev-* (dev's deploy role's IAM rights) would match the roles of an environment 'dev-2'."""
    text = (envs / "qa.toml").read_text().replace(QA_ACCOUNT, DEV_ACCOUNT)
    (envs / "dev-2.toml").write_text(text.replace('github_environment = "qa"', 'github_environment = "dev-2"'))
    (envs / "qa.toml").unlink()
    message = problems_for(envs)
    assert re.search(r"dev\.toml: IAM names 'twentycrm-dev-\*' and 'twentycrm-dev-2-\*' of .*dev-2\.toml overlap in "
                     r"account 111122223333", message), message


def test_account_state_buckets_are_apart(envs):
    edit(envs / "qa.toml", f"olhai-twentycrm-account-{QA_ACCOUNT}-tfstate",
         f"olhai-twentycrm-account-{DEV_ACCOUNT}-tfstate")
    assert f"qa.toml: account.state_bucket: 'olhai-twentycrm-account-{DEV_ACCOUNT}-tfstate' is already the state " \
        f"bucket of account {DEV_ACCOUNT}" in problems_for(envs)
    edit(envs / "qa.toml", f"olhai-twentycrm-account-{DEV_ACCOUNT}-tfstate", "olhai-twentycrm-dev-tfstate")
    assert "qa.toml: account.state_bucket: 'olhai-twentycrm-dev-tfstate' is state.bucket of" in problems_for(envs)


def test_every_problem_of_every_file_is_reported_at_once(envs):
    edit(envs / "dev.toml", "[state]", 'colour = "blue"\n[state]')
    edit(envs / "prod.toml", 'bucket = "olhai-twentycrm-prod-tfstate"', 'bucket = "UPPER"')
    message = problems_for(envs)
    assert "dev.toml: colour" in message and "prod.toml: state.bucket" in message


def test_an_invalid_file_name_is_rejected(envs):
    (envs / "dev.toml").rename(envs / "Dev Env.toml")
    assert re.search(r"Dev Env\.toml: file name: 'Dev Env' is not a valid environment name", problems_for(envs))


def test_the_account_stacks_name_is_no_environment_name(envs):
    (envs / "qa.toml").rename(envs / "account.toml")
    assert re.search(r"account\.toml: file name: 'account' is reserved: .* its resources carry the tag "
                     r"Environment = \"account\", which the deploy roles' fences must never take for an "
                     r"environment's", problems_for(envs))


def test_an_empty_directory_is_rejected(tmp_path):
    assert "no environment files (*.toml) found" in problems_for(tmp_path)


def test_the_command_fails_before_writing_anything(envs, tmp_path):
    """A bad file stops main.py with exit status 2, the message on stderr, and no cdktf.out."""
    edit(envs / "prod.toml", "[state]", 'colour = "blue"\n[state]')
    outdir = tmp_path / "cdktf.out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "main.py")],
        env={**os.environ, "TWENTYCRM_ENVS_DIR": str(envs), "CDKTF_OUTDIR": str(outdir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "nothing was synthesized" in result.stderr
    assert "prod.toml: colour: unknown key" in result.stderr
    assert not outdir.exists()
    assert list(tmp_path.iterdir()) == [envs], "no scratch directory may be left behind"


def test_a_failed_synth_keeps_the_previous_output(tmp_path, monkeypatch):
    """If building the stacks fails halfway, the last good cdktf.out stays as it was."""
    import main
    import modules.stacks

    outdir = tmp_path / "cdktf.out"
    (outdir / "stacks").mkdir(parents=True)
    (outdir / "stacks" / "marker").write_text("previous synth")

    def broken(scope, settings):
        raise RuntimeError("construct failed")

    monkeypatch.setattr(modules.stacks, "build_environment", broken)
    with pytest.raises(RuntimeError, match="construct failed"):
        main.synth(ROOT / "envs", outdir)
    assert (outdir / "stacks" / "marker").read_text() == "previous synth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdktf.out"]


# --- [apps]: Twenty's tag, Redis, e-mail and the connection budget (docs/settings.md) --------

_EMAIL = '\n[apps.email]\nhost = "email-smtp.sa-east-1.amazonaws.com"\nuser = "crm"\nfrom_address = "crm@olhai.app.br"\n'


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param('twenty_image_tag = "v2.45.6"', 'twenty_image_tag = "latest"', r"dev\.toml: apps\.twenty_image_tag: 'latest' is not a released Twenty version; use the tag of a release as 'vMAJOR\.MINOR\.PATCH'", id="tag-latest"),
        pytest.param('twenty_image_tag = "v2.45.6"', 'twenty_image_tag = "1.2"', r"dev\.toml: apps\.twenty_image_tag: '1\.2' is not a released Twenty version", id="tag-malformed"),
        pytest.param('twenty_image_tag = "v2.45.6"', 'twenty_image_tag = "v1.14.0"', r"dev\.toml: apps\.twenty_image_tag: 'v1\.14\.0' is outside the releases the migration Job is written for \(v2\.x from v2\.45\.0\); pin a 2\.x tag", id="tag-1x"),
        pytest.param('twenty_image_tag = "v2.45.6"', 'twenty_image_tag = "v2.44.0"', r"dev\.toml: apps\.twenty_image_tag: 'v2\.44\.0' is outside the releases", id="tag-old-2x"),
        pytest.param('twenty_image_tag = "v2.45.6"', 'twenty_image_tag = "v3.0.0"', r"dev\.toml: apps\.twenty_image_tag: 'v3\.0\.0' is outside the releases", id="tag-3x"),
        pytest.param('redis_image_tag = "7.4.6-alpine"', 'redis_image_tag = "7.4.5-alpine"', r"dev\.toml: apps\.redis_image_tag: Redis 7\.4\.5 is below the fixed release 7\.4\.6 of the 7\.4 line \(CVE-2025-49844, Lua use-after-free, remote code execution\); use 7\.4\.6 or later", id="redis-below-fix"),
        pytest.param('redis_image_tag = "7.4.6-alpine"', 'redis_image_tag = "8.2.1"', r"dev\.toml: apps\.redis_image_tag: Redis 8\.2\.1 is below the fixed release 8\.2\.2 of the 8\.2 line", id="redis-8-below-fix"),
        pytest.param('redis_image_tag = "7.4.6-alpine"', 'redis_image_tag = "7.2.10"', r"dev\.toml: apps\.redis_image_tag: Redis 7\.2\.10 is below the fixed release 7\.2\.11 of the 7\.2 line", id="redis-7.2-below-fix"),
        pytest.param('redis_image_tag = "7.4.6-alpine"', 'redis_image_tag = "8.0.3-alpine"', r"dev\.toml: apps\.redis_image_tag: Redis 8\.0\.3 is below the fixed release 8\.0\.4 of the 8\.0 line", id="redis-8.0-below-fix"),
        pytest.param('redis_image_tag = "7.4.6-alpine"', 'redis_image_tag = "6.2.20"', r"dev\.toml: apps\.redis_image_tag: Redis 6\.2\.20 is not a line this chart runs; use one of 7\.2\.11\+ on 7\.2, 7\.4\.6\+ on 7\.4, 8\.0\.4\+ on 8\.0, 8\.2\.2\+ on 8\.2", id="redis-6"),
        pytest.param("multiworkspace = false", "multiworkspace = true", r"dev\.toml: apps\.multiworkspace: true is refused for now: workspaces live on sub-domains, which need '\*\.<domain>' in dns\.extra_certificate_names and a wildcard alias record, and dns\.extra_certificate_names does not accept a '\*' name yet; keep multiworkspace = false", id="multiworkspace"),
        pytest.param("secret_revision = 1", 'secret_revision = 1\nextra_env = { PG_DATABASE_REPLICA_URL = "postgres://replica/twenty" }', r"dev\.toml: apps\.extra_env: 'PG_DATABASE_REPLICA_URL' is refused: PG_\* variables \(PG_DATABASE_REPLICA_URL, PG_POOL_\*\) open or size database pools outside the connection budget; remove it", id="extra-env-replica"),
        pytest.param("secret_revision = 1", 'secret_revision = 1\nextra_env = { PG_POOL_IDLE_TIMEOUT_MS = "1000" }', r"dev\.toml: apps\.extra_env: 'PG_POOL_IDLE_TIMEOUT_MS' is refused", id="extra-env-pool"),
        pytest.param("secret_revision = 1", 'secret_revision = 1\nextra_env = { sign_in = "x" }', r"dev\.toml: apps\.extra_env: 'sign_in' is not an environment variable name", id="extra-env-name"),
        pytest.param('upgrade_strategy = "stop"', 'upgrade_strategy = "recreate"', r"dev\.toml: apps\.upgrade_strategy: .*'stop' or 'rolling'", id="upgrade-strategy"),
        pytest.param('redis_image_tag = "7.4.6-alpine"', 'redis_image_tag = "latest"', r"dev\.toml: apps\.redis_image_tag: 'latest' is not a pinned Redis version", id="redis-latest"),
        pytest.param("secret_revision = 1", "secret_revision = 1" + _EMAIL + 'password = "hunter2"\npassword_secret = "twentycrm/dev/smtp"', r"dev\.toml: apps\.email: 'password' holds the SMTP password as a literal; remove it, store the password in Secrets Manager and set password_secret", id="smtp-literal-password"),
        pytest.param("secret_revision = 1", "secret_revision = 1" + _EMAIL + 'smtp_password = "hunter2"', r"dev\.toml: apps\.email: 'smtp_password' holds the SMTP password as a literal", id="smtp-literal-smtp-password"),
        pytest.param("secret_revision = 1", "secret_revision = 1" + _EMAIL, r"dev\.toml: apps\.email\.password_secret: required field is missing", id="smtp-without-secret"),
        pytest.param("secret_revision = 1", "secret_revision = 1" + _EMAIL + 'password_secret = "Hunter2hunter2"', r"dev\.toml: apps\.email\.password_secret: is not a Secrets Manager secret ARN .* nor a path-like secret name with a '/' \(e\.g\. 'twentycrm/<env>/smtp'\); a literal password must not be in this file", id="smtp-secret-bare-word"),
        pytest.param("secret_revision = 1", "secret_revision = 1" + _EMAIL + 'password_secret = "arn:aws:secretsmanager:sa-east-1:123456789012:secret:"', r"dev\.toml: apps\.email\.password_secret: is not a Secrets Manager secret ARN", id="smtp-secret-arn-without-name"),
        pytest.param("pg_pool_max_connections = 5", "pg_pool_max_connections = 10", r"dev\.toml: \(top level\): database\.max_connections \(100\) is below Twenty's worst case of 186 connections: \(apps\.server_max_replicas 5 \+ 1 rollout surge \+ apps\.worker_replicas 1 \+ 1 rollout surge \+ 1 migration Job\) x 2 pools x apps\.pg_pool_max_connections 10 \+ 6 for maintenance; raise database\.max_connections or lower those apps fields", id="pool-budget-over"),
        pytest.param("server_max_replicas = 5", "server_max_replicas = 6", r"dev\.toml: \(top level\): database\.max_connections \(100\) is below Twenty's worst case of 106", id="replicas-over-budget"),
    ],
)  # fmt: skip
def test_bad_apps_settings_stop_synth_naming_file_and_field(envs, old, new, expected):
    edit(envs / "dev.toml", old, new)
    assert re.search(expected, problems_for(envs)), problems_for(envs)


def test_the_budget_is_met_exactly_at_the_limit(envs):
    """(5 + 1 surge + 1 + 1 surge + 1 Job) x 2 x 6 + 6 = 114: over 100 is refused; allowed once max_connections
    says so. The rollout surge counts: a rolling update runs maxSurge more pods than the HPA maximum."""
    edit(envs / "dev.toml", "pg_pool_max_connections = 5", "pg_pool_max_connections = 6")
    assert "worst case of 114" in problems_for(envs)
    edit(envs / "dev.toml", 'username = "twenty"', 'username = "twenty"\nmax_connections = 114')
    assert load_environment(envs / "dev.toml").database.max_connections == 114


def test_the_role_connection_limit_is_the_hosts_and_fits_twentys_worst_case(envs):
    """EnvironmentSettings.twenty_connection_limit is the CONNECTION LIMIT the database host renders into its
    cloud-init (modules/database.py role_connection_limit): max_connections less the 6 maintenance connections,
    and at least Twenty's worst case (every pod the HPA, the surges and the migration Job allow, two pools each)."""
    from modules.database import role_connection_limit
    from modules.settings.apps import twenty_connections

    for name, limit in (("dev", 94), ("qa", 94), ("prod", 144)):
        env = load_environment(envs / f"{name}.toml")
        assert env.twenty_connection_limit == role_connection_limit(env) == env.database.max_connections - 6 == limit
        assert twenty_connections(env.apps) <= env.twenty_connection_limit
    edit(envs / "dev.toml", 'username = "twenty"', 'username = "twenty"\nmax_connections = 120')
    assert load_environment(envs / "dev.toml").twenty_connection_limit == 114


@pytest.mark.parametrize("tag", ["7.2.11", "7.4.6-alpine", "8.0.4", "8.2.2-bookworm", "8.2.3"])
def test_every_fixed_redis_release_is_accepted(envs, tag, tmp_path):
    edit(envs / "dev.toml", 'redis_image_tag = "7.4.6-alpine"', f'redis_image_tag = "{tag}"')
    lock = lock_with(tmp_path, *([("docker.io/library/redis", tag)] if tag != "7.4.6-alpine" else []))
    assert load_environment(envs / "dev.toml", lock).apps.redis_image_tag == tag


def test_extra_env_reaches_the_chart(envs):
    from modules.apps import chart_values

    edit(envs / "dev.toml", "secret_revision = 1", 'secret_revision = 1\nextra_env = { SIGN_IN_PREFILLED = "false" }')
    values = chart_values(load_environment(envs / "dev.toml"), "frontend", target_group_arn="arn", database={})
    assert values["extraEnv"] == {"SIGN_IN_PREFILLED": "false"}


def test_an_smtp_password_secret_is_accepted(envs):
    edit(envs / "dev.toml", "secret_revision = 1", "secret_revision = 1" + _EMAIL + 'password_secret = "twentycrm/dev/smtp"')
    email = load_environment(envs / "dev.toml").apps.email
    assert (email.host, email.port, email.password_secret) == ("email-smtp.sa-east-1.amazonaws.com", 587,
                                                               "twentycrm/dev/smtp")  # fmt: skip


# --- the image lock (images.lock.toml) ------------------------------------------------------


def test_every_environment_pins_its_images_from_the_lock(settings):
    from modules.settings.images import DIGEST, load_lock

    lock = load_lock()
    for env in settings.values():
        for image in (env.images.twenty, env.images.redis, env.images.kubectl):
            assert DIGEST.match(image.digest) and lock[image.upstream][image.tag].digest == image.digest
        assert env.images.twenty.tag == env.apps.twenty_image_tag and env.images.redis.tag == env.apps.redis_image_tag


def test_a_tag_missing_from_the_lock_names_the_file_the_field_and_the_command(envs):
    edit(envs / "dev.toml", 'twenty_image_tag = "v2.45.6"', 'twenty_image_tag = "v2.46.0"')
    message = problems_for(envs)
    assert ("dev.toml: apps.twenty_image_tag: docker.io/twentycrm/twenty:v2.46.0 has no digest in images.lock.toml"
            in message)
    assert "run `scripts/images lock docker.io/twentycrm/twenty:v2.46.0`" in message


def test_a_cluster_whose_kubectl_is_not_locked_is_refused(envs):
    edit(envs / "qa.toml", 'kubernetes_version = "1.35"', 'kubernetes_version = "1.36"')
    message = problems_for(envs)
    assert "qa.toml: cluster.kubernetes_version (kubectl v1.36.0 for 1.36): registry.k8s.io/kubectl:v1.36.0" in message


@pytest.mark.parametrize("digest, problem", [
    ("sha256:DCA6D82985901468B391C0335AA8F0519A52B9809709E66F2DE1DBFF04351E53", "digest: String should match pattern"),
    ("sha256:dca6d829", "digest: String should match pattern"),
    ("dca6d82985901468b391c0335aa8f0519a52b9809709e66f2de1dbff04351e53", "digest: String should match pattern"),
])  # fmt: skip
def test_a_malformed_digest_in_the_lock_is_refused_with_the_fix(tmp_path, digest, problem):
    from modules.settings import SettingsError
    from modules.settings.images import load_lock

    lock = tmp_path / "images.lock.toml"
    lock.write_text((ROOT / "images.lock.toml").read_text().replace(
        "sha256:dca6d82985901468b391c0335aa8f0519a52b9809709e66f2de1dbff04351e53", digest))
    with pytest.raises(SettingsError) as caught:
        load_lock(lock)
    text = "\n".join(caught.value.problems)
    assert f'{lock}: ["docker.io/twentycrm/twenty"."v2.45.6"]: {problem}' in text
    assert "`scripts/images lock docker.io/twentycrm/twenty:v2.45.6`" in text


def test_an_ecr_prefix_over_30_characters_is_refused(envs):
    edit(envs / "dev.toml", 'region = "sa-east-1"', 'region = "sa-east-1"\nproject = "twentycrm-olhai-crms"')
    message = problems_for(envs)
    assert ("dev.toml: project: the ECR pull-through cache prefix 'twentycrm-olhai-crms-dev/docker' is 31 characters, "
            "over ECR's 30; shorten project or the environment file's name") in message
