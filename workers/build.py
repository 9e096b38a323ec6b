"""The two roles: cases (workflow, intake, platform, store) and verification (the four departments).

Verification polls a queue per verifier, each with the call rate its
department accepts (enforced by the server across every worker), so it can be
scaled or throttled without touching case processing.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.archive import ArchiveActivities
from activities.identity import IdentityActivities
from activities.intake import IntakeActivities
from activities.natural_resources import NaturalResourcesActivities
from activities.outbound import OutboundClient
from activities.platform import PlatformActivities
from activities.public_security import PublicSecurityActivities
from activities.social_insurance import SocialInsuranceActivities
from enrollment.case import CASE_TASK_QUEUE
from enrollment.oidc import IdentityProvider
from enrollment.settings import Settings
from enrollment.verifiers import REGISTRY, VERIFIERS
from workers.log_context import CaseLogContext
from workflows.enrollment_case import EnrollmentCase

ROLES = ("case", "verification")


def server_rate_for(quota: float) -> float:
    """The task-queue rate (activities per second, across every worker) for a quota of calls per second.

    An activity calls once per guardian, up to twice, and the server's limiter (one partition per
    verifier queue, deploy/temporal/dynamicconfig.yaml) lets a bucket of ceil(rate) tasks through on
    top of its rate: just under half the quota keeps the departments' load within it however many
    verification workers run. Each process also holds its own calls to the quota (CallRate).
    """
    return max(quota / 2 - 0.5, quota / 4)


def workflow_runner(sandboxed: bool) -> WorkflowRunner:
    """How the case worker runs workflow code (ENROLL_WORKFLOW_SANDBOX, enrollment/settings.py says why).

    Sandboxed, it still refuses non-deterministic calls, but shares imported modules with every case
    instead of importing them again for each one.
    """
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


def new_http_client(settings: Settings) -> OutboundClient:
    """The workers' client to the departments and the platform, authenticating as ENROLL_OUTBOUND_AUTH says."""
    return OutboundClient(settings)


def build_workers(
    client: Client,
    settings: Settings,
    http: OutboundClient,
    archive: ArchiveActivities | None,
    roles: tuple[str, ...] = ROLES,
    **worker_options,
) -> list[Worker]:
    """The workers for the given roles; the case worker needs the archive. worker_options apply to each."""
    worker_options.setdefault("interceptors", [CaseLogContext()])
    workers = []
    if "case" in roles:
        if archive is None:
            raise ValueError("the case worker needs the case store (archive activities)")
        platform = PlatformActivities(http, settings.platform_url)
        intake = IntakeActivities(settings)
        identity = IdentityActivities(IdentityProvider(settings.identity_issuer, http.identity_http))
        workers.append(
            Worker(
                client,
                task_queue=CASE_TASK_QUEUE,
                workflows=[EnrollmentCase],
                workflow_runner=workflow_runner(settings.workflow_sandbox),
                activities=[
                    intake.load_case_setup,
                    platform.push_status,
                    platform.notify_applicant,
                    platform.sync_result,
                    archive.record_progress,
                    archive.archive_case,
                    identity.trusted_identity_keys,
                ],
                **worker_options,
            )
        )
    if "verification" in roles:
        limits = settings.verifier_rate_limits
        departments = [
            PublicSecurityActivities(http, settings.public_security_url, rate_limits=limits),
            SocialInsuranceActivities(http, settings.social_insurance_url, rate_limits=limits),
            NaturalResourcesActivities(http, settings.natural_resources_url, rate_limits=limits),
        ]
        activities = {name: act for department in departments for name, act in department.activities().items()}
        if missing := set(VERIFIERS) - set(activities):
            raise RuntimeError(f"no activity for verifier(s) {', '.join(sorted(missing))}")
        for verifier, verify in activities.items():
            workers.append(
                Worker(
                    client,
                    task_queue=REGISTRY[verifier].task_queue,
                    activities=[verify],
                    max_task_queue_activities_per_second=server_rate_for(limits[verifier])
                    if verifier in limits
                    else None,
                    **worker_options,
                )
            )
    return workers
