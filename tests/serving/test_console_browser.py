"""The web console in a real headless Chromium, against a real server process and models trained here.

The fixture trains small churn and digits_images models with the pipeline (real
data: 1,500 churn rows; scikit-learn's digits, which need no download) and serves
them beside TF Serving's half_plus_two test model, which has no schema. The tests
use the page as a person would: fill the churn form with the lecture's unseen
customer, upload a digit image, try bad inputs, and compare what the page shows
with the answer a plain REST client gets.

`CONSOLE_SCREENSHOTS=docs` saves the README's screenshots (docs/console_*.png).
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.client import RestClient
from serving.demo import stop_process
from specs.dataset import PROJECT_ROOT, load_spec
from tests.browser import browser, browser_missing_reason, save_screenshot, wait_for  # noqa: F401 - fixture
from tests.serving.serving_test_support import ServerProcess, start_server
from tests.support import isolated_config, write_sample

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(browser_missing_reason() is not None,
                                                   reason=browser_missing_reason() or "")]
MAX_BODY_BYTES = 20_000  # small enough that a 40 KB image hits it, large enough for a digit
HALF_PLUS_TWO = Path(__file__).parent / "testdata" / "tf_serving" / "saved_model_half_plus_two_2_versions"
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> ServerProcess:
    from pipeline.local_runner import run_local

    home = tmp_path_factory.mktemp("console_browser")
    write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", home / "churn_sample", 1500)
    churn = run_local(load_spec("churn"), isolated_config(
        home, input_base=str(home / "churn_sample"), hparams={"epochs": 4}, thresholds={"AUC": {"lower_bound": 0.6}}))
    digits = run_local(load_spec("digits_images"), isolated_config(
        home, hparams={"epochs": 3}, thresholds={"SparseCategoricalAccuracy": {"lower_bound": 0.5}}))
    assert churn.blessed and digits.blessed
    half_plus_two = home / "half_plus_two"
    shutil.copytree(HALF_PLUS_TWO, half_plus_two)
    (half_plus_two / "reports").mkdir()
    (half_plus_two / "reports" / "123.html").write_text("<!doctype html><h1>Run report</h1>")
    config = home / "models.config"
    config.write_text(textwrap.dedent(f"""\
        model_config_list {{
          config {{ name: "churn" base_path: "{home / 'serving' / 'churn'}" }}
          config {{ name: "digits_images" base_path: "{home / 'serving' / 'digits_images'}" }}
          config {{ name: "half_plus_two" base_path: "{half_plus_two}" model_version_policy {{ all {{}} }} }}
          config {{ name: "nothing_yet" base_path: "{home / 'not_pushed_yet'}" }}
        }}
        """))
    process = start_server([f"--model_config_file={config}", f"--rest_api_max_body_bytes={MAX_BODY_BYTES}"],
                           home / "server.log", wait_for=["churn", "digits_images", "half_plus_two"])
    yield process
    stop_process(process.process)


def rest_predict(server: ServerProcess, model: str, instance: dict) -> dict:
    with RestClient("127.0.0.1", server.rest_port, timeout=60) as client:
        return client.predict(model, instances=[instance])


def open_console(driver, server: ServerProcess, model: str) -> None:
    driver.get(f"http://127.0.0.1:{server.rest_port}/?model={model}")
    wait_for(driver, lambda d: d.find_elements("css selector", "#fields .field"))


def field(driver, name: str):
    return driver.find_element("id", f"input-{name}")


def fill(driver, values: dict) -> None:
    from selenium.webdriver.support.ui import Select

    for name, value in values.items():
        element = field(driver, name)
        if element.tag_name == "select":
            Select(element).select_by_value(str(value))
        else:
            element.clear()
            element.send_keys(str(value))


def predict(driver) -> None:
    driver.find_element("id", "predict").click()


def answer_shown(driver) -> dict:
    """Waits for the answer; returns the headline's data and each bar's class -> (probability, shown text)."""
    wait_for(driver, lambda d: d.find_element("id", "answer").is_displayed())
    headline = driver.find_element("id", "headline")
    bars = {bar.get_attribute("data-class"): (float(bar.get_attribute("data-probability")),
                                              bar.find_element("class name", "value").text)
            for bar in driver.find_elements("css selector", "#chart .bar")}
    return {"headline": headline.text, "class": headline.get_attribute("data-class"),
            "value": headline.get_attribute("data-value"), "bars": bars}


def message_shown(driver) -> str:
    """Waits for the page's error message; checks no answer is shown beside it and no stack trace anywhere."""
    message = wait_for(driver, lambda d: d.find_element("id", "message").is_displayed()
                       and d.find_element("id", "message").text)
    assert not driver.find_element("id", "answer").is_displayed()
    assert "Traceback" not in driver.page_source
    return message


