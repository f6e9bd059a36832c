"""The course as a website (`make site`): opened page by page in headless Chromium.

Every page renders without a console error and asks nothing of another host (the site works offline);
each notebook page shows all its outputs and plots; every local link (and #anchor) resolves; the
navigation has the notebooks in course order; search finds a notebook; no page carries solution code.

Runs with `make site-test` (which builds the site first), or when EBOOKSTORE_SITE_TEST=1 (it reads
EBOOKSTORE_SITE_DIR, default site/, and builds the site there if it is not built). `make test` skips it.
Needs Chromium: `apt-get install -y chromium`.
"""
import html
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ebookstore.config import PROJECT_ROOT
from ebookstore.runtime import processes

pytestmark = [
    pytest.mark.skipif(os.environ.get("EBOOKSTORE_SITE_TEST") != "1",
                       reason="the site's browser test runs with `make site-test` (EBOOKSTORE_SITE_TEST=1)"),
    pytest.mark.timeout(600),  # building the site executes every notebook
]

SITE = Path(os.environ.get("EBOOKSTORE_SITE_DIR", PROJECT_ROOT / "site")).resolve()

# Gathered in each page once it has loaded.
FACTS = """(() => {
  const cells = [...document.querySelectorAll('.jp-CodeCell')].filter(c => !c.parentElement.closest('.jp-CodeCell'));
  const outputs = cells.filter(c => c.querySelector('.jp-OutputArea-output'));
  const images = [...document.querySelectorAll('.jp-OutputArea-output img')];
  return {
    title: document.title,
    text: (document.querySelector('.md-content') || document.body).innerText.length,
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    nav: [...document.querySelectorAll('.md-nav--primary a.md-nav__link[href]')].map(a => a.href),
    cells_with_output: outputs.length,
    images: images.length,
    images_shown: images.filter(i => i.complete && i.naturalWidth > 0).length,
  };
})()"""


@pytest.fixture(scope="module")
def site():
    if not (SITE / "index.html").exists():
        from ebookstore.course import website
        website.build(SITE)
    return SITE


@pytest.fixture(scope="module")
def server(site):
    """The site over http on 127.0.0.1, as `python -m http.server -d site` serves it."""
    port = processes.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "-d", str(site), "-b", "127.0.0.1", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not processes.port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def visits(site, server):
    """Every HTML page of the site, opened in Chromium: {path: Visit}. Chromium is stopped afterwards."""
    from tests.browser import Browser

    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html"))
    with Browser() as browser:
        found = {page: browser.open(server + page, FACTS) for page in pages}
        search = search_results(browser, server)
        leftover = browser
    assert leftover.processes() == [], "Chromium is still running after the test closed it"
    found["(search)"] = search
    return found


def search_results(browser, server) -> list[str]:
    """What the site's search box lists for a word that only notebook 07 teaches in its title."""
    browser.open(server + "index.html")
    browser.evaluate("""(() => { const input = document.querySelector('input.md-search__input');
                                 input.focus(); input.value = 'SIGKILL';
                                 input.dispatchEvent(new Event('input', {bubbles: true}));
                                 input.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true, key: 'L'})); })()""")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        hits = browser.evaluate("[...document.querySelectorAll('.md-search-result__item a')].map(a => a.href)")
        if hits:
            return hits
        time.sleep(0.2)
    return []


def notebook_pages(site):
    return sorted(site.glob("notebooks/[0-9][0-9]_*.html"))


