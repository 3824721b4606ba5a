"""DNSSEC signing and query logging of each environment's zone (issue 14), in us-east-1 as Route53 requires;
the account stack's log delivery resource policies; the settings that refuse them on a zone that is not ours."""

from __future__ import annotations

import json
import re

import pytest
from conftest import build_stack, copy_envs, edit, problems_for, with_changes
from terraform_support import BOOTSTRAP_ENV

from modules.stacks import PlatformStack, StateStack

US_EAST_1 = "aws.us_east_1"


def _address(stack, resource_type: str, path: str) -> str:
    return f"{resource_type}.{stack.by_path(resource_type, path)['//']['metadata']['uniqueId']}"


def test_the_platform_stack_has_a_us_east_1_provider_like_its_own(platform_stack, settings, env):
    main, alias = platform_stack.json["provider"]["aws"]
    assert (alias["alias"], alias["region"]) == ("us_east_1", "us-east-1")
    assert alias["allowed_account_ids"] == main["allowed_account_ids"] == [settings[env].account.id]
    assert alias["default_tags"] == main["default_tags"]


def test_the_zone_is_signed_by_a_ksk_on_an_asymmetric_key_in_us_east_1(platform_stack, settings, env):
    key = platform_stack.by_path("aws_kms_key", "dns/dnssec/key")
    assert (key["customer_master_key_spec"], key["key_usage"], key["provider"]) == (
        "ECC_NIST_P256", "SIGN_VERIFY", US_EAST_1)
    assert key["enable_key_rotation"] is False  # KMS rotates symmetric keys only
    assert key["tags"]["Component"] == settings[env].component(settings[env].dns.id)
    statements = {s["Sid"]: s for s in json.loads(key["policy"])["Statement"]}
    use, grant = statements["Route53DnssecUsesKey"], statements["Route53DnssecGrantsItself"]
    for statement in (use, grant):
        assert statement["Principal"] == {"Service": "dnssec-route53.amazonaws.com"}
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"].startswith("${data.aws_caller_identity.")
        assert statement["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":route53:::hostedzone/*")
    assert use["Action"] == ["kms:DescribeKey", "kms:GetPublicKey", "kms:Sign"]
    assert (grant["Action"], grant["Condition"]["Bool"]) == ("kms:CreateGrant", {"kms:GrantIsForAWSResource": "true"})
    alias = platform_stack.by_path("aws_kms_alias", "dns/dnssec/alias")
    assert (alias["name"], alias["provider"]) == (f"alias/twentycrm-{env}-dnssec", US_EAST_1)

    ksk = platform_stack.by_path("aws_route53_key_signing_key", "dns/dnssec/key-signing-key")
    assert ksk["status"] == "ACTIVE" and re.fullmatch(r"[a-z0-9_]{3,128}", ksk["name"])
    assert ksk["key_management_service_arn"] == f"${{{_address(platform_stack, 'aws_kms_key', 'dns/dnssec/key')}.arn}}"
    assert ksk["hosted_zone_id"] == f"${{{_address(platform_stack, 'aws_route53_zone', 'dns/zone')}.zone_id}}"
    signing = platform_stack.only("aws_route53_hosted_zone_dnssec")
    ksk_address = _address(platform_stack, "aws_route53_key_signing_key", "dns/dnssec/key-signing-key")
    assert signing["hosted_zone_id"] == f"${{{ksk_address}.hosted_zone_id}}"
    assert signing["signing_status"] == "SIGNING" and signing["depends_on"] == [ksk_address]


def test_the_ds_record_output_is_the_ksks(platform_stack):
    """What the parent zone publishes comes from the KSK Route53 made, never from anything computed here."""
    ksk = _address(platform_stack, "aws_route53_key_signing_key", "dns/dnssec/key-signing-key")
    outputs = platform_stack.json["output"]
    expected = {"ds_record": "ds_record", "dnssec_key_tag": "key_tag", "dnssec_signing_algorithm":
                "signing_algorithm_type", "dnssec_digest_algorithm": "digest_algorithm_type",
                "dnssec_digest": "digest_value", "dnssec_public_key": "public_key"}  # fmt: skip
    assert {name: outputs[name]["value"] for name in expected} == {
        name: f"${{{ksk}.{attribute}}}" for name, attribute in expected.items()}


def test_query_logs_go_to_an_encrypted_log_group_in_us_east_1(platform_stack, settings, env):
    dns = settings[env].dns
    group = platform_stack.by_path("aws_cloudwatch_log_group", "dns/query-logging/log-group")
    assert (group["name"], group["retention_in_days"], group["provider"]) == (
        f"/aws/route53/{settings[env].zone_name}", dns.query_log_retention_days, US_EAST_1)
    assert dns.query_log_retention_days == 365
    key_address = _address(platform_stack, "aws_kms_key", "dns/query-logging/log-group-key/key")
    assert group["kms_key_id"] == f"${{{key_address}.arn}}"
    key = platform_stack.by_path("aws_kms_key", "dns/query-logging/log-group-key/key")
    assert key["provider"] == US_EAST_1 and key["enable_key_rotation"] is True
    logs = next(s for s in json.loads(key["policy"])["Statement"] if s["Sid"] == "CloudWatchLogsUsesKey")
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert re.fullmatch(r"arn:\$\{data\.aws_partition\.[\w-]+\.partition\}:logs:us-east-1:"
                        r"\$\{data\.aws_caller_identity\.[\w-]+\.account_id\}:log-group:"
                        + re.escape(f"/aws/route53/{settings[env].zone_name}"),
                        logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    query_log = platform_stack.only("aws_route53_query_log")
    group_address = _address(platform_stack, "aws_cloudwatch_log_group", "dns/query-logging/log-group")
    assert query_log["cloudwatch_log_group_arn"] == f"${{{group_address}.arn}}"
    assert query_log["zone_id"] == f"${{{_address(platform_stack, 'aws_route53_zone', 'dns/zone')}.zone_id}}"
    assert platform_stack.json["output"]["query_log_group"]["value"] == f"${{{group_address}.name}}"


def test_both_off_leave_nothing_in_us_east_1_and_the_deploy_role_nothing_there(settings):
    off = with_changes(settings["dev"], dns={"dnssec": False, "query_logging": False})
    platform = build_stack(PlatformStack, off).json
    assert not any(r.get("provider") == US_EAST_1 for body in platform["resource"].values() for r in body.values())
    assert "ds_record" not in platform["output"] and "query_log_group" not in platform["output"]
    def deploy_sids(environment) -> set[str]:
        [policy] = [p for p in build_stack(StateStack, environment).resources("aws_iam_role_policy").values()
                    if p["name"] == "platform-stack"]  # fmt: skip
        return {s["Sid"] for s in json.loads(policy["policy"])["Statement"]}

    assert not {s for s in deploy_sids(off) if s.endswith("InUsEast1")}, deploy_sids(off)
    assert deploy_sids(settings["dev"]) >= {"OwnKeysInUsEast1", "CreateOwnKeysInUsEast1", "KeyAliasesInUsEast1",
                                            "QueryLogGroupInUsEast1", "ListLogGroupsInUsEast1"}  # fmt: skip


# --- settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        pytest.param('existing_zone = "olhai.app.br"\ndnssec = false',
                     r"dev\.toml: \(top level\): dns\.query_logging = true needs a zone these stacks create, but "
                     r"dns\.existing_zone 'olhai\.app\.br' is someone else's: set dns\.query_logging = false",
                     id="query-logging-on-an-existing-zone"),
    ],
)
def test_logging_on_a_zone_that_is_not_ours_is_refused(tmp_path, new, expected):
    envs = copy_envs(tmp_path)
    edit(envs / "dev.toml", '# existing_zone = "olhai.app.br"', new)
    edit(envs / "dev.toml", "dnssec = true ", "# dnssec ")
    message = problems_for(envs)
    assert re.search(expected, message), message
    assert "dns.dnssec" not in message


def test_signing_a_zone_that_is_not_ours_is_refused(tmp_path):
    envs = copy_envs(tmp_path)
    edit(envs / "dev.toml", '# existing_zone = "olhai.app.br"', 'existing_zone = "olhai.app.br"')
    message = problems_for(envs)
    assert re.search(r"dev\.toml: \(top level\): dns\.dnssec = true needs a zone these stacks create, but "
                     r"dns\.existing_zone 'olhai\.app\.br' is someone else's: set dns\.dnssec = false \(and sign it "
                     r"in that zone's own configuration\), or remove dns\.existing_zone", message), message


def test_a_query_log_retention_cloudwatch_does_not_offer_is_refused(tmp_path):
    envs = copy_envs(tmp_path)
    edit(envs / "dev.toml", "query_log_retention_days = 365", "query_log_retention_days = 100")
    assert re.search(r"dev\.toml: dns\.query_log_retention_days: allowed values are 1, 3, 5", problems_for(envs))


# --- the account stack's log delivery resource policies ---------------------------------------------------


def test_the_account_stack_lets_route53_and_log_delivery_write_in_each_region(synthesized, settings):
    from cdktf import Testing

    from modules.account import AccountStack

    for env in settings.values():
        stack = synthesized.stack(f"twentycrm-account-{env.account.id}").json
        policies = {p["policy_name"]: p for p in stack["resource"]["aws_cloudwatch_log_resource_policy"].values()}
        assert set(policies) == {"twentycrm-route53-query-logs", "twentycrm-waf-logs"}
        route53 = policies["twentycrm-route53-query-logs"]
        assert route53["provider"] == US_EAST_1
        [statement] = json.loads(route53["policy_document"])["Statement"]
        assert statement["Principal"] == {"Service": "route53.amazonaws.com"}
        assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
        assert statement["Resource"].endswith(f":logs:us-east-1:{env.account.id}:log-group:/aws/route53/*")
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": env.account.id}
        waf = policies["twentycrm-waf-logs"]
        assert "provider" not in waf  # the account stack's own region is the environment's
        [statement] = json.loads(waf["policy_document"])["Statement"]
        assert statement["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
        assert statement["Resource"].endswith(f":logs:{env.region}:{env.account.id}:log-group:aws-waf-logs-*")
    # an account whose environments use two regions and log no DNS queries: one WAF policy per region, each
    # through a provider of that region with the account fence; no Route53 policy
    account = settings["dev"].account
    other = json.loads(Testing.synth(AccountStack(Testing.app(), project="twentycrm", account=account,
                                                  regions=["sa-east-1", "us-west-2", "sa-east-1"])))  # fmt: skip
    written = list(other["resource"]["aws_cloudwatch_log_resource_policy"].values())
    assert {p["policy_name"] for p in written} == {"twentycrm-waf-logs"}
    assert sorted(str(p.get("provider")) for p in written) == ["None", "aws.us_west_2"]
    providers = {p.get("alias"): p for p in other["provider"]["aws"]}
    assert set(providers) == {None, "us_west_2"}
    assert providers["us_west_2"]["allowed_account_ids"] == [account.id]
    assert providers["us_west_2"]["default_tags"] == providers[None]["default_tags"]


@pytest.mark.slow
def test_the_account_stacks_log_policies_are_applied_against_moto(account_applied, local_aws, settings):
    """The session's account stack, applied whole: both policies exist, in us-east-1 and in the account's region."""
    import boto3

    def policies(region: str) -> dict[str, dict]:
        logs = boto3.client("logs", endpoint_url=local_aws.url, region_name=region, aws_access_key_id="test",
                            aws_secret_access_key="test", verify=str(local_aws.ca_bundle))  # fmt: skip
        return {p["policyName"]: json.loads(p["policyDocument"]) for p in logs.describe_resource_policies()[
            "resourcePolicies"]}  # fmt: skip

    env = settings[BOOTSTRAP_ENV]
    east = policies("us-east-1")
    assert east["twentycrm-route53-query-logs"]["Statement"][0]["Resource"] == (
        f"arn:aws:logs:us-east-1:{env.account.id}:log-group:/aws/route53/*")
    home = policies(env.account.region)
    assert home["twentycrm-waf-logs"]["Statement"][0]["Resource"] == (
        f"arn:aws:logs:{env.region}:{env.account.id}:log-group:aws-waf-logs-*")
    assert "twentycrm-waf-logs" not in east  # no environment of dev's account runs in us-east-1