def exchange_shown(driver) -> tuple[dict, dict]:
    """The request and response JSON the page shows beside the answer."""
    wait_for(driver, lambda d: d.find_element("id", "response-json").text not in ("", "(waiting)"))
    return (json.loads(driver.find_element("id", "request-json").text),
            json.loads(driver.find_element("id", "response-json").text))


def upload(driver, path: Path) -> None:
    field(driver, "image").send_keys(str(path))


def screenshot(driver, name: str) -> None:
    """With CONSOLE_SCREENSHOTS set: the whole page (window grown to fit) as a small PNG there."""
    if not SCREENSHOTS:
        return
    width, height = driver.get_window_size().values()
    driver.set_window_size(width, driver.execute_script(
        "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight"))
    try:
        path = save_screenshot(driver, Path(SCREENSHOTS) / name, width=900)
    finally:
        driver.set_window_size(width, height)
    with Image.open(path) as image:  # 64 colours: a third of the bytes, same look for a flat page
        image.convert("RGB").quantize(64).save(path, optimize=True)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_churn_form_comes_from_signature_and_schema(browser, server):
    open_console(browser, server, "churn")
    from selenium.webdriver.support.ui import Select

    names = [element.get_attribute("name") for element in browser.find_elements("css selector", "#fields [name]")]
    assert sorted(names) == sorted(load_spec("churn").feature_names)
    geography = [option.get_attribute("value") for option in Select(field(browser, "Geography")).options]
    assert geography == ["", "France", "Germany", "Spain"]  # the curated schema's domain
    assert (field(browser, "Age").get_attribute("min"), field(browser, "Age").get_attribute("max")) == ("18", "120")
    assert field(browser, "Age").get_attribute("step") == "1"  # DT_INT64
    assert field(browser, "Balance").get_attribute("step") == "any"  # DT_FLOAT


def test_churn_unseen_customer_gets_the_rest_apis_probability(browser, server):
    customer = dict(load_spec("churn").example_instance)
    open_console(browser, server, "churn")
    fill(browser, customer)
    predict(browser)
    shown = answer_shown(browser)
    expected = rest_predict(server, "churn", customer)["predictions"][0]
    assert set(shown["bars"]) == {"stayed", "exited"}
    probability, text = shown["bars"]["exited"]
    assert probability == pytest.approx(expected["probability"], abs=1e-6)
    assert text == f"{expected['probability']:.4f}"
    assert shown["class"] == expected["classes"]
    request, response = exchange_shown(browser)
    assert request == {"instances": [customer]}  # exactly what a client sends
    assert response == {"predictions": [expected]}
    screenshot(browser, "console_churn.png")


def test_digit_upload_shows_preview_and_the_class(browser, server, tmp_path):
    digit = base64.b64decode(load_spec("digits_images").example_instance["image"]["b64"])  # scikit-learn's "3"
    path = tmp_path / "digit_3.png"
    path.write_bytes(digit)
    open_console(browser, server, "digits_images")
    upload(browser, path)
    preview = wait_for(browser, lambda d: d.find_element("id", "preview").is_displayed()
                       and d.find_element("id", "preview"))
    assert int(preview.get_property("naturalWidth")) == 8  # the browser decoded the 8x8 PNG
    predict(browser)
    shown = answer_shown(browser)
    expected = rest_predict(server, "digits_images", {"image": {"b64": base64.b64encode(digit).decode()}})
    expected = expected["predictions"][0]
    assert list(shown["bars"]) == [str(label) for label in range(10)]
    assert shown["class"] == expected["classes"] == "3"
    for name, (probability, _) in shown["bars"].items():
        assert probability == pytest.approx(expected["probabilities"][int(name)], abs=1e-6)
    request, _ = exchange_shown(browser)
    assert request["instances"][0]["image"]["b64"].endswith("characters in all)")  # abbreviated for reading
    screenshot(browser, "console_digits.png")


