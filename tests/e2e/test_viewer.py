"""A patient opens a multi-slice CT in the browser viewer and scrolls it with keyboard and wheel.

Runs in Chromium under the real CSP (the page fixture fails the test on any violation or
JavaScript error). With LIGHTBOX_SCREENSHOTS=1 it also writes docs/screenshots/viewer-*.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from audit.models import AccessEvent
from tests.factories import PASSWORD, totp_code
from tests.imaging.test_views import import_for, write_ct_series

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SLICES = 12


def sign_in(page: Page, base: str, user) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter your code")
    page.get_by_label("Code").fill(totp_code(user.authenticatorapp_set.get()))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {user.patient.name}")


def stage_pixels(page: Page) -> bytes:
    return page.locator("#viewer-stage").screenshot()


def test_patient_opens_a_ct_and_scrolls_it_with_keyboard_and_wheel(page: Page, live_server, site, patient, tmp_path, screenshot):
    study = import_for(patient, write_ct_series(tmp_path / "ct", slices=SLICES))
    sign_in(page, live_server.url, patient)

    # Home → study page, with its header report.
    expect(page.get_by_text("12 images")).to_be_visible()
    thumbnail = page.locator(".study-thumb img")
    expect(thumbnail).to_have_attribute("src", re.compile(r"/thumbnail\.png$"))
    page.wait_for_function("() => document.querySelector('.study-thumb img').naturalWidth > 0")
    screenshot(page, "scans")
    page.get_by_role("link", name="CT chest").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("CT chest")
    expect(page.get_by_role("heading", name="What this scan reveals")).to_be_visible()
    expect(page.get_by_role("cell", name="CT1 CompressedSamples")).to_be_visible()
    page.wait_for_function("() => document.querySelector('.series-thumb img').naturalWidth > 0")
    screenshot(page, "study")
    page.get_by_role("link", name=re.compile("Open in viewer")).click()

    # The viewer: first slice shown, readout announced politely.
    readout = page.locator("#viewer-readout")
    image = page.locator("#viewer-image")
    expect(readout).to_have_text("Image 1 of 12, position -65.0 mm")
    expect(readout).to_have_attribute("aria-live", "polite")
    expect(image).to_have_attribute("data-slice", "1")
    expect(page.get_by_role("toolbar", name="Viewer tools")).to_be_visible()
    first = stage_pixels(page)

    # Keyboard: the stage takes focus (visibly) and the arrow keys move through the slices.
    stage = page.locator("#viewer-stage")
    stage.focus()
    expect(stage).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(readout).to_have_text("Image 2 of 12, position -60.0 mm")
    expect(image).to_have_attribute("data-slice", "2")
    expect(image).to_have_attribute("alt", "Image 2 of 12, position -60.0 mm")
    second = stage_pixels(page)
    assert second != first, "the image did not change when moving to the next slice"
    page.keyboard.press("End")
    expect(readout).to_have_text("Image 12 of 12, position -10.0 mm")
    expect(image).to_have_attribute("data-slice", "12")
    expect(page.locator("#viewer-slider")).to_have_value("12")
    page.keyboard.press("Home")
    expect(image).to_have_attribute("data-slice", "1")

    # Mouse wheel over the image: one notch, one slice.
    box = stage.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 100)
    expect(readout).to_have_text("Image 2 of 12, position -60.0 mm")
    page.mouse.wheel(0, 100)
    expect(image).to_have_attribute("data-slice", "3")
    assert stage_pixels(page) != second

    # Dragging set to "changes image" (the default on touch screens): 8 px per image.
    page.get_by_label("changes image").check()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 124, steps=4)
    page.mouse.up()
    expect(image).to_have_attribute("data-slice", "6")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 124)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 100, steps=4)
    page.mouse.up()
    expect(image).to_have_attribute("data-slice", "3")

    # Play cycles through the images until paused; the live region is quiet meanwhile.
    play = page.get_by_role("button", name="Play")
    play.click()
    expect(page.locator("#viewer-play")).to_have_attribute("aria-pressed", "true")
    expect(readout).to_have_attribute("aria-live", "off")
    expect(image).not_to_have_attribute("data-slice", "3")
    page.get_by_role("button", name="Pause").click()
    expect(readout).to_have_attribute("aria-live", "polite")
    stage.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(image).to_have_attribute("data-slice", "3")

    # A window preset re-renders the same slice at the lung window.
    before = stage_pixels(page)
    page.get_by_label("Window").select_option("lung")
    expect(page.locator("#viewer-window")).to_have_text("Level -600, width 1500")
    page.wait_for_function("() => document.getElementById('viewer-image').src.startsWith('blob:')")
    expect(image).to_have_attribute("data-slice", "3")
    page.wait_for_function(
        "() => performance.getEntriesByType('resource').some(e => e.name.includes('/frames/0.png?c=-600&w=1500'))"
    )
    assert stage_pixels(page) != before

    # Opening the study and the viewer were two access events; the frames added none.
    events = AccessEvent.objects.filter(study=study, source="portal")
    assert sorted(events.values_list("action", flat=True)) == ["view", "view"]
    assert sorted(e.details["page"] for e in events) == ["study", "viewer"]

    # On a phone-sized screen the image, the slider and the readout all fit.
    page.set_viewport_size({"width": 390, "height": 844})
    stage.scroll_into_view_if_needed()
    expect(stage).to_be_in_viewport(ratio=1)
    expect(readout).to_be_in_viewport()
    expect(page.locator("#viewer-slider")).to_be_in_viewport()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the viewer scrolls sideways on a phone ({width}px wide)"
    page.set_viewport_size({"width": 1280, "height": 800})
    stage.focus()
    page.keyboard.press("r")
    expect(page.locator("#viewer-window")).to_have_text("As stored in the file")
    page.keyboard.press("PageDown")
    expect(image).to_have_attribute("data-slice", "12")
    screenshot(page, "viewer")
