"""The try-it page in a real headless Chromium against a real server on the tiny store.

Debian's ``chromium`` and ``chromium-driver`` (scripts/system-deps.sh) are driven by Selenium;
no browser is downloaded. Screenshots at 375 and 1440 px go to the test's tmp dir, and also
to ``OCLIP_SCREENSHOTS_DIR`` when set (that is how docs/ gets its copies).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_process import RunningServer, serving

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TASKS = ("age", "aesthetics", "decade")
API_KEY = "page-test-key"
WAIT_S = 120  # a generous ceiling for a slow machine, never a speed assertion

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (scripts/system-deps.sh)",
    ),
]


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real portrait that a package ships: scikit-image's astronaut, as a JPEG."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = tmp_path_factory.mktemp("upload") / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def not_an_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "notes.txt"
    path.write_text("this is a text file, not a photograph\n")
    return path


@pytest.fixture()
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1440,1000")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def open_server(
    tiny_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with serving(tiny_store, tmp_path_factory.mktemp("page") / "server.log") as running:
        yield running


def wait_for(driver: webdriver.Chrome, css: str, count: int = 1) -> list:
    """The elements matching ``css`` once there are at least ``count`` of them."""
    WebDriverWait(driver, WAIT_S).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= count
    )
    return driver.find_elements(By.CSS_SELECTOR, css)


def upload(driver: webdriver.Chrome, *files: Path) -> None:
    wait_for(driver, "#task-list input[name=task]", len(TASKS))
    driver.find_element(By.ID, "images").send_keys("\n".join(str(f) for f in files))


def api_answer(server: RunningServer, photo: Path, headers: dict[str, str] | None = None) -> dict:
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    response = httpx.post(
        f"{server.url}/v1/predict", params={"tasks": ",".join(TASKS)}, files=files, headers=headers
    )
    response.raise_for_status()
    return response.json()["predictions"][0]["results"]


def screenshot(driver: webdriver.Chrome, width: int, path: Path) -> None:
    """The whole page in a viewport exactly ``width`` CSS px wide, as tall as the page."""
    metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path))
    copy_to = os.environ.get("OCLIP_SCREENSHOTS_DIR")
    if copy_to:
        shutil.copy(path, Path(copy_to) / path.name)


def test_charts_match_the_api_and_a_bad_file_shows_its_error(
    open_server: RunningServer,
    browser: webdriver.Chrome,
    photo: Path,
    not_an_image: Path,
    tmp_path: Path,
) -> None:
    browser.get(f"{open_server.url}/")
    wait_for(browser, "#task-list input[name=task]", len(TASKS))
    upload(browser, photo, not_an_image)

    cards = wait_for(browser, "#results .card", 2)
    wait_for(browser, "#results .card .task .chart", len(TASKS))
    error = wait_for(browser, "#results .card .error")[0]
    photo_card, text_card = cards
    assert text_card.find_elements(By.CSS_SELECTOR, ".error") == [error]
    assert not photo_card.find_elements(By.CSS_SELECTOR, ".error")

    part = (not_an_image.name, not_an_image.read_bytes(), "text/plain")
    bad = httpx.post(f"{open_server.url}/v1/predict", files={"image": part})
    assert bad.status_code >= 400 and error.text == bad.json()["error"]["message"]

    answer = api_answer(open_server, photo)
    models = {m["task"]: m for m in httpx.get(f"{open_server.url}/v1/models").json()["models"]}
    sections = photo_card.find_elements(By.CSS_SELECTOR, ".task")
    assert sorted(s.get_attribute("data-task") for s in sections) == sorted(TASKS)
    for section in sections:
        task = section.get_attribute("data-task")
        charts = section.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 1
        bars = charts[0].find_elements(By.CSS_SELECTOR, "rect.bar")
        assert len(bars) == models[task]["num_ranks"]
        shown = float(section.find_element(By.CSS_SELECTOR, ".expected-value").text)
        assert shown == pytest.approx(answer[task]["expected"], abs=0.051)
        assert models[task]["version"] in section.find_element(By.CSS_SELECTOR, ".model").text

    for width in (375, 1440):
        screenshot(browser, width, tmp_path / f"web-page-{width}.png")
        assert (tmp_path / f"web-page-{width}.png").stat().st_size > 0
        overflow = "return document.documentElement.scrollWidth - window.innerWidth"
        assert browser.execute_script(overflow) <= 0  # readable: no sideways scrolling


def test_faces_are_boxed_and_answered_per_face_as_the_api_says(
    open_server: RunningServer, browser: webdriver.Chrome, photo: Path
) -> None:
    browser.get(f"{open_server.url}/")
    option = wait_for(browser, "#faces-option:not([hidden])")[0]  # the API offers faces
    assert option.is_displayed()
    browser.find_element(By.ID, "faces").click()
    upload(browser, photo)
    wait_for(browser, "#results .card .face .task .chart", len(TASKS))
    files = {"image": (photo.name, photo.read_bytes(), "image/jpeg")}
    params = {"tasks": ",".join(TASKS), "faces": "true"}
    response = httpx.post(f"{open_server.url}/v1/predict", params=params, files=files)
    (face,) = response.json()["predictions"][0]["faces"]  # the astronaut: one face
    (box,) = wait_for(browser, "#results svg.faces rect.face-box")
    for name in ("x", "y", "width", "height"):
        assert float(box.get_attribute(name)) == face["box"][name]
    (group,) = browser.find_elements(By.CSS_SELECTOR, "#results .face")
    shown = group.find_element(By.CSS_SELECTOR, '.task[data-task="age"] .expected-value')
    assert float(shown.text) == pytest.approx(face["results"]["age"]["expected"], abs=0.051)


def test_with_api_keys_the_page_asks_for_a_key_then_works(
    tiny_store: Path, tmp_path: Path, browser: webdriver.Chrome, photo: Path
) -> None:
    env = {"OCLIP_API_KEYS": API_KEY}
    with serving(tiny_store, tmp_path / "server.log", env) as server:
        refused = httpx.get(f"{server.url}/v1/models")
        assert refused.status_code == 401
        browser.get(f"{server.url}/")
        message = wait_for(browser, "#key-panel:not([hidden]) #key-message")[0]
        assert message.is_displayed()
        WebDriverWait(browser, WAIT_S).until(lambda _: message.text)
        assert message.text == refused.json()["error"]["message"]
        assert not browser.find_elements(By.CSS_SELECTOR, "#results .chart")

        key = browser.find_element(By.ID, "api-key")
        assert browser.switch_to.active_element == key  # focus moved to the prompt
        key.send_keys(API_KEY + "\n")
        upload(browser, photo)
        wait_for(browser, "#results .task .chart", len(TASKS))
        assert not browser.find_element(By.ID, "key-panel").is_displayed()
        answer = api_answer(server, photo, {"Authorization": f"Bearer {API_KEY}"})
        shown = browser.find_element(By.CSS_SELECTOR, '.task[data-task="age"] .expected-value')
        assert float(shown.text) == pytest.approx(answer["age"]["expected"], abs=0.051)
        stored = "return [localStorage.length, sessionStorage.length, document.cookie]"
        assert browser.execute_script(stored) == [0, 0, ""]  # the key stays in memory only
