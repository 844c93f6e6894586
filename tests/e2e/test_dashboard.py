"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) on a real mesh
that has counted real news articles: what the page shows equals what the JSON API says."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningMesh, start_mesh, stop_mesh

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# This machine has no network but the package registries: without the background-networking
# flags Chromium keeps trying (and failing) to reach Google's hosts. Playwright itself gives
# each launch a new, empty profile (and refuses a --user-data-dir in args).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTICLES = 60
# Reads every bar of the chart as the page shows it.
READ_BARS = """els => els.map(e => ({
    key: e.dataset.entity,
    text: e.querySelector('.entity-text').textContent,
    label: e.dataset.label,
    count: Number(e.dataset.count),
    shown: e.querySelector('.entity-count').textContent.replaceAll(',', ''),
    shownLabel: e.querySelector('.entity-label').textContent,
    width: e.querySelector('.bar').getBoundingClientRect().width,
}))"""
# True once the chart shows the page asked for (not a page still loading, nor an older one).
CHART_SHOWS = """([publication, label, page]) => {
    const c = document.getElementById('chart');
    return ['ready', 'empty'].includes(c.dataset.state) && c.dataset.publication === publication
        && c.dataset.label === label && c.dataset.page === String(page);
}"""


def unavailable(why: str) -> None:
    # Locally a missing browser is a skip with its reason; in CI it must not pass unseen.
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set: the dashboard test must run)")
    pytest.skip(why)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        # Debian's Chromium, never a browser download of Playwright's own (none is possible).
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def api_page(
    running: RunningMesh, publication: str, limit: int, label: str = "", cursor: str | None = None
) -> dict:
    params: dict[str, str | int] = {"publication": publication, "limit": limit}
    if label:
        params["label"] = label
    if cursor:
        params["cursor"] = cursor
    response = running.http.get("/entities", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def shown_bars(page: Any) -> list[dict]:
    return page.eval_on_selector_all("#chart [data-entity]", READ_BARS)


def assert_chart_equals(page: Any, entities: list[dict]) -> None:
    bars = shown_bars(page)
    assert [(b["key"], b["text"], b["label"], b["count"]) for b in bars] == [
        (e["key"], e["text"], e["label"], e["count"]) for e in entities
    ]
    # Each bar carries its own text and count, readable without the picture.
    assert all(b["shown"] == str(b["count"]) and b["shownLabel"] == b["label"] for b in bars)
    widths = [b["width"] for b in bars]
    assert widths == sorted(widths, reverse=True) and widths[-1] > 0


# Predicates are functions, not bare expressions: Playwright evaluates an expression with
# eval(), which the page's Content-Security-Policy rightly refuses.
def wait_chart(page: Any, publication: str, label: str = "", number: int = 1) -> None:
    page.wait_for_function(CHART_SHOWS, arg=[publication, label, number])


def test_dashboard_shows_what_the_api_says(browser, tmp_path, corpus_articles):
    running = start_mesh(tmp_path / "mesh")
    try:
        response = running.post(corpus_articles[:ARTICLES])
        assert response.status_code == 202, response.text
        running.wait_drained(timeout=300)
        publications = running.http.get("/publications").json()["publications"]
        assert len(publications) >= 2
        check_dashboard(browser, running, publications)
    finally:
        stop_mesh(running)


def check_dashboard(browser: Any, running: RunningMesh, publications: list[dict]) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(running.url + "/")

    # The publications as the API lists them, and the first one selected by default.
    page.wait_for_selector("#publications li[data-name]")
    shown = page.eval_on_selector_all(
        "#publications li", "els => els.map(e => [e.dataset.name, Number(e.dataset.articles)])"
    )
    assert shown == [[p["name"], p["articles"]] for p in publications]
    first = publications[0]["name"]
    wait_chart(page, first)
    assert page.get_attribute("#publications li.selected", "data-name") == first
    limit = int(page.get_attribute("#chart", "data-limit"))

    # Another publication, by a click on its list item: the chart is its first page.
    chosen = publications[-1]["name"]
    page.click(f"#publications li[data-name={json.dumps(chosen)}]")
    wait_chart(page, chosen)
    assert page.get_attribute("#publications li.selected", "data-name") == chosen
    first_page = api_page(running, chosen, limit)
    assert len(first_page["entities"]) == limit
    assert_chart_equals(page, first_page["entities"])

    # Next shows the API's second page; Previous comes back to the first.
    assert first_page["next_cursor"]
    page.click("#next")
    wait_chart(page, chosen, number=2)
    assert_chart_equals(
        page, api_page(running, chosen, limit, cursor=first_page["next_cursor"])["entities"]
    )
    page.click("#prev")
    wait_chart(page, chosen)
    assert_chart_equals(page, first_page["entities"])

    # A label filter: every bar is a place, exactly the API's GPE page.
    page.select_option("#label", "GPE")
    wait_chart(page, chosen, "GPE")
    places = api_page(running, chosen, limit, label="GPE")["entities"]
    assert places
    assert_chart_equals(page, places)
    assert {b["label"] for b in shown_bars(page)} == {"GPE"}

    # The pipeline panel, refreshed by the page itself.
    page.wait_for_function("() => document.getElementById('state').dataset.state === 'accepting'")
    assert page.text_content("#state") == "accepting"
    # The journal is drained, but /status tells what the ledgers last reported (each
    # second): the panel's own refresh must bring the backlog to 0 without a reload.
    page.wait_for_function("() => document.getElementById('backlog').textContent === '0'")
    assert page.text_content("#oldest-age") == "none waiting"
    assert int(page.text_content("#processes tr[data-stage=extractor] td")) >= 1
    assert page.is_hidden("#status-error")

    # Back to every label (the picture shows the mix), then a screenshot for people to see.
    page.select_option("#label", "")
    wait_chart(page, chosen)
    assert_chart_equals(page, first_page["entities"])
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert not problems, problems

    # Control not answering: the page says so instead of showing stale numbers as live.
    unavailable_body = {"title": "Control unavailable", "description": "no answer from control"}
    page.route(
        "**/status",
        lambda route: route.fulfill(status=503, json=unavailable_body),
    )
    page.wait_for_selector("#status-error:has-text('Control unavailable')")
    assert page.text_content("#state") == "unavailable"
    page.screenshot(path=str(ARTIFACTS / "dashboard-control-unavailable.png"), full_page=True)
    page.unroute("**/status")
    page.wait_for_selector("#status-error", state="hidden")
    assert page.text_content("#state") == "accepting"
    page.close()
