"""The dashboard page and its assets, through the Falcon app: served, local only, typed."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import falcon.testing
import pytest

from services.frontend.http.app import create_app
from services.frontend.http.dashboard import CONTENT_SECURITY_POLICY, DASHBOARD_DIR

ROOT = Path(__file__).resolve().parents[4]
ASSETS = ("index.html", "dashboard.js", "dashboard.css")
LABELS = ["", "PERSON", "ORG", "GPE", "NORP", "LOC", "EVENT", "WORK_OF_ART", "LAW"]
LABELS += ["LANGUAGE", "FAC", "PRODUCT"]


class Page(HTMLParser):
    """What the page links to, the ids it defines and the label filter's choices."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.options: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if values.get("id"):
            self.ids.add(values["id"])
        if tag == "option":
            self.options.append(values.get("value") or "")


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_root_serves_the_page_without_a_key(client):
    response = client.simulate_get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == (DASHBOARD_DIR / "index.html").read_text()
    # The browser itself is told to load nothing from elsewhere.
    assert "default-src 'self'" in response.headers["content-security-policy"]
    head = client.simulate_head("/")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


def test_page_links_only_to_assets_it_ships(client):
    page = parse(client.simulate_get("/").text)
    local = [link for link in page.links if not link.startswith("data:")]
    assert sorted(local) == ["static/dashboard.css", "static/dashboard.js"]
    for link in local:
        response = client.simulate_get(urljoin("/", link))
        assert response.status_code == 200, link
        assert response.content == (DASHBOARD_DIR / Path(link).name).read_bytes()


def test_no_asset_names_another_host():
    for name in ASSETS:
        text = (DASHBOARD_DIR / name).read_text()
        assert not re.search(r"https?://", text), name
        # Protocol-relative URLs ("//cdn.example/x.js") in an attribute, string or url().
        assert not re.search(r"""[=("'`]\s*//\w""", text), name
        assert "@import" not in text, name


def test_static_files_have_their_content_types(client):
    js = client.simulate_get("/static/dashboard.js")
    assert js.status_code == 200
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    css = client.simulate_get("/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    html = client.simulate_get("/static/index.html")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert client.simulate_get("/static/missing.js").status_code == 404
    # Nothing outside the folder: not the app's own source.
    assert client.simulate_get("/static/../dashboard.py").status_code == 404
    assert client.simulate_get("/static/%2e%2e/dashboard.py").status_code == 404


def test_script_and_page_agree_on_ids_and_labels():
    page = parse((DASHBOARD_DIR / "index.html").read_text())
    script = (DASHBOARD_DIR / "dashboard.js").read_text()
    used = set(re.findall(r"""\$\("([\w-]+)"\)""", script))
    assert used and used <= page.ids, used - page.ids
    assert page.options == LABELS


def test_assets_are_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    assert "dashboard/*" in package_data["services.frontend.http"]


class BrokenStore:
    """A store whose every read raises: the app answers 500."""

    def publications(self, limit: int = 100):
        raise RuntimeError("the store is gone")


@pytest.mark.parametrize(
    ("method", "path", "html"),
    [
        ("GET", "/", True),
        ("HEAD", "/", True),
        ("GET", "/static/index.html", True),  # the page again, under /static/
        ("GET", "/static/dashboard.js", False),
        ("GET", "/static/dashboard.css", False),
        ("GET", "/static/missing.js", False),  # 404
        ("GET", "/publications", False),
        ("GET", "/publications/Nobody/entities", False),  # 404
        ("POST", "/articles", False),  # 401
        ("DELETE", "/publications", False),  # 405
        ("GET", "/nowhere", False),  # 404
        ("GET", "/metrics", False),
        ("GET", "/openapi.json", False),
        ("OPTIONS", "/articles", False),
    ],
)
def test_every_answer_is_nosniff_and_every_page_has_the_policy(client, method, path, html):
    # Asking for HTML must not turn an error page into one without the headers.
    result = client.simulate_request(method, path, headers={"Accept": "text/html"})
    assert result.headers["x-content-type-options"] == "nosniff", (method, path)
    assert result.headers.get("content-type", "").startswith("text/html") == html
    assert result.headers.get("content-security-policy") == (
        CONTENT_SECURITY_POLICY if html else None
    )


def test_an_unexpected_error_is_nosniff_too(settings, journal, gate, board):
    app = create_app(settings, journal, BrokenStore(), gate, board)  # type: ignore[arg-type]
    result = falcon.testing.TestClient(app).simulate_get("/publications")
    assert result.status_code == 500
    assert result.headers["x-content-type-options"] == "nosniff"
