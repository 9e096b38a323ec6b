"""Local stand-ins for the four verifying departments and the provincial platform.

Real HTTP services on localhost with the contract in docs/standins.md; in production their base
URLs are replaced by the real departments'. Also a generator of synthetic families to serve.
"""

from standins.population import Population, generate, judge
from standins.runner import RunningStandins, load_or_generate, start_in_thread
from standins.server import PLATFORM_KINDS, VERIFIER_PATHS, create_app

__all__ = [
    "PLATFORM_KINDS",
    "VERIFIER_PATHS",
    "Population",
    "RunningStandins",
    "create_app",
    "generate",
    "judge",
    "load_or_generate",
    "start_in_thread",
]
