"""A stand-in for the province's unified identity authentication (统一身份认证): an OpenID Connect provider.

People (reviewers, service-point staff, ops, auditors) sign in here; programs get tokens here; and
every message that changes a case carries a proof this provider signed for exactly that message
(token exchange, see docs/identity.md). In production the real provider takes its place: product
processes change only the issuer URL and their client credentials.
"""

from standins.identity_provider.accounts import DEFAULT_ACCOUNTS, DEFAULT_CLIENTS, Directory, hash_secret
from standins.identity_provider.app import create_app
from standins.identity_provider.grants import Lifetimes
from standins.identity_provider.runner import RunningIdentityProvider, serve, start_in_thread

__all__ = [
    "DEFAULT_ACCOUNTS",
    "DEFAULT_CLIENTS",
    "Directory",
    "Lifetimes",
    "RunningIdentityProvider",
    "create_app",
    "hash_secret",
    "serve",
    "start_in_thread",
]
