"""The org's users: the integration user (the one ``connection.json`` describes) and its people.

Every user logs in the same ways (OAuth password grant, SOAP login, JWT bearer), has an Id kept
per data dir, and writes records as itself. Only the integration user carries the limits an
org file gives it (View Setup and Configuration, field-level security); people are unrestricted.
"""

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sync_assets.sandbox.auth import OrgIdentity
from sync_assets.sandbox.objects import USER_KEY_PREFIX
from sync_assets.sandbox.org import UsersSpec

# Ids minted once per data dir for named records: (key prefix, names) -> name -> id.
NamedIds = Callable[[str, list[str]], dict[str, str]]


class SandboxUser(BaseModel):
    """One user: who it is, its password, and what its profile lets it see and do."""

    model_config = ConfigDict(frozen=True)

    id: str
    username: str
    first_name: str | None = None
    last_name: str
    password: SecretStr = Field(repr=False)
    integration: bool = False
    view_setup: bool = True
    bulk_api_hard_delete: bool = True
    hidden_fields: frozenset[str] = frozenset()
    read_only_fields: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def restricted(self) -> bool:
        return bool(self.hidden_fields or self.read_only_fields)


class Users:
    """The org's users by Id and by username (matched case-insensitively, as Salesforce does)."""

    def __init__(self, integration: SandboxUser, people: list[SandboxUser]) -> None:
        self.integration = integration
        self.all = (integration, *people)
        self._by_id = {u.id: u for u in self.all}
        self._by_username = {u.username.lower(): u for u in self.all}
        if len(self._by_username) != len(self.all):
            raise ValueError("users.people: every username must be unique in the org")

    def get(self, user_id: str) -> SandboxUser | None:
        return self._by_id.get(user_id)

    def __getitem__(self, user_id: str) -> SandboxUser:
        """The user an authenticated request acts for (tokens of unknown users are refused)."""
        return self._by_id[user_id]

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._by_id

    def named(self, username: str) -> SandboxUser | None:
        return self._by_username.get(username.lower())


def load_users(identity: OrgIdentity, spec: UsersSpec, named_ids: NamedIds) -> Users:
    """The integration user of ``identity`` with the org file's limits, and the org file's people."""
    limits = spec.integration
    integration = SandboxUser(
        id=identity.user_id,
        username=identity.username,
        first_name="Integration",
        last_name="User",
        password=identity.password,
        integration=True,
        view_setup=limits.view_setup,
        bulk_api_hard_delete=limits.bulk_api_hard_delete,
        hidden_fields=frozenset(limits.hidden_fields),
        read_only_fields=frozenset(limits.read_only_fields),
    )
    ids = named_ids(USER_KEY_PREFIX, [p.username.lower() for p in spec.people])
    people = [
        SandboxUser(
            id=ids[p.username.lower()],
            username=p.username,
            first_name=p.first_name,
            last_name=p.last_name or p.username.partition("@")[0],
            password=p.password,
        )
        for p in spec.people
    ]
    return Users(integration, people)
