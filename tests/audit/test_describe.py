"""The access log's sentence names each accessor once."""

from __future__ import annotations

from audit.models import AccessEvent
from audit.selectors import describe


def _event(**fields) -> AccessEvent:
    base = dict(actor_type="clinician", actor_name="", role="", organization="", action="view", purpose="treatment")
    return AccessEvent(**{**base, **fields})


def test_a_person_known_only_by_role_is_named_once():
    sentence = describe(_event(actor_name="Referring physician", role="Referring physician", organization="Mercy Hospital"))
    assert sentence.startswith("Referring physician at Mercy Hospital viewed"), sentence


def test_a_named_person_keeps_role_and_organisation():
    sentence = describe(_event(actor_name="Dr Jane Roe", role="Radiologist", organization="Mercy Hospital"))
    assert sentence.startswith("Dr Jane Roe, Radiologist at Mercy Hospital viewed"), sentence
    assert describe(_event(actor_name="Dr Jane Roe", role="Radiologist")).startswith("Dr Jane Roe, Radiologist viewed")
