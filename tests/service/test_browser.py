"""A real browser (Debian's chromium via Playwright) drives the page against a live server on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference.bundles import add_warning_gate, make_bundle

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; "
                              "scripts/setup.sh does it) to run the browser test"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, base: str, width: int = 1280, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    foreign: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else foreign.append(r.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/")
    return page, foreign, errors


def test_upload_result_heatmap_history_in_a_real_browser(browser, live_server, real_xrays):
    ARTIFACTS.mkdir(exist_ok=True)
    base = live_server()
    page, foreign, errors = open_page(browser, base)
    page.wait_for_selector("#model-line:has-text('simple_cnn')")
    assert page.is_hidden("#login-panel")  # no accounts: a loopback server needs no sign-in

    page.set_input_files("#file-input", str(real_xrays[-1]))
    page.wait_for_selector("#result-label", state="visible", timeout=20_000)
    label = page.inner_text("#result-label")
    assert label in {"NORMAL", "PNEUMONIA"}
    assert page.inner_text("#probability").startswith("P(pneumonia)")

    # The confidence bar: filled to the probability, coloured by the side of the threshold, threshold marked.
    probability = float(page.get_attribute("#confidence-bar", "aria-valuenow")) / 100
    bar_width = page.locator("#confidence-bar").bounding_box()["width"]
    fill_width = page.locator("#confidence-fill").bounding_box()["width"]
    assert fill_width == pytest.approx(probability * bar_width, abs=2)
    fill_class = page.get_attribute("#confidence-fill", "class")
    assert ("above" in fill_class) == (label == "PNEUMONIA")
    assert page.inner_text("#threshold-label").startswith("threshold")
    assert page.locator("#threshold-marker").bounding_box()["x"] > page.locator("#confidence-bar").bounding_box()["x"]

    # The heatmap: a decoded PNG over the preview, with a working toggle and opacity slider.
    page.wait_for_function("() => { const o = document.getElementById('overlay');"
                           " return !o.hidden && o.complete && o.naturalWidth > 0; }")
    assert page.get_attribute("#overlay", "src").startswith("data:image/png;base64,")
    preview = page.locator("#preview").bounding_box()
    overlay = page.locator("#overlay").bounding_box()
    # Anchored on the preview at the same width (a colour-scale strip under the image may hang below, clipped).
    assert (overlay["x"], overlay["y"]) == (pytest.approx(preview["x"], abs=1), pytest.approx(preview["y"], abs=1))
    assert overlay["width"] == pytest.approx(preview["width"], abs=1)
    assert overlay["height"] >= preview["height"] - 1
    page.fill("#opacity", "30")
    assert page.eval_on_selector("#overlay", "o => o.style.opacity") == "0.3"
    page.screenshot(path=str(ARTIFACTS / "service-desktop.png"), full_page=True)
    page.uncheck("#heatmap-toggle")
    assert page.is_hidden("#overlay")
    page.check("#heatmap-toggle")
    assert page.is_visible("#overlay")

    # History: the new analysis is listed first; opening it shows the same result.
    entry_id = page.inner_text("#result-id").lstrip("#")
    item = page.locator(f".history-item[data-id='{entry_id}']")
    item.wait_for()
    assert page.locator(".history-item").first.get_attribute("data-id") == entry_id
    page.set_input_files("#file-input", str(real_xrays[0]))  # a second analysis, then go back to the first
    page.wait_for_selector(f".history-item[data-id='{int(entry_id) + 1}']")
    page.click(f".history-item[data-id='{entry_id}']")
    page.wait_for_selector("#file-line:has-text('From history')")
    assert page.inner_text("#result-label") == label
    assert page.inner_text("#result-id") == f"#{entry_id}"
    assert page.is_visible("#overlay")

    # Phone width: one column, nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(100)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "service-phone.png"), full_page=True)

    assert not foreign, f"the page fetched external resources: {foreign}"
    assert not errors, f"JavaScript errors: {errors}"


def test_api_key_prompt_dicom_and_errors_in_the_browser(browser, live_server, real_xrays, xray_dicom, tmp_path):
    base = live_server(api_key="ward-7-key")
    page, foreign, errors = open_page(browser, base, width=390, height=844)
    page.wait_for_selector("#login-panel", state="visible")
    page.set_input_files("#file-input", str(real_xrays[0]))
    page.wait_for_selector("#error-box", state="visible")
    assert "sign in" in page.inner_text("#error-box")

    page.fill("#api-key-input", "ward-7-key")
    page.click("#api-key-form button[type=submit]")
    page.wait_for_selector("#whoami:has-text('PNEUMO_API_KEY')")
    page.set_input_files("#file-input", str(real_xrays[0]))
    page.wait_for_selector("#result-label", state="visible", timeout=20_000)
    assert page.evaluate("sessionStorage.getItem('pneumo.apiKey')") == "ward-7-key"
    page.wait_for_selector(".history-item")

    # DICOM: the browser cannot draw it, so the overlay PNG (decoded X-ray + heatmap) becomes the picture.
    dicom = tmp_path / "scan.dcm"
    dicom.write_bytes(xray_dicom)
    page.set_input_files("#file-input", str(dicom))
    page.wait_for_selector(".history-item[data-id='2']")
    assert page.is_hidden("#preview")
    if page.inner_text("#result-label") != "UNKNOWN":
        page.wait_for_selector("#overlay", state="visible")
        assert page.eval_on_selector("#overlay", "o => o.style.opacity") == "1"

    not_an_image = tmp_path / "report.jpeg"
    not_an_image.write_text("this is a text report, not an image")
    page.set_input_files("#file-input", str(not_an_image))
    page.wait_for_selector("#error-box", state="visible")
    assert "JPEG, PNG or DICOM" in page.inner_text("#error-box")
    assert not foreign and not errors


def test_out_of_distribution_notice_and_history_flag(browser, live_server, real_xrays, tmp_path):
    bundle = add_warning_gate(make_bundle(tmp_path / "ood-bundle"))
    base = live_server(model=str(bundle))
    page, foreign, errors = open_page(browser, base)
    page.set_input_files("#file-input", str(real_xrays[0]))
    page.wait_for_selector("#result-label", state="visible", timeout=20_000)
    assert page.inner_text("#result-label") in {"NORMAL", "PNEUMONIA"}  # a result, not UNKNOWN
    assert page.inner_text("#probability").startswith("P(pneumonia)")
    assert page.is_visible("#ood-box") and page.is_hidden("#unknown-box")
    assert "unlike the ones the model was trained on" in page.inner_text("#ood-box")
    assert "unlike the training population" in page.inner_text("#ood-reason")
    page.wait_for_selector(".history-item .ood-flag")
    assert page.inner_text(".history-item .ood-flag") == "OOD"
    page.screenshot(path=str(ARTIFACTS / "service-ood.png"), full_page=True)
    assert not foreign and not errors


def test_sign_in_upload_and_sign_out_in_the_browser(browser, live_server, real_xrays, accounts):
    from .accounts_support import PASSWORD

    base = live_server()
    page, foreign, errors = open_page(browser, base)
    page.wait_for_selector("#login-panel", state="visible")
    assert page.is_hidden("#account-bar")
    page.fill("#login-name", "clinician-1")
    page.fill("#login-password", "not the password")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-status:has-text('wrong name or password')")

    page.fill("#login-name", "clinician-1")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#whoami:has-text('clinician-1 (clinician)')")
    assert page.is_hidden("#login-panel")
    assert "pneumo_session" not in page.evaluate("document.cookie")  # HttpOnly: no script can read it
    page.wait_for_selector("#model-line:has-text('simple_cnn')")
    page.set_input_files("#file-input", str(real_xrays[0]))  # a POST: the page sends its CSRF token
    page.wait_for_selector("#result-label", state="visible", timeout=20_000)
    page.wait_for_selector(".history-item")

    page.click("#logout")
    page.wait_for_selector("#login-panel", state="visible")
    assert page.locator(".history-item").count() == 0
    page.reload()
    page.wait_for_selector("#login-panel", state="visible")  # the session really ended on the server

    page.fill("#login-name", "viewer-1")  # a viewer reads the history but may not upload
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector(".history-item")
    page.set_input_files("#file-input", str(real_xrays[0]))
    page.wait_for_selector("#error-box", state="visible")
    assert "viewer role may not POST" in page.inner_text("#error-box")
    assert not foreign and not errors


def test_review_a_result_and_load_the_site_figures_in_the_browser(browser, live_server, real_xrays):
    base = live_server()
    page, foreign, errors = open_page(browser, base)
    page.wait_for_selector("#model-line:has-text('@')")  # the bundle's name@hash
    assert page.is_visible("#site-card")  # the loopback server's local caller is a clinician
    page.set_input_files("#file-input", str(real_xrays[0]))
    page.wait_for_selector("#review-form", state="visible", timeout=20_000)
    assert "@" in page.inner_text("#result-model")
    assert page.inner_text("#review-current") == "Not reviewed yet."
    page.select_option("#review-label", "PNEUMONIA_VIRAL")
    page.fill("#review-note", "patchy both bases")
    page.click("#review-form button[type=submit]")
    page.wait_for_selector("#review-status:has-text('Saved.')")
    assert page.inner_text("#review-current").startswith("Latest review: Pneumonia, viral by local")
    page.click("#site-load")
    page.wait_for_selector("#site-body h3")
    assert "not enough reviews yet: 1 pneumonia" in page.inner_text("#site-body") or (
        "0 pneumonia" in page.inner_text("#site-body"))  # 0 when pneumo answered UNKNOWN
    assert not foreign and not errors, (foreign, errors)