def test_bad_form_input_gets_a_message(browser, server):
    customer = dict(load_spec("churn").example_instance)
    open_console(browser, server, "churn")
    predict(browser)
    assert message_shown(browser) == "The form is empty: fill in every field, then Predict."
    fill(browser, {name: value for name, value in customer.items() if name != "Tenure"})
    predict(browser)
    assert message_shown(browser) == "Fill in every field; missing: Tenure."
    fill(browser, {**customer, "Age": 150})
    predict(browser)
    assert message_shown(browser) == "Age must be between 18 and 120 (the schema's range)."


def test_bad_uploads_get_a_message(browser, server, tmp_path):
    open_console(browser, server, "digits_images")
    predict(browser)
    assert message_shown(browser) == "Choose an image file first."

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    upload(browser, text)
    assert "notes.txt is not an image the console can send (text/plain)" in message_shown(browser)

    huge = tmp_path / "huge.png"
    huge.write_bytes(png_bytes(np.zeros((8, 8), np.uint8)) + b"\0" * (5 * 1024 * 1024))
    upload(browser, huge)
    assert message_shown(browser) == "huge.png is 5.0 MB; the console sends images of at most 4.0 MB."

    noise = tmp_path / "noise.png"
    noise.write_bytes(png_bytes(np.random.default_rng(0).integers(0, 256, (200, 200), np.uint8)))
    assert len(noise.read_bytes()) > MAX_BODY_BYTES
    upload(browser, noise)
    wait_for(browser, lambda d: d.find_element("id", "preview").is_displayed())
    predict(browser)
    assert f"this server accepts at most {MAX_BODY_BYTES} (its --rest_api_max_body_bytes)" in message_shown(browser)

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"these bytes are not a PNG")
    upload(browser, broken)
    wait_for(browser, lambda d: d.find_element("id", "preview").is_displayed())  # read, though not displayable
    predict(browser)  # the browser cannot check the bytes; the model's decode refuses them
    message = message_shown(browser)
    assert message.startswith("The server answered HTTP 400: ")
    _, response = exchange_shown(browser)
    assert message.split() == f"The server answered HTTP 400: {response['error']}".split()  # as rendered
    assert "Unknown image file format" in message


def test_model_without_schema_gets_a_form_and_versions_link_to_their_report(browser, server):
    from selenium.webdriver.support.ui import Select

    open_console(browser, server, "half_plus_two")
    versions = Select(browser.find_element("id", "version"))
    assert [option.text for option in versions.options] == ["124", "123"]
    assert not browser.find_element("id", "report-link").is_displayed()
    versions.select_by_value("123")
    link = wait_for(browser, lambda d: d.find_element("id", "report-link").is_displayed()
                    and d.find_element("id", "report-link"))
    assert link.get_attribute("href").endswith("/console/reports/half_plus_two/123")
    fill(browser, {"x": 3})
    predict(browser)
    assert answer_shown(browser)["value"] == "3.5"  # half_plus_two: 3 / 2 + 2
    request, response = exchange_shown(browser)
    assert request == {"instances": [{"x": [3]}]}  # the signature's [-1, 1] shape, filled in by the page
    assert response == {"predictions": [[3.5]]}


def test_model_with_no_version_yet_says_so(browser, server):
    browser.get(f"http://127.0.0.1:{server.rest_port}/?model=nothing_yet")
    assert message_shown(browser) == ("Model nothing_yet has no version loaded yet; "
                                      "reload the page once one is available.")
    assert not browser.find_element("id", "predict").is_enabled()
