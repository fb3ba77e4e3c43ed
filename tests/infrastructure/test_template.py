"""template.yaml carries the runner's security model; these tests pin the properties that do.

The template is read as CloudFormation reads it (cfn-lint's loader understands the short `!Ref`
tags) and, where the SAM transform decides what gets deployed, translated by the SAM translator
itself, offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from runner.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
Template = Mapping[str, Any]

# Everything the function's role may do: write its own logs and traces, and let Lambda manage
# the function's network interfaces in the VPC (AWSLambdaENIManagementAccess + DescribeSubnets).
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
TRACE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
ENI_ACTIONS = {
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}
PUBLIC_ENTRY_TYPES = {
    "AWS::Lambda::Url", "AWS::Lambda::Permission", "AWS::Serverless::Api",
    "AWS::Serverless::HttpApi", "AWS::ApiGateway::RestApi", "AWS::ApiGatewayV2::Api",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
}
NETWORK_PATH_TYPES = {
    "AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::EgressOnlyInternetGateway",
    "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress", "AWS::EC2::EIP",
}


def load_template() -> Template:
    document, problems = decode(str(ROOT / "template.yaml"))
    assert not problems, problems
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: Template) -> Mapping[str, Any]:
    return template["Resources"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def function(resources: Mapping[str, Any]) -> Mapping[str, Any]:
    return resources["RunnerFunction"]["Properties"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def policy_statements(resources: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    role = resources["RunnerRole"]["Properties"]
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


@pytest.fixture(scope="module")
def translated() -> Template:
    """What CloudFormation deploys after the SAM transform (as after `sam package`)."""
    document = load_template()
    document["Resources"]["RunnerFunction"]["Properties"]["CodeUri"] = "s3://artifacts/fn.zip"
    document["Resources"]["NodeRuntimeLayer"]["Properties"]["ContentUri"] = "s3://artifacts/l.zip"
    # The transform only needs a region for its pseudo parameters; it calls no AWS API here
    # because the template uses no managed policy.
    session = boto3.session.Session(region_name="us-east-1")
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), boto_session=session)
    return translator.translate(document, parameter_values={})  # type: ignore[no-any-return]


def _actions(statement: Mapping[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def _allowed(statements: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    return (s for s in statements if s["Effect"] == "Allow")


# --- runtime ------------------------------------------------------------------------------


def test_function_is_python313_on_x86_64_with_the_runner_handler(
        function: Mapping[str, Any]) -> None:
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["x86_64"]
    assert function["Handler"] == "runner.app.lambda_handler"
    assert (ROOT / "runner" / "app.py").is_file()


def test_function_is_built_as_the_runner_package(resources: Mapping[str, Any]) -> None:
    resource = resources["RunnerFunction"]
    assert resource["Properties"]["CodeUri"] == "runner/"
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    context = ROOT / resource["Metadata"]["ContextPath"] / "Makefile"
    assert "build-RunnerFunction:" in context.read_text()


def test_tracing_is_active_and_powertools_keeps_payloads_out(
        function: Mapping[str, Any]) -> None:
    env = function["Environment"]["Variables"]
    assert function["Tracing"] == "Active"
    assert env["POWERTOOLS_SERVICE_NAME"] == "udf-runner"
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    # The payload holds the capability token; a result holds user data.
    assert env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    # No pydantic plugin: its entry-point scan is skipped at cold start.
    assert env["PYDANTIC_DISABLE_PLUGINS"] == "__all__"


def test_every_runner_variable_is_a_setting(function: Mapping[str, Any]) -> None:
    names = [n for n in function["Environment"]["Variables"] if n.startswith(PREFIX)]
    fields = {PREFIX + field.upper() for field in Settings.model_fields}
    assert set(names) <= fields, set(names) - fields
    assert {"UDF_RUNNER_MINTER_URL", "UDF_RUNNER_QUERY_URL", "UDF_RUNNER_MAX_TIMEOUT_MS",
            "UDF_RUNNER_WORK_ROOT", "UDF_RUNNER_NODE_LAYER"} <= set(names)


def test_local_only_settings_are_empty_in_aws(function: Mapping[str, Any]) -> None:
    env = function["Environment"]["Variables"]
    assert env["UDF_RUNNER_S3_ENDPOINT_URL"] == ""
    assert env["UDF_RUNNER_WORK_ROOT"] == "/tmp/udf-runner"
    assert env["UDF_RUNNER_NODE_LAYER"] == "/opt"


def test_node_layer_is_attached(resources: Mapping[str, Any],
                                function: Mapping[str, Any]) -> None:
    layer = resources["NodeRuntimeLayer"]
    assert function["Layers"] == [{"Ref": "NodeRuntimeLayer"}]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/nodejs/"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]


def test_function_timeout_is_the_largest_task_timeout_plus_a_margin(
        template: Template, function: Mapping[str, Any]) -> None:
    allowed = template["Parameters"]["MaxTaskTimeoutSeconds"]["AllowedValues"]
    mapping = template["Mappings"]["TaskTimeouts"]
    assert function["Timeout"] == {
        "Fn::FindInMap": ["TaskTimeouts", {"Ref": "MaxTaskTimeoutSeconds"}, "FunctionTimeout"]}
    assert sorted(mapping, key=int) == [str(v) for v in allowed]
    for task_seconds, row in mapping.items():
        assert row["FunctionTimeout"] == int(task_seconds) + 60
        assert row["FunctionTimeout"] <= 900
    assert function["Environment"]["Variables"]["UDF_RUNNER_MAX_TIMEOUT_MS"] == {
        "Fn::Sub": "${MaxTaskTimeoutSeconds}000"}


def test_sizes_are_parameters_with_sane_defaults(template: Template,
                                                 function: Mapping[str, Any]) -> None:
    params = template["Parameters"]
    assert function["MemorySize"] == {"Ref": "MemorySize"}
    assert function["EphemeralStorage"] == {"Size": {"Ref": "EphemeralStorageSize"}}
    assert 1024 <= params["MemorySize"]["Default"] <= 10_240
    # Room for a 250 MB zip, its 250 MB extraction and the 512 MB verified-zip cache.
    assert params["EphemeralStorageSize"]["Default"] >= 1024
    assert function["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReserveConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}


def test_logs_go_to_a_log_group_with_retention(resources: Mapping[str, Any],
                                               function: Mapping[str, Any]) -> None:
    group = resources["RunnerLogGroup"]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": "RunnerLogGroup"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"


# --- tenancy ------------------------------------------------------------------------------


def test_each_tenant_gets_its_own_execution_environments(
        template: Template, function: Mapping[str, Any]) -> None:
    assert template["Parameters"]["TenantIsolation"]["Default"] == "PER_TENANT"
    assert template["Conditions"]["IsolateTenants"] == {
        "Fn::Equals": [{"Ref": "TenantIsolation"}, "PER_TENANT"]}
    assert function["TenancyConfig"] == {"Fn::If": [
        "IsolateTenants", {"TenantIsolationMode": "PER_TENANT"}, {"Ref": "AWS::NoValue"}]}


def test_sam_passes_tenancy_vpc_and_tracing_through(translated: Template) -> None:
    fn = translated["Resources"]["RunnerFunction"]
    assert fn["Type"] == "AWS::Lambda::Function"
    props = fn["Properties"]
    assert props["TenancyConfig"]["Fn::If"][1] == {"TenantIsolationMode": "PER_TENANT"}
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["VpcConfig"]["SecurityGroupIds"] == [{"Ref": "RunnerSecurityGroup"}]
    assert props["Role"] == {"Fn::GetAtt": ["RunnerRole", "Arn"]}


# --- identity -----------------------------------------------------------------------------


def test_role_is_the_only_identity_and_lambda_alone_assumes_it(
        resources: Mapping[str, Any], function: Mapping[str, Any]) -> None:
    roles = [name for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"]
    assert roles == ["RunnerRole"]
    assert function["Role"] == {"Fn::GetAtt": ["RunnerRole", "Arn"]}
    # SAM would attach managed policies for these; the role is complete on its own.
    assert not {"Policies", "PermissionsBoundary"} & set(function)
    role = resources["RunnerRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                     "Action": "sts:AssumeRole"}


def test_translated_stack_adds_no_role_or_policy(translated: Template) -> None:
    types = {r["Type"] for r in translated["Resources"].values()}
    assert not {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User",
                "AWS::IAM::AccessKey"} & types
    roles = [n for n, r in translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    assert roles == ["RunnerRole"]


def test_role_may_write_its_logs_and_traces_and_nothing_else(
        policy_statements: list[Mapping[str, Any]]) -> None:
    allowed: set[str] = set()
    for statement in _allowed(policy_statements):
        allowed |= _actions(statement)
    assert allowed == LOG_ACTIONS | TRACE_ACTIONS | ENI_ACTIONS
    assert not any("*" in action for action in allowed)


def test_logs_are_written_only_to_the_functions_log_group(
        policy_statements: list[Mapping[str, Any]]) -> None:
    [logs] = [s for s in _allowed(policy_statements) if _actions(s) & LOG_ACTIONS]
    assert _actions(logs) == LOG_ACTIONS
    assert logs["Resource"] == {"Fn::GetAtt": ["RunnerLogGroup", "Arn"]}


def test_code_in_the_function_cannot_manage_network_interfaces(
        policy_statements: list[Mapping[str, Any]]) -> None:
    [deny] = [s for s in policy_statements if s["Effect"] == "Deny"]
    assert _actions(deny) == ENI_ACTIONS
    assert deny["Resource"] == "*"
    # Lambda marks every call made from the execution environment with lambda:SourceFunctionArn
    # and its own network-interface calls without it.
    assert deny["Condition"] == {"Null": {"lambda:SourceFunctionArn": "false"}}


# --- network ------------------------------------------------------------------------------


def test_function_runs_in_the_given_private_subnets_with_its_own_group(
        template: Template, function: Mapping[str, Any]) -> None:
    assert template["Parameters"]["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert function["VpcConfig"] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": [{"Ref": "RunnerSecurityGroup"}],
    }


def test_security_group_lets_nothing_in_and_only_https_to_the_endpoints_out(
        resources: Mapping[str, Any]) -> None:
    group = resources["RunnerSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in group
    egress = group["SecurityGroupEgress"]
    ports = [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in egress]
    assert ports == [("tcp", 443, 443)] * 2
    destinations = [{k: v for k, v in r.items() if k.startswith(("Destination", "Cidr"))}
                    for r in egress]
    assert destinations == [
        {"DestinationPrefixListId": {"Ref": "S3PrefixListId"}},
        {"DestinationSecurityGroupId": {"Ref": "ServiceEndpointSecurityGroupId"}},
    ]


def test_stack_opens_no_other_network_path(resources: Mapping[str, Any]) -> None:
    types = {r["Type"] for r in resources.values()}
    assert not NETWORK_PATH_TYPES & types


def test_service_urls_must_be_https(template: Template) -> None:
    for name in ("MinterUrl", "QueryUrl"):
        pattern = re.compile(template["Parameters"][name]["AllowedPattern"])
        assert pattern.fullmatch("https://minter.platform.internal")
        assert pattern.fullmatch("https://vpce-0a1b.example.internal/base/path")
        assert not pattern.fullmatch("http://minter.platform.internal")
        assert not pattern.fullmatch("https://")


# --- no public entry point ----------------------------------------------------------------


def test_function_has_no_url_no_events_and_no_resource_policy(
        resources: Mapping[str, Any], function: Mapping[str, Any]) -> None:
    assert not {"FunctionUrlConfig", "Events"} & set(function)
    types = {r["Type"] for r in resources.values()}
    assert not PUBLIC_ENTRY_TYPES & types


def test_translated_stack_has_no_url_or_permission(translated: Template) -> None:
    types = {r["Type"] for r in translated["Resources"].values()}
    assert not PUBLIC_ENTRY_TYPES & types
    assert types == {
        "AWS::Lambda::Function", "AWS::Lambda::Version", "AWS::Lambda::Alias",
        "AWS::Lambda::LayerVersion", "AWS::IAM::Role", "AWS::EC2::SecurityGroup",
        "AWS::Logs::LogGroup",
    }


# --- outputs ------------------------------------------------------------------------------


def test_outputs_name_the_function_and_its_role(template: Template) -> None:
    outputs = template["Outputs"]
    assert outputs["RunnerFunctionArn"]["Value"] == {"Fn::GetAtt": ["RunnerFunction", "Arn"]}
    assert outputs["RunnerRoleArn"]["Value"] == {"Fn::GetAtt": ["RunnerRole", "Arn"]}
    assert outputs["RunnerFunctionAliasArn"]["Value"] == {"Ref": "RunnerFunction.Alias"}
