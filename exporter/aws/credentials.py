"""A target's credentials: the ambient ones, or a role's from sts:AssumeRole, renewed by
aiobotocore's refreshing credentials before they expire (never logged); and the account they
reach. STS is reached like the other services (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL)."""

from __future__ import annotations

import functools
from typing import Any

from exporter.aws.source import caller_account
from exporter.config import Target

# Renew a role's credentials this long before they expire (botocore's own default window).
EXPIRY_WINDOW_SECONDS = 15 * 60


class CredentialError(Exception):
    """A target's credentials cannot be had (now); the message names the target and why."""


class _RoleProvider:
    """A credential provider (botocore's chain asks each for credentials, first answer wins)
    that gives the role's refreshing credentials."""

    METHOD = CANONICAL_NAME = "sfn-exporter-assume-role"

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    async def load(self) -> Any:
        return self._credentials


def target_session(target: Target, region: str, sts_endpoint_url: str | None = None) -> Any:
    """An aiobotocore session for `target` in `region`: the default credential chain, or the
    role's credentials assumed with it (AssumeRole is called on first use, and again before the
    credentials expire)."""
    from aiobotocore.credentials import AioAssumeRoleCredentialFetcher, AioDeferredRefreshableCredentials
    from aiobotocore.session import get_session

    session = get_session()
    if target.role_arn is None:
        return session
    source = get_session()
    extra: dict[str, Any] = {
        "RoleSessionName": target.session_name,
        "DurationSeconds": target.duration_seconds,
    }
    if target.external_id is not None:
        extra["ExternalId"] = target.external_id

    class _Source:  # the ambient credentials, looked up when AssumeRole is first called
        async def get_frozen_credentials(self) -> Any:
            credentials = await source.get_credentials()
            if credentials is None:
                raise CredentialError(f"{target.role_arn}: no ambient credentials to assume the role with")
            return await credentials.get_frozen_credentials()

    fetcher = AioAssumeRoleCredentialFetcher(
        client_creator=functools.partial(
            source.create_client, region_name=region, endpoint_url=sts_endpoint_url
        ),
        source_credentials=_Source(),
        role_arn=target.role_arn,
        extra_args=extra,
        expiry_window_seconds=EXPIRY_WINDOW_SECONDS,
    )
    credentials = AioDeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="sfn-exporter-assume-role"
    )
    session.get_component("credential_provider").insert_before("env", _RoleProvider(credentials))
    return session


async def account_of(
    session: Any, target: Target, region: str, client_config: Any, sts_endpoint_url: str | None = None
) -> str:
    """The account the target's credentials reach: the role's (after AssumeRole succeeded, so a
    role that cannot be assumed fails here), or the ambient credentials' (sts:GetCallerIdentity,
    which needs no permission). CredentialError when that cannot be had."""
    from botocore.exceptions import BotoCoreError, ClientError

    who = target.role_arn or "the ambient credentials"
    try:
        if target.role_arn is not None:
            credentials = await session.get_credentials()
            await credentials.get_frozen_credentials()
            assert target.account is not None
            return target.account
        return await caller_account(session, region, client_config, sts_endpoint_url)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CredentialError(f"{who} in {region}: {error.get('Code')}: {error.get('Message')}") from None
    except (BotoCoreError, OSError) as exc:
        raise CredentialError(f"{who} in {region}: {exc}") from None
