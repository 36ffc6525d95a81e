"""The Dagster resources: where drops and state live, the Salesforce org, and how hard the loader pushes it."""

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from sync_assets.drops.mapping import Mapping, load_mapping
from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import (
    ENV_VARIABLES,
    SalesforceConnection,
    SalesforceCredentials,
)
from sync_assets.salesforce.loader import BulkLoader, JobEventHook, LoaderSettings, ProgressCallback
from sync_assets.salesforce.metadata import read_org_metadata
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.salesforce.queries import (
    count_partition,
    count_synced,
    keys_tagged_with_partition,
    usernames,
)
from sync_assets.salesforce.upload_compression import UploadCompression
from sync_assets.settings import SyncSettings
from sync_assets.state.org_metadata import OrgMetadata
from sync_assets.storage import StateStore


class SalesforceResource(dg.ConfigurableResource):
    """Salesforce org access for the sync: session, SOQL counts and `/limits`.

    Credential fields are filled with ``dg.EnvVar("SALESFORCE_…")`` by the definitions; empty ones
    are unset. There is no fallback: with every credential empty, the first call fails with a
    clear configuration error (only `demo` and `ui` start the local sandbox, and hand its
    connection over as ``SALESFORCE_*`` variables).
    """

    instance_url: str = ""
    access_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    login_url: str = ""
    username: str = ""
    password: str = ""
    security_token: str = ""
    domain: str = ""
    private_key_file: str = ""
    private_key: str = ""
    ca_bundle: str = ""
    api_version: str = ""

    _connection: SalesforceConnection | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._connection = None  # logged in lazily: a run that never calls Salesforce never logs in

    def credentials(self) -> SalesforceCredentials:
        values = {field: getattr(self, field) for field in ENV_VARIABLES}
        # Reuse the env-var reader so "empty means unset" behaves the same.
        env = {ENV_VARIABLES[field]: value for field, value in values.items() if value}
        return SalesforceCredentials.from_env(env)

    def connection(self) -> SalesforceConnection:
        if self._connection is None:
            self._connection = SalesforceConnection(self.credentials())
        return self._connection

    def count_partition(self, partition: str) -> int:
        """Opportunities Salesforce holds for ``partition`` (SOQL ``COUNT()``)."""
        return count_partition(self.connection(), partition)

    def count_synced(self) -> int:
        """Opportunities Salesforce holds for any partition (SOQL ``COUNT()``)."""
        return count_synced(self.connection())

    def still_tagged(self, partition: str, external_ids: list[str]) -> set[str]:
        """Which of ``external_ids`` Salesforce still tags with ``partition``."""
        return keys_tagged_with_partition(self.connection(), partition, external_ids)

    def limits(self) -> dict[str, Any]:
        return BulkApi(self.connection()).limits()

    def usernames(self, user_ids: list[str]) -> dict[str, str]:
        """Username by User Id (who changed a drifted record)."""
        return usernames(self.connection(), user_ids)

    def org_metadata(self, sobject: str, relationships: list[str]) -> OrgMetadata:
        """The object's describe, record types, stages and currencies, as the org says now."""
        return read_org_metadata(self.connection(), sobject, relationships)


def salesforce_resource_from_env(settings: SyncSettings) -> SalesforceResource:
    """The resource with every ``SALESFORCE_*`` variable set at load time bound as an ``EnvVar``.

    Dagster resolves an ``EnvVar`` at launch and fails on an unset one, so variables absent when
    the definitions load stay empty (unset) rather than becoming launch errors.
    """
    bound = {field: dg.EnvVar(name) for field, name in settings.salesforce_variables_set().items()}
    return SalesforceResource(**bound)


class BulkLoadResource(dg.ConfigurableResource):
    """How the Bulk loader cuts a partition into jobs and how many it keeps in flight."""

    max_records_per_job: int = 10_000
    jobs_in_flight: int = LoaderSettings.model_fields["jobs_in_flight"].default
    min_jobs_in_flight: int = LoaderSettings.model_fields["min_jobs_in_flight"].default
    max_jobs_in_flight: int = LoaderSettings.model_fields["max_jobs_in_flight"].default
    max_resend_rounds: int = LoaderSettings.model_fields["max_resend_rounds"].default
    account_aligned_jobs: bool = True
    job_timeout_seconds: float = LoaderSettings.model_fields["job_timeout"].default
    api_budget_share: float = LoaderSettings.model_fields["api_budget_share"].default
    upload_compression: UploadCompression = LoaderSettings.model_fields[
        "upload_compression"
    ].default

    @classmethod
    def from_settings(cls, settings: SyncSettings) -> "BulkLoadResource":
        """The loader as `SYNC_API_BUDGET_SHARE` and `SYNC_UPLOAD_COMPRESSION` configure it."""
        return cls(
            api_budget_share=settings.api_budget_share,
            upload_compression=settings.resolved_upload_compression(),
        )

    def loader_settings(self) -> LoaderSettings:
        return LoaderSettings(
            plan=PlanLimits(
                max_records=self.max_records_per_job, account_aligned=self.account_aligned_jobs
            ),
            jobs_in_flight=self.jobs_in_flight,
            min_jobs_in_flight=self.min_jobs_in_flight,
            max_jobs_in_flight=self.max_jobs_in_flight,
            max_resend_rounds=self.max_resend_rounds,
            job_timeout=self.job_timeout_seconds,
            api_budget_share=self.api_budget_share,
            upload_compression=self.upload_compression,
        )

    def loader(
        self,
        salesforce: SalesforceResource,
        progress: ProgressCallback | None = None,
        on_job_event: JobEventHook | None = None,
    ) -> BulkLoader:
        return BulkLoader(
            salesforce.connection(),
            self.loader_settings(),
            progress=progress,
            on_job_event=on_job_event,
        )


class SyncStorage(dg.ConfigurableResource):
    """Where drops land and where the sync keeps its state (local paths or object-store URLs).

    Also the mapping file, which says how a drop's columns become Opportunity fields.
    """

    landing_dir: str = SyncSettings.model_fields["landing_dir"].default
    state_dir: str = SyncSettings.model_fields["state_dir"].default
    mapping_file: str = ""

    @classmethod
    def from_settings(cls, settings: SyncSettings) -> "SyncStorage":
        return cls(
            landing_dir=settings.landing_dir,
            state_dir=settings.state_dir,
            mapping_file=settings.mapping_file or "",
        )

    def mapping(self) -> Mapping:
        """The mapping file's mapping, or the built-in one when none is set."""
        return load_mapping(self.mapping_file or None)

    def landing(self) -> StateStore:
        return StateStore(self.landing_dir)

    def state(self) -> StateStore:
        return StateStore(self.state_dir)
