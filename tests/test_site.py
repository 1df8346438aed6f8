"""The course website (`make site`: Jupyter Book over the executed notebooks, the student edition and docs/), built
into a temporary folder and opened in headless Chromium: notebook 01's page shows its attention figure, the results
page shows Table 1, the front page shows its picture, and the navigation follows the course.

Needs jupyter-book (pip install -e '.[dev]') and the system Chromium with its driver (apt-get install chromium
chromium-driver; `.ci/run` installs them). Without them the test is skipped locally and fails in CI (CI=true).
The build reads the stored outputs and executes nothing: about a minute on 2 busy cores.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT as ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _missing(reason):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI: .ci/run and `make setup` should have installed it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if not (CHROMIUM and CHROMEDRIVER):
    _missing("the site's browser test needs chromium and chromedriver (apt-get install chromium chromium-driver)")
try:
    import jupyter_book  # noqa: F401
    from selenium import webdriver
    from selenium.webdriver.common.by import By
except ImportError as e:
    _missing(f"the site test needs jupyter-book and selenium ({e}; pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--config", "site/_config.yml",
           "--toc", "site/_toc.yml", "--path-output", str(out), "-W", "--keep-going", "-q"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"jupyter-book build failed (warnings count as errors):\n{(p.stdout + p.stderr)[-4000:]}"
    html = out / "_build" / "html"
    assert (html / "index.html").is_file()
    return html


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--window-size=1300,2000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def loaded_images(browser, scope):
    """<img> elements under `scope` that the browser really decoded (a broken or missing file has width 0)."""
    return [i for i in scope.find_elements(By.TAG_NAME, "img")
            if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)]


@pytest.mark.slow
def test_notebook_01_page_shows_its_attention_figure(site, browser):
    browser.get((site / "notebooks" / "01_attention.html").as_uri())
    assert "Attention" in browser.title
    cells = [c for c in browser.find_elements(By.CSS_SELECTOR, "div.cell")
             if "MiniLM attention over" in c.text or "MiniLM attention over" in c.get_attribute("innerHTML")]
    assert cells, "the cell that draws the 6 x 12 attention grid is not on the page"
    pictures = loaded_images(browser, cells[0])
    assert pictures, "the attention grid's picture did not load"
    width = browser.execute_script("return arguments[0].naturalWidth", pictures[0])
    assert width > 600, f"the attention grid is {width} px wide"


@pytest.mark.slow
def test_results_page_shows_table_1(site, browser):
    browser.get((site / "docs" / "results.html").as_uri())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Table 1, full runs" in body
    tables = [t for t in browser.find_elements(By.TAG_NAME, "table") if "paper SST / Para / STS" in t.text]
    assert tables, "no rendered Table 1 (the table with the paper's numbers beside ours)"
    first_cells = [c.text for c in tables[0].find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")]
    assert "majority class" in first_cells and "zero-shot (mean-pooled cosine)" in first_cells, first_cells
    assert {"only-sst", "rr-balanced", "rr-balanced-specialized", "rr-balanced-specialized-mt"} <= set(first_cells)


@pytest.mark.slow
def test_front_page_picture_and_course_navigation(site, browser):
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get((site / "index.html").as_uri())  # a redirect to the front page, the README
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("README.html") and d.find_elements(By.TAG_NAME, "main"))
    main = browser.find_element(By.TAG_NAME, "main")
    assert any("table1" in i.get_attribute("src") for i in loaded_images(browser, main)), "the Table 1 picture"
    nav = browser.find_element(By.CSS_SELECTOR, "nav.bd-docs-nav").text
    order = ["Build BERT from scratch", "01 · Attention", "Fine-tune and reproduce the paper", "Exercises", "Results"]
    at = [nav.find(x) for x in order]
    assert -1 not in at and at == sorted(at), nav
