"""Who may see and touch which contacts: agents their own, managers their team's, admins all."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import AccessDenied
from domain.model import Role, User


@dataclass(frozen=True, slots=True)
class Scope:
    """The contacts a user may see, as storage filters them. `everything` wins; otherwise a
    contact is in scope when its owner is `owner_id` or a member of `team`."""

    everything: bool = False
    owner_id: int | None = None
    team: str | None = None

    @classmethod
    def of(cls, user: User) -> Scope:
        if user.role is Role.ADMIN:
            return cls(everything=True)
        if user.role is Role.MANAGER and user.team:
            return cls(owner_id=user.id, team=user.team)
        return cls(owner_id=user.id)

    def covers(self, owner: User | None) -> bool:
        if self.everything:
            return True
        if owner is None:
            return False
        return owner.id == self.owner_id or (self.team is not None and owner.team == self.team)


# The command line acts with an admin's rights: whoever can run it owns the database file.
SYSTEM = User(id=None, name="command line", role=Role.ADMIN)


def require_role(user: User, *roles: Role) -> None:
    if user.role not in roles:
        names = " or ".join(role.value for role in roles)
        raise AccessDenied(f"Only an {names} can do this.")
