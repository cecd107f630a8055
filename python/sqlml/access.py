"""Who may call what: sqlml's roles, enforced before any request is sent (fail closed).

A stock server checks no privilege at all before calling a loadable function, so the
engine asks the server itself, once per statement (xxx_init), whether the caller holds
the privilege behind each role, with roles as the session has them active:

    role (install.sql)       privilege it carries              functions
    AWS_COMPREHEND_ACCESS    SQLML_COMPREHEND_INVOKE           aws_comprehend_*, sqlml_warm_comprehend
    AWS_SAGEMAKER_ACCESS     SQLML_SAGEMAKER_INVOKE            aws_sagemaker_*, sqlml_warm_sagemaker
    AWS_SELECT_S3_ACCESS     SQLML_S3_EXPORT                   the S3 export
    (administrators)         SYSTEM_VARIABLES_ADMIN|SUPER      sqlml_cache_clear, sqlml_status's details

MySQL: the privileges are dynamic privileges registered by the sqlml plugin and checked
with the server's global_grants_check service (active roles only, like every MySQL
privilege). MariaDB has no dynamic privileges: a privilege is EXECUTE on the procedure
sqlml.<privilege in lower case, without SQLML_>, checked by the server's own routine
privilege check (roles as active, the definer inside SQL SECURITY DEFINER routines).
Where the library cannot ask (a server build without those entry points, or MySQL
without the plugin installed) every call is refused, saying why.
"""

from __future__ import annotations

from . import host
from .errors import AccessDenied, SqlmlError, UnsafeForBinlog

ROLES = {
    "comprehend": ("AWS_COMPREHEND_ACCESS", "SQLML_COMPREHEND_INVOKE"),
    "sagemaker": ("AWS_SAGEMAKER_ACCESS", "SQLML_SAGEMAKER_INVOKE"),
    "s3": ("AWS_SELECT_S3_ACCESS", "SQLML_S3_EXPORT"),
}


# Who may see sqlml's settings and per-endpoint details (sqlml_status()) and clear the
# shared cache (sqlml_cache_clear()): whoever the server lets change its global
# variables. MySQL: SYSTEM_VARIABLES_ADMIN or SUPER; MariaDB: SUPER.
ADMIN = "admin"
ADMIN_PRIVILEGES = {"mysql": ("SYSTEM_VARIABLES_ADMIN", "SUPER"), "mariadb": ("SUPER",)}


def is_admin() -> bool:
    """Whether the caller may see settings and per-target details; False where the server
    cannot tell (fail closed)."""
    if not host.inside_server():
        return True
    return any(host.has_grant(p)[0] == 1 for p in ADMIN_PRIVILEGES.get(host.flavor(), ()))


def admin_privileges_text() -> str:
    """The privileges is_admin() accepts on this server, for messages."""
    return " or ".join(ADMIN_PRIVILEGES.get(host.flavor(), ("SUPER",)))


def refusal(function: str, *services: str) -> SqlmlError | None:
    """None if the caller holds the role of any of `services` (ADMIN: is an
    administrator); else the error to raise."""
    if not host.inside_server():
        return None
    if services == (ADMIN,):
        if is_admin():
            return None
        return AccessDenied(
            f"{function}: access denied: it acts on every user's statements (the shared result cache, the "
            f"memos of statements running now), so it needs the right to change global variables: "
            f"{admin_privileges_text()}")
    unknown = None
    for service in services:
        role, privilege = ROLES[service]
        granted, why = host.has_grant(privilege)
        if granted == 1:
            return None
        if granted < 0:
            unknown = why
    roles = " or ".join(ROLES[s][0] for s in services)
    if unknown:
        return AccessDenied(f"{function}: access denied: sqlml cannot verify that the caller holds {roles}: {unknown}")
    return AccessDenied(
        f"{function}: access denied: the {roles} role is needed and is not active for this user; "
        f"GRANT {ROLES[services[0]][0]} TO <user>, then SET ROLE {ROLES[services[0]][0]} "
        f"(or make it a default role)")


class Refused:
    """A prepared call that raises `error` on every row: the statement fails at its first
    row with the full message (MariaDB cuts init messages to 80 characters), and no
    request is ever sent."""

    def __init__(self, error: Exception):
        self.error = error

    def __call__(self, *args):
        raise self.error

    add = __call__

    def clear(self):
        pass


def binlog_refusal(function: str) -> SqlmlError | None:
    """Statement-based binary logging would replay an ML call on a replica, which could
    answer differently: refuse, as Aurora does, rather than let replicas diverge."""
    if host.binlog_format() == host.BINLOG_STATEMENT:
        return UnsafeForBinlog(
            f"{function}: refused with binlog_format=STATEMENT: ML answers are not deterministic and replicas "
            f"would diverge; SET SESSION binlog_format=ROW (or MIXED)")
    return None
