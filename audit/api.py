"""``POST /api/v1/audit/events``: downstream systems report accesses to patients' scans.

Imported by ``audit/urls.py``, so the OpenAPI registration below happens when URLs load.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse

from audit import fhir
from audit.ingest import ACTOR_TYPES, MAX_BATCH, Busy, events_ingest, ingest_slot
from audit.models import AccessEvent
from core import openapi
from core.api import ApiError, Miss, api_endpoint, api_error, json_body, lookup_missed
from core.cpu_priority import run_niced

PATH = "/api/v1/audit/events"
# Seconds a sender is asked to wait after a 503: a busy batch clears in well under that.
RETRY_AFTER = 2


@api_endpoint(scope="audit:write", methods=("POST",))
def events(request: HttpRequest) -> JsonResponse:
    try:
        # The whole batch's work, from parsing the body to encoding the answer, in one of the
        # ingest slots, so that waiting batches use no CPU (audit.ingest.ingest_slot), and at a
        # lower CPU priority than patients' pages, so that a page never waits for a core behind
        # it (core.cpu_priority; AUDIT_INGEST_NICE).
        with ingest_slot():
            return run_niced(_events, request, nice=settings.AUDIT_INGEST_NICE)
    except Busy:
        # Part of the batch may be recorded (it commits in groups); re-sending it is safe
        # (idempotent by source_event_id): what went in comes back as a duplicate.
        response = api_error(
            503, "busy", "The access log is busy; part of the batch may be recorded. Send the same batch again."
        )
        response["Retry-After"] = str(RETRY_AFTER)
        return response


def _events(request: HttpRequest) -> JsonResponse:
    actor = request.actor  # the token's service account (core.api)
    body = json_body(request)
    defaults = {"default_actor_type": actor.service_type, "default_organization": actor.organization}
    if fhir.is_fhir(body):
        raws, normalised = fhir.from_fhir(body, **defaults)
    elif isinstance(body, dict) and isinstance(body.get("events"), list):
        raws, normalised = body["events"], None
    else:
        raise ApiError(400, "invalid_body", 'Send {"events": [...]}, a FHIR AuditEvent or a Bundle of AuditEvents.')
    if not raws:
        raise ApiError(400, "empty_batch", "The batch has no events.")
    if len(raws) > MAX_BATCH:
        raise ApiError(413, "batch_too_large", f"Send at most {MAX_BATCH} events per request.")
    result = events_ingest(sender=actor.name, source=AccessEvent.Source.API, events=raws, normalised=normalised, **defaults)
    # Events about a patient or study we do not have are rejected with one reason (ingest.UNKNOWN),
    # noted for the privacy office and counted against the token's lookups (docs/security.md §22).
    lookup_missed(request, endpoint="audit-events", misses=[Miss(patient=o.missed) for o in result.outcomes if o.missed])
    return JsonResponse(result.as_dict())


_EVENT = {
    "type": "object",
    "required": ["source_event_id", "occurred_at", "patient", "purpose", "action"],
    "properties": {
        "source_event_id": {"type": "string", "maxLength": 150, "description": "Your id; re-sending it is a no-op."},
        "occurred_at": {"type": "string", "format": "date-time", "description": "With a time zone."},
        "patient": {
            "type": "object",
            "required": ["issuer", "mrn"],
            "properties": {"issuer": {"type": "string"}, "mrn": {"type": "string"}},
        },
        "study_uid": {"type": "string", "description": "Study Instance UID (or give accession)."},
        "accession": {"type": "string"},
        "actor": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ACTOR_TYPES},
                "name": {"type": "string"},
                "ref": {"type": "string", "description": "Stable id of the actor in your system."},
                "organization": {"type": "string", "description": "Defaults to the service account's organisation."},
                "role": {"type": "string"},
            },
        },
        "purpose": {"type": "string", "enum": AccessEvent.Purpose.values},
        "action": {"type": "string", "enum": AccessEvent.Action.values},
        "outcome": {"type": "string", "enum": AccessEvent.Outcome.values, "default": "success"},
    },
}

openapi.register(
    PATH,
    "post",
    {
        "operationId": "auditEventsCreate",
        "summary": "Report accesses to patients' imaging data",
        "description": (
            f"A JSON batch of up to {MAX_BATCH} events, or FHIR R4 AuditEvent resources (one, or a Bundle) "
            "following IHE BALP. Each event is accepted, a duplicate (same source_event_id from this service "
            "account) or rejected with a reason; an unknown patient and an unknown study of a known patient are "
            "rejected with the same reason. Needs the audit:write scope. A batch is recorded in groups of events, each "
            "committed on its own; a 503 (with Retry-After) means part of the batch may be recorded: send the same "
            "batch again, and the events recorded by the first attempt come back as duplicate."
        ),
        "tags": ["audit"],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AuditEventBatch"}},
                "application/fhir+json": {"schema": {"type": "object", "description": "FHIR R4 AuditEvent or Bundle"}},
            },
        },
        "responses": {
            "200": {
                "description": "Per-event outcomes, in the order sent.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuditEventResults"}}},
            },
            **{
                code: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                for code, text in {
                    "400": "Not JSON, or not a batch / AuditEvent / Bundle.",
                    "401": "Missing or invalid token.",
                    "403": "The token lacks the audit:write scope.",
                    "413": "Too many events or too large a body.",
                    "415": "Not JSON.",
                }.items()
            },
            "503": {
                "description": (
                    "The access log was busy: other batches kept every ingest slot for AUDIT_INGEST_WAIT_SECONDS "
                    "(nothing of this batch is recorded), or a chain lock could not be had in time (the groups of "
                    "the batch committed before that are recorded, the rest are not). Send the same batch again after "
                    "Retry-After seconds: the events already recorded come back as duplicate (\"already "
                    "recorded\"), the rest as accepted, so a retry is safe and records each event once."
                ),
                "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    },
    {
        "AuditEventBatch": {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "maxItems": MAX_BATCH, "items": _EVENT}},
        },
        "AuditEventResults": {
            "type": "object",
            "properties": {
                "accepted": {"type": "integer"},
                "duplicate": {"type": "integer"},
                "rejected": {"type": "integer"},
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": {"type": "integer"},
                            "source_event_id": {"type": ["string", "null"]},
                            "status": {"type": "string", "enum": ["accepted", "duplicate", "rejected"]},
                            "reason": {"type": "string"},
                            "id": {"type": "integer"},
                        },
                    },
                },
            },
        },
    },
)
