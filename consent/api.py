"""The consent API downstream systems ask before using a study (scope ``consent:read``).

- ``GET /api/v1/consent/check?issuer=&mrn=&study_uid=&scope=``: allowed or not, and why.
- ``POST /api/v1/consent/cohort`` ``{"scope": ..., "study_uids": [...]}``: the permitted subset.
- ``GET /api/v1/fhir/Consent?patient=<issuer>|<mrn>``: the decisions as FHIR R4 Consent.

Every view acts as the token's ``request.actor`` (``core.api``). Every answer is written to the
patient's access log by the service that computes it. A lookup that finds nothing the token may
see (an unknown patient, one outside ``for_actor``, a study that is not that patient's) gets one
404 body whatever the cause, is noted for the privacy office and counts against the token's
lookup budget (``core.api.lookup_missed``, docs/security.md §22).

Whose records a token reaches: every patient's (``Actor.for_service``, ``all_patients``). The
hospital connects a system to ask about any of its patients, and the answer for a patient who
never decided, activated or not, is the hospital's default, which it must give for each of them;
narrowing the reach (to activated patients, say) would change consent outcomes and hide paper
decisions. So what a token can learn is only that a patient it named by issuer and MRN is one of
the hospital's (the 200): never whose a study is, never which part of a request did not match,
and at most ``API_PROBE_LIMIT`` misses an hour, each on the privacy office's page. Patients are
resolved only through ``for_actor``, so a narrower reach later answers exactly like this.
A lookup that finds nothing writes no event on any patient's access log: nothing of theirs was
read, and a patient's log that said "asked about you" would record the guess as a fact.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from consent import services
from consent.models import Scope
from core import openapi
from core.api import ApiError, Miss, api_endpoint, json_body, lookup_missed, not_found
from imaging.models import Patient, Study


def _scope(value: object) -> str:
    if value not in Scope.values:
        raise ApiError(400, "invalid_scope", f"scope must be one of {', '.join(Scope.values)}.")
    return str(value)


def _no_nul(value: str, name: str) -> str:
    # PostgreSQL text cannot hold NUL, and no issuer, MRN or UID contains one.
    if "\x00" in value:
        raise ApiError(400, "invalid_parameter", f"{name} must not contain NUL characters.")
    return value


def _patient(request: HttpRequest, endpoint: str, issuer: str, mrn: str) -> Patient:
    """The patient the token named, through ``for_actor``; else the one 404 (``core.api.not_found``)
    for an unknown patient and an unreachable one alike, noted for the privacy office."""
    if not issuer or not mrn:
        raise ApiError(400, "missing_patient", "Give the patient's issuer and mrn.")
    _no_nul(issuer, "issuer")
    _no_nul(mrn, "mrn")
    patient = Patient.objects.for_actor(request.actor).filter(issuer=issuer, mrn=mrn).first()
    if patient is None:
        lookup_missed(request, endpoint=endpoint, misses=[Miss(patient=(issuer, mrn))])
        raise not_found()
    return patient


@api_endpoint(scope="consent:read", methods=("GET",))
def check(request: HttpRequest) -> JsonResponse:
    scope = _scope(request.GET.get("scope"))
    issuer, mrn = request.GET.get("issuer", "").strip(), request.GET.get("mrn", "").strip()
    study_uid = _no_nul(request.GET.get("study_uid", "").strip(), "study_uid")
    patient = _patient(request, "consent-check", issuer, mrn)
    study = None
    if study_uid:
        # A study of another patient is a miss too, answered exactly like an unknown patient: the
        # answer must neither link records nor say that the patient exists.
        study = Study.objects.for_actor(request.actor).filter(study_uid=study_uid, patient=patient).first()
        if study is None:
            lookup_missed(request, endpoint="consent-check", misses=[Miss(patient=(issuer, mrn))])
            raise not_found()
    answer = services.consent_check_answer(actor=request.actor, patient=patient, scope=scope, study=study)
    return JsonResponse(answer)


@api_endpoint(scope="consent:read", methods=("POST",))
def cohort(request: HttpRequest) -> JsonResponse:
    body = json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", 'Send {"scope": ..., "study_uids": [...]}.')
    scope = _scope(body.get("scope"))
    uids = body.get("study_uids")
    if not isinstance(uids, list) or not all(isinstance(u, str) and u and "\x00" not in u for u in uids):
        raise ApiError(400, "invalid_study_uids", "study_uids must be a list of Study Instance UIDs.")
    if len(uids) > services.COHORT_MAX_STUDIES:
        raise ApiError(413, "too_many_studies", f"Ask about at most {services.COHORT_MAX_STUDIES} studies per request.")
    answer = services.consent_cohort_answer(actor=request.actor, scope=scope, study_uids=uids)
    # Unknown studies are answered "not permitted", like refused ones, so they reveal nothing and
    # are not counted as probing; the office still sees how many a token asked about.
    wanted = set(uids)
    unknown = len(wanted) - Study.objects.for_actor(request.actor).filter(study_uid__in=wanted).count()
    if unknown:
        lookup_missed(request, endpoint="consent-cohort", misses=[Miss(unknown=unknown)], probing=False)
    return JsonResponse(answer)


@api_endpoint(scope="consent:read", methods=("GET",))
def fhir_consent(request: HttpRequest) -> JsonResponse:
    issuer, sep, mrn = request.GET.get("patient", "").partition("|")
    if not sep:
        raise ApiError(400, "invalid_patient", "Give patient=<issuer>|<mrn> (a FHIR token).")
    patient = _patient(request, "fhir-consent", issuer.strip(), mrn.strip())
    bundle = services.consent_fhir_read(actor=request.actor, patient=patient)
    return JsonResponse(bundle, content_type="application/fhir+json")


# --- OpenAPI --------------------------------------------------------------------------------

_ERRORS = {
    "400": {"description": "Bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "401": {"description": "No valid token"},
    "403": {"description": "The token lacks consent:read"},
    "404": {"description": "Nothing matches: an unknown patient, one this token may not reach, or a study that is not "
            "this patient's all answer this same body (error not_found)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
}

openapi.register(
    "/api/v1/consent/check",
    "get",
    {
        "operationId": "consentCheck",
        "summary": "May this patient's study be used for this purpose?",
        "description": "Answers from the patient's latest decision (a per-study decision wins over the all-studies one), "
        "else the hospital's default. Every answer is written to the patient's access log.",
        "parameters": [
            {"name": "issuer", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "mrn", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "study_uid", "in": "query", "required": False, "schema": {"type": "string"}},
            {"name": "scope", "in": "query", "required": True, "schema": {"type": "string", "enum": list(Scope.values)}},
        ],
        "responses": {"200": {"description": "The answer", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConsentAnswer"}}}}, **_ERRORS},
    },
    {
        "ConsentAnswer": {
            "type": "object",
            "required": ["allowed", "scope", "basis", "decision", "checked_at"],
            "properties": {
                "allowed": {"type": "boolean"},
                "scope": {"type": "string", "enum": list(Scope.values)},
                "study_uid": {"type": ["string", "null"]},
                "basis": {"type": "string", "enum": ["decision", "study_decision", "institution_default"]},
                "decision": {
                    "type": ["object", "null"],
                    "properties": {
                        "id": {"type": "integer"},
                        "decision": {"type": "string", "enum": ["granted", "refused"]},
                        "applies_to": {"type": "string", "description": "all_studies or a Study Instance UID"},
                        "decided_at": {"type": "string", "format": "date-time"},
                        "policy_version": {"type": "integer"},
                        "policy_sha256": {"type": "string"},
                        "receipt_id": {"type": "string", "format": "uuid"},
                    },
                },
                "checked_at": {"type": "string", "format": "date-time"},
            },
        }
    },
)
openapi.register(
    "/api/v1/consent/cohort",
    "post",
    {
        "operationId": "consentCohort",
        "summary": "Which of these studies may be used for this purpose?",
        "description": f"At most {services.COHORT_MAX_STUDIES} study UIDs. Unknown UIDs are not permitted. "
        "One access-log entry per patient concerned.",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["scope", "study_uids"],
                "properties": {"scope": {"type": "string", "enum": list(Scope.values)},
                               "study_uids": {"type": "array", "items": {"type": "string"}, "maxItems": services.COHORT_MAX_STUDIES}},
            }}},
        },
        "responses": {
            "200": {"description": "The permitted subset", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConsentCohort"}}}},
            "413": {"description": "Too many studies, or a body over the size limit (error too_large)",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            **_ERRORS,
        },
    },
    {
        "ConsentCohort": {
            "type": "object",
            "required": ["scope", "permitted", "not_permitted", "checked_at"],
            "properties": {
                "scope": {"type": "string"},
                "permitted": {"type": "array", "items": {"type": "string"}},
                "not_permitted": {"type": "array", "items": {"type": "string"}},
                "checked_at": {"type": "string", "format": "date-time"},
            },
        }
    },
)
openapi.register(
    "/api/v1/fhir/Consent",
    "get",
    {
        "operationId": "fhirConsentSearch",
        "summary": "The patient's consent decisions as FHIR R4 Consent resources",
        "parameters": [{"name": "patient", "in": "query", "required": True, "description": "<issuer>|<mrn>", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "A FHIR searchset Bundle", "content": {"application/fhir+json": {"schema": {"type": "object"}}}}, **_ERRORS},
    },
)
