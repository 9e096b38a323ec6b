"""Search attributes every case keeps current, so ops can filter cases in the UI and scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes

from enrollment.application import Application

if TYPE_CHECKING:
    from temporalio.client import Client

CASE_STATUS = SearchAttributeKey.for_keyword("CaseStatus")
ENROLL_STAGE = SearchAttributeKey.for_keyword("EnrollStage")
REGISTRATION_TYPE = SearchAttributeKey.for_keyword("RegistrationType")
DISTRICT_CODE = SearchAttributeKey.for_keyword("DistrictCode")
ROUTING_PHASE = SearchAttributeKey.for_keyword("RoutingPhase")
INTAKE_CHANNEL = SearchAttributeKey.for_keyword("IntakeChannel")
SCHOOL_YEAR = SearchAttributeKey.for_int("SchoolYear")

ALL = (CASE_STATUS, ENROLL_STAGE, REGISTRATION_TYPE, DISTRICT_CODE, ROUTING_PHASE, INTAKE_CHANNEL, SCHOOL_YEAR)


def describing(application: Application) -> list[SearchAttributeUpdate[Any]]:
    """What a case is, from its application, and its first status."""
    return [
        CASE_STATUS.value_set("submitted"),
        ENROLL_STAGE.value_set(application.stage),
        REGISTRATION_TYPE.value_set(application.registration_type),
        DISTRICT_CODE.value_set(application.district_code),
        INTAKE_CHANNEL.value_set(application.channel),
        SCHOOL_YEAR.value_set(application.school_year),
    ]


def at_start(application: Application) -> TypedSearchAttributes:
    """`describing` for the start request: set there, they cost the case no upsert of its own (release 1.4)."""
    return TypedSearchAttributes([SearchAttributePair(update.key, update.value) for update in describing(application)])


async def ensure_registered(client: Client) -> None:
    """Register the case search attributes on a server that lacks them (test servers, a new namespace)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(existing.custom_attributes)
    except RPCError as err:
        # The time-skipping test server cannot list them, but accepts adding them.
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL if key.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
