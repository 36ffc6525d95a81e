"""The Dagster Salesforce resource: credentials from EnvVars (or the local sandbox) and the Bulk loader."""

import os
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from sync_assets.salesforce.bulk_api import BulkApi
from sync_assets.salesforce.connection import (
    DEFAULT_API_VERSION,
    ENV_VARIABLES,
    SalesforceConnection,
    SalesforceCredentials,
)
from sync_assets.salesforce.loader import (
    BulkLoader,
    JobEventHook,
    LoaderSettings,
    ProgressCallback,
)
from sync_assets.salesforce.planning import PlanLimits
from sync_assets.salesforce.queries import count_partition, keys_tagged_with_partition
from sync_assets.storage import StateStore


class SalesforceResource(dg.ConfigurableResource):
    """Salesforce org access for the sync: session, SOQL counts, `/limits` and the Bulk loader.

    Credential fields are filled with ``dg.EnvVar("SALESFORCE_…")`` by the definitions; empty ones
    are unset. With every credential empty the resource uses the local sandbox whose
    ``connection.json`` is in ``sandbox_dir`` (the embedded default of DESIGN §3.2).
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
    ca_bundle: str = ""
    sandbox_dir: str = "data/sandbox"
    api_version: str = DEFAULT_API_VERSION
    max_records_per_job: int = 10_000
    jobs_in_flight: int = LoaderSettings.model_fields["jobs_in_flight"].default
    max_resend_rounds: int = 3
    account_aligned_jobs: bool = True

    _connection: SalesforceConnection | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._connection = None  # logged in lazily: a run that never calls Salesforce never logs in

    def credentials(self) -> SalesforceCredentials:
        values = {field: getattr(self, field) for field in ENV_VARIABLES}
        # Reuse the env-var reader so "empty means unset" and the sandbox fallback behave the same.
        env = {ENV_VARIABLES[field]: value for field, value in values.items() if value}
        return SalesforceCredentials.resolve(env, self.sandbox_dir)

    def connection(self) -> SalesforceConnection:
        if self._connection is None:
            self._connection = SalesforceConnection(
                self.credentials(), api_version=self.api_version
            )
        return self._connection

    def loader_settings(self) -> LoaderSettings:
        return LoaderSettings(
            plan=PlanLimits(
                max_records=self.max_records_per_job, account_aligned=self.account_aligned_jobs
            ),
            jobs_in_flight=self.jobs_in_flight,
            max_resend_rounds=self.max_resend_rounds,
        )

    def loader(
        self,
        store: StateStore,
        progress: ProgressCallback | None = None,
        on_job_event: JobEventHook | None = None,
    ) -> BulkLoader:
        return BulkLoader(
            self.connection(),
            store,
            self.loader_settings(),
            progress=progress,
            on_job_event=on_job_event,
        )

    def count_partition(self, partition: str) -> int:
        """Opportunities Salesforce holds for ``partition`` (SOQL ``COUNT()``)."""
        return count_partition(self.connection(), partition)

    def still_tagged(self, partition: str, external_ids: list[str]) -> set[str]:
        """Which of ``external_ids`` Salesforce still tags with ``partition``."""
        return keys_tagged_with_partition(self.connection(), partition, external_ids)

    def limits(self) -> dict[str, Any]:
        return BulkApi(self.connection()).limits()


def salesforce_resource_from_env(sandbox_dir: str = "data/sandbox") -> SalesforceResource:
    """The resource with every ``SALESFORCE_*`` variable set at load time bound as an ``EnvVar``.

    Dagster resolves an ``EnvVar`` at launch and fails on an unset one, so variables absent when
    the definitions load stay empty (unset) rather than becoming launch errors.
    """
    bound = {
        field: dg.EnvVar(name) for field, name in ENV_VARIABLES.items() if os.environ.get(name)
    }
    return SalesforceResource(**bound, sandbox_dir=sandbox_dir)


class SyncStorage(dg.ConfigurableResource):
    """Where drops land and where the sync keeps its state (local paths or object-store URLs)."""

    landing_dir: str = "./data/landing"
    state_dir: str = "./data/state"

    def landing(self) -> StateStore:
        return StateStore(self.landing_dir)

    def state(self) -> StateStore:
        return StateStore(self.state_dir)
