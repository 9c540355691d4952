"""OpenTelemetry semantic-convention attributes of task attempts: a Lambda invocation as
`faas.invoked_*`, a call to an AWS service as `rpc.system=aws-api`, `rpc.service`, `rpc.method`,
so that backends show them as they show the same calls made by instrumented code."""

from __future__ import annotations

import re

from exporter.model import AttributeValue

# Step Functions' resource types (the `arn:aws:states:::TYPE:action` part) to the service names
# the AWS SDK instrumentations put in rpc.service.
_SERVICES = {
    "lambda": "Lambda", "dynamodb": "DynamoDB", "sqs": "SQS", "sns": "SNS", "states": "SFN",
    "ecs": "ECS", "batch": "Batch", "glue": "Glue", "sagemaker": "SageMaker", "events": "EventBridge",
    "athena": "Athena", "codebuild": "CodeBuild", "eks": "EKS", "elasticmapreduce": "EMR",
    "emr-containers": "EMRContainers", "emr-serverless": "EMRServerless", "apigateway": "APIGateway",
    "bedrock": "Bedrock", "s3": "S3", "databrew": "DataBrew", "mediaconvert": "MediaConvert",
    "glue-databrew": "DataBrew", "evidently": "Evidently",
}  # fmt: skip
_MAX_NAME = 256
_FUNCTION_NAME = re.compile(r'"FunctionName"\s*:\s*"([^"\\]{1,256})"')


def _function_name(value: object) -> str | None:
    """A Lambda function's name from a name, a partial ARN or an ARN (qualifier dropped)."""
    if not isinstance(value, str) or not value:
        return None
    if ":function:" in value:
        value = value.split(":function:", 1)[1].split(":", 1)[0]
    return value[:_MAX_NAME] or None


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 4 and parts[0] == "arn" and parts[3] else None


def lambda_invocation(function: str, region: str | None) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {"faas.invoked_provider": "aws"}
    name = _function_name(function)
    if name:
        attributes["faas.invoked_name"] = name
    region = _region_of(function) or region
    if region:
        attributes["faas.invoked_region"] = region
    return attributes


def task_attributes(
    resource: str, resource_type: str | None, region: object, parameters: object
) -> dict[str, AttributeValue]:
    """What a TaskScheduled event's resource says in semantic-convention terms. For a Lambda
    integration the function's name is read from the task's parameters (`FunctionName`) and
    nothing else of them is kept."""
    if not resource_type:
        return {}
    service = resource_type.removeprefix("aws-sdk:")
    attributes: dict[str, AttributeValue] = {}
    if resource_type.startswith("aws-sdk:") or service in _SERVICES:
        method = resource.split(".", 1)[0]
        attributes.update({
            "rpc.system": "aws-api",
            "rpc.service": _SERVICES.get(service, service),
            "rpc.method": method[:1].upper() + method[1:],
        })  # fmt: skip
    if service == "lambda":
        # The name only, found without parsing the parameters (they can be 256 KB of payload).
        found = _FUNCTION_NAME.search(parameters) if isinstance(parameters, str) else None
        function = found.group(1) if found else ""
        attributes.update(lambda_invocation(function, region if isinstance(region, str) else None))
    return attributes