def test_every_notebook_exercise_and_document_has_a_page(site):
    stems = [p.stem for p in notebook_pages(site)]
    assert stems == [p.stem for p in sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    exercises = sorted(p.stem for p in site.glob("exercises/ex[0-9][0-9]_*.html"))
    assert exercises == sorted(p.stem for p in (PROJECT_ROOT / "exercises").glob("ex[0-9][0-9]_*.py"))
    assert (site / "index.html").exists() and (site / "checklist.html").exists()
    assert (site / "solutions" / "index.html").exists(), "the tutor's guide"


def test_every_page_renders_without_console_errors(visits):
    pages = {page: v for page, v in visits.items() if page != "(search)"}
    assert len(pages) >= 25
    problems = {page: v.errors for page, v in pages.items() if v.errors}
    assert problems == {}
    empty = [page for page, v in pages.items() if not v.facts["title"] or v.facts["text"] < 100 and page != "404.html"]
    assert empty == []


def test_no_page_asks_another_host_for_anything(visits):
    """Fonts, scripts, styles all come from the site: it works offline."""
    outside = {page: v.outside_requests for page, v in visits.items() if page != "(search)" and v.outside_requests}
    assert outside == {}


def test_each_notebook_page_shows_all_its_outputs_and_plots(site, visits):
    images_in_all = 0
    for page in notebook_pages(site):
        executed = json.loads(page.with_suffix(".ipynb").read_text())  # the executed notebook the page offers
        code = [c for c in executed["cells"] if c["cell_type"] == "code"]
        with_output = sum(1 for c in code if c.get("outputs"))
        images = sum(1 for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        facts = visits[f"notebooks/{page.name}"].facts
        assert with_output >= len(code) // 3, f"{page.name}: was it executed? only {with_output} cells have output"
        assert facts["cells_with_output"] == with_output, page.name
        assert facts["images"] == images and facts["images_shown"] == images, f"{page.name}: plots shown"
        images_in_all += images
    assert images_in_all >= 4, "the latency, execution-order and retry plots"


def test_every_local_link_and_anchor_resolves(server, visits):
    ids = {v.url.split("#")[0]: set(v.facts["ids"]) for page, v in visits.items() if page != "(search)"}
    broken, checked = [], {}
    for page, visit in visits.items():
        if page == "(search)":
            continue
        for link in visit.facts["links"]:
            if not link.startswith(server):
                continue
            target, _, anchor = link.partition("#")
            if target not in checked:
                try:
                    with urllib.request.urlopen(target, timeout=10) as answer:
                        checked[target] = answer.status
                except urllib.error.HTTPError as error:
                    checked[target] = error.code
            if checked[target] != 200:
                broken.append(f"{page} -> {link} ({checked[target]})")
            elif anchor and target in ids and anchor not in ids[target]:
                broken.append(f"{page} -> {link} (no #{anchor} there)")
    assert len(checked) >= 30
    assert broken == []


def test_the_navigation_has_the_notebooks_in_course_order(site, visits):
    nav = [link.rsplit("/", 1)[-1] for link in visits["index.html"].facts["nav"]]
    in_nav = [name for name in nav if re.fullmatch(r"\d\d_\w+\.html", name)]
    assert in_nav == [p.name for p in notebook_pages(site)]
    assert any(name.startswith("ex01_") for name in nav) and "checklist.html" in nav


def test_search_finds_the_notebook_that_teaches_it(visits):
    assert any("07_signals_and_killing.html" in hit for hit in visits["(search)"])


def _solution_lines() -> dict[str, set[str]]:
    """Lines only a solution has: in solutions/exNN.py, and in no other file of the project.

    (A solution may hold a line the store has too, ebookstore/queues.toml's say: the notebooks show that.)
    """
    listed = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    names = listed.stdout.split() if listed.returncode == 0 else [  # not a git checkout: the files themselves
        str(p.relative_to(PROJECT_ROOT)) for p in PROJECT_ROOT.rglob("*")
        if not {".venv", "site", "build", ".git"} & set(p.relative_to(PROJECT_ROOT).parts)]
    others = [PROJECT_ROOT / name for name in names if not re.fullmatch(r"solutions/.*\.py|tests/.*", name)]
    published = "\n".join(p.read_text(errors="replace") for p in others if p.is_file())
    lines = {}
    for solution in sorted((PROJECT_ROOT / "solutions").glob("ex[0-9][0-9]_*.py")):
        own = {line.strip() for line in solution.read_text().splitlines()}
        lines[solution.name] = {line for line in own if len(line) >= 30 and not line.startswith("#")
                                and line not in published and json.dumps(line)[1:-1] not in published}
    return lines


def test_no_page_carries_solution_code(site):
    assert not list(site.glob("solutions/*.py")) and not list(site.rglob("ex[0-9][0-9]_*.py.html"))
    solution_lines = _solution_lines()
    assert sum(map(len, solution_lines.values())) >= 50, "solutions/ have lines of their own to look for"
    texts = {str(p.relative_to(site)): _plain(p) for p in site.rglob("*")
             if p.is_file() and p.suffix in (".html", ".json", ".ipynb", ".py", ".md", ".txt", ".xml")}
    found = [f"{page}: {name}: {line}" for name, lines in solution_lines.items() for line in lines
             for page, text in texts.items() if line in text]
    assert found == []


def test_the_solution_finder_finds_a_solution_in_a_highlighted_page(tmp_path):
    name, lines = next((n, ls) for n, ls in _solution_lines().items() if ls)
    line = sorted(lines)[0]
    page = tmp_path / "page.html"
    page.write_text("<pre>" + "".join(f'<span class="n">{html.escape(w)}</span> ' for w in line.split(" ")) + "</pre>")
    assert line in _plain(page).replace("  ", " ")


def _plain(path: Path) -> str:
    """A site file's text as a reader sees it: JSON's strings, HTML without tags and entities."""
    text = path.read_text(errors="replace")
    if path.suffix in (".json", ".ipynb"):
        strings = []

        def walk(value):
            if isinstance(value, str):
                strings.append(value)
            elif isinstance(value, dict):
                list(map(walk, value.values()))
            elif isinstance(value, list):
                list(map(walk, value))

        walk(json.loads(text))
        text = "\n".join(strings)
    if path.suffix in (".html", ".json"):
        text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text)
