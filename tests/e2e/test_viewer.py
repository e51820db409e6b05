"""A patient opens a multi-slice CT in the browser viewer and scrolls it with keyboard and wheel.

Runs in Chromium under the real CSP (the page fixture fails the test on any violation or
JavaScript error). With LIGHTBOX_SCREENSHOTS=1 it also writes docs/screenshots/viewer-*.png.
"""

from __future__ import annotations

import io
import re

import pydicom
import pytest
from PIL import Image, ImageStat
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


# --- Issue 19: the viewer fits the screen, has the keyboard at once, switches series in place;
# thumbnails never show as black squares ------------------------------------------------------


def two_series_study(patient, tmp_path):
    """A CT study with two series (5 and 3 slices), so the viewer has a series strip."""
    first = write_ct_series(tmp_path / "a", slices=5)
    second = write_ct_series(tmp_path / "b", slices=3)
    study_uid = pydicom.dcmread(first[0], stop_before_pixels=True).StudyInstanceUID
    for path in second:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesNumber = 5
        ds.SeriesDescription = "COR 3MM"
        ds.save_as(path, enforce_file_format=True)
    return import_for(patient, first + second)


def in_viewport(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None, f"{selector} is not displayed"
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], (
        f"{selector} runs below the screen: {box} in {size}")
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], f"{selector} is wider than the screen: {box}"


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}], ids=["desktop", "phone"])
def test_viewer_fits_the_screen_and_the_arrow_keys_work_at_once(page: Page, live_server, site, patient, tmp_path, viewport):
    """Before: at 1280x900 the slider and "Image n of N" were below the screen, and the arrow
    keys did nothing until the image was clicked."""
    study = two_series_study(patient, tmp_path)
    series = study.series.order_by("number").first()
    sign_in(page, live_server.url, patient)
    page.set_viewport_size(viewport)
    page.goto(f"{live_server.url}/studies/{study.pk}/series/{series.pk}/view/")
    readout = page.locator("#viewer-readout")
    expect(readout).to_have_text("Image 1 of 5, position -30.0 mm")
    for selector in ("#viewer-stage", "#viewer-slider", "#viewer-readout"):
        in_viewport(page, selector)
    assert page.evaluate("window.scrollY") == 0
    stage_box = page.locator("#viewer-stage").bounding_box()
    assert stage_box["height"] >= 200, stage_box

    # The image has the keyboard, visibly, without a click.
    assert page.evaluate("document.activeElement.id") == "viewer-stage"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused image shows no focus ring"
    page.keyboard.press("ArrowDown")
    expect(readout).to_have_text("Image 2 of 5, position -25.0 mm")
    # No trap: Tab leaves the image.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") != "viewer-stage"


def test_series_strip_switches_series_in_place_by_keyboard(page: Page, live_server, site, patient, tmp_path):
    """Before: no way to switch series from the viewer."""
    study = two_series_study(patient, tmp_path)
    first, second = study.series.order_by("number")
    sign_in(page, live_server.url, patient)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/studies/{study.pk}/series/{first.pk}/view/")
    readout = page.locator("#viewer-readout")
    expect(readout).to_have_text("Image 1 of 5, position -30.0 mm")
    strip = page.get_by_role("navigation", name="Series in this study")
    expect(strip.get_by_role("link")).to_have_count(2)
    expect(strip.locator('[aria-current="page"]')).to_contain_text("Series 2")
    in_viewport(page, "#series-strip")
    page.evaluate("window.__samePage = true")

    # Keyboard: Tab from the image reaches the strip; Enter switches.
    link = strip.get_by_role("link", name=re.compile("Series 5"))
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.series") == str(second.pk):
            break
    else:
        raise AssertionError("the series strip cannot be reached with Tab")
    page.keyboard.press("Enter")
    expect(readout).to_have_text("Image 1 of 3, position -20.0 mm")
    expect(page).to_have_url(re.compile(f"/series/{second.pk}/view/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Series 5: Coronal 3 mm")
    expect(page).to_have_title(re.compile(r"^Series 5 · CT chest"))
    expect(link).to_have_attribute("aria-current", "page")
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"
    assert page.evaluate("document.activeElement.id") == "viewer-stage"
    page.keyboard.press("End")
    expect(readout).to_have_text("Image 3 of 3, position -10.0 mm")
    expect(page.locator("#viewer-image")).to_have_attribute("src", re.compile("^blob:"))
    expect(page.locator("#viewer-slider")).to_have_attribute("max", "3")

    # Back returns to the first series, still in place.
    page.go_back()
    expect(readout).to_have_text("Image 1 of 5, position -30.0 mm")
    assert page.evaluate("window.__samePage") is True

    # Each series opened is one viewer event, as opening its page would be.
    events = AccessEvent.objects.filter(study=study, source="portal", action="view")
    assert sorted(e.details["series"] for e in events if e.details.get("page") == "viewer") == sorted([first.pk, second.pk, first.pk])


def test_thumbnails_show_a_placeholder_until_they_load(page: Page, live_server, site, patient, tmp_path):
    """Before: each thumbnail was a black box until its first render (0.2-0.35 s each) arrived."""
    study = two_series_study(patient, tmp_path)
    held = []
    page.route("**/thumbnail.png", lambda route: held.append(route))
    sign_in(page, live_server.url, patient)
    for url, box in (("/", ".study-thumb"), (f"/studies/{study.pk}/", ".series-thumb")):
        if url != "/":
            page.goto(live_server.url + url, wait_until="domcontentloaded")  # "load" waits for the held images
        thumb = page.locator(box).first
        expect(thumb.locator(".thumb-placeholder")).to_contain_text("Preview loading")
        expect(thumb.locator(".thumb-placeholder")).to_be_visible()
        pixels = Image.open(io.BytesIO(thumb.screenshot())).convert("L")
        assert ImageStat.Stat(pixels).mean[0] > 150, "a thumbnail still loading shows as a dark square"
    assert held, "no thumbnail was requested"
    page.unroute("**/thumbnail.png")  # the held requests die with the page; a reload asks again
    page.reload()
    page.wait_for_function("() => [...document.querySelectorAll('.series-thumb img')].every(i => i.naturalWidth > 0)")
    thumb = page.locator(".series-thumb").first
    image_box, thumb_box = thumb.locator("img").bounding_box(), thumb.bounding_box()
    assert image_box["width"] >= thumb_box["width"] - 2 and image_box["height"] >= thumb_box["height"] - 2
