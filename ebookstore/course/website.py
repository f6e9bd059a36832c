"""The course as a website: `make site` builds a static HTML edition into site/.

    python -m ebookstore.course.website [--jobs N] [--site DIR] [--no-execute]

Three steps:
1. Execute every notebook in solutions mode (nbclient, as nbmake does in `make test`), each in a process
   of its own with its own free ports, two at once, in a throwaway state folder; afterwards no process
   of the run may be left (found by state folder and run tag), also after Ctrl-C or SIGTERM.
2. Lay out the pages in build/site-src, as in the repository: README, checklist, the executed notebooks,
   a page per exercise stub, the tutor's guide (solutions/*.md — never solutions/*.py). Relative links
   are rewritten to the pages they mean: notebooks' HTML is not rewritten by MkDocs, so their links go to
   the final `.html`; a mention of an exercise file in a notebook becomes a link to its page.
3. MkDocs with Material and mkdocs-jupyter renders them (mkdocs.yml at the project root), with the
   navigation in course order. This module is also MkDocs' hook file (`hooks:` in mkdocs.yml) for two
   things the tools get wrong here: see on_page_content and on_post_page.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]  # the project (this file is also loaded by path, as MkDocs' hook)
SOURCE_DIR = ROOT / "build" / "site-src"
SITE_DIR = ROOT / "site"
CELL_TIMEOUT = 60  # s per cell, as `make test` gives nbmake
NOTEBOOK_TIMEOUT = 300  # s for a whole notebook (the slowest takes about 15 s on an idle machine)

# Markdown links: [text](target "title") and reference definitions [id]: target
INLINE_LINK = re.compile(r"(\]\()(<[^>]+>|[^)\s]+)((?:\s+\"[^\"]*\")?\))")
REFERENCE_LINK = re.compile(r"^(\s*\[[^\]]+\]:\s+)(\S+)", re.M)
CODE_SPAN_PATH = re.compile(r"(?<![\[`])`((?:\.\./)?exercises/ex\d\d_\w+\.py)`(?![\]`])")


# ---------------------------------------------------------------------------------------------------------
# 1. executing the notebooks

def notebooks() -> list[Path]:
    """The course's notebooks, in course order."""
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def execute_all(paths: list[Path], out_dir: Path, jobs: int) -> dict[str, float]:
    """Execute `paths` in solutions mode into `out_dir` (`jobs` at once); {notebook: seconds}.

    Every kernel inherits a throwaway state folder and free ports; each notebook's own clean-up cell
    stops its processes. Whatever the run left (a notebook failed before its clean-up cell) is stopped
    here, found by state folder and run tag, and the build fails saying so.
    """
    from ebookstore.runtime import processes

    home = tempfile.mkdtemp(prefix="ebookstore-site-")
    tag_prefix = f"site{os.getpid()}"
    saved = dict(os.environ)
    os.environ.update({  # inherited by the kernels, as conftest.py sets them up for `make test`
        "EBOOKSTORE_HOME": home, "EBOOKSTORE_SOLUTIONS": "1", "EBOOKSTORE_TEST_TAG_PREFIX": tag_prefix,
    })  # and ports: execute_one picks free ones for each notebook
    os.environ.pop("REDIS_URL", None)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings, failures = {}, []
    try:
        failed = execute_batch(paths, out_dir, jobs, timings)
        # The demos and checks wait for real workers and timers: on a busy machine, with another
        # notebook beside it, one may miss its deadline. Alone, it gets the machine to itself.
        for path in failed:
            last = (failed[path].strip().splitlines() or ["no output"])[-1]
            print(f"  {path.name} failed ({last}): running it again, alone", flush=True)
            again = execute_batch([path], out_dir, 1, timings)
            if again:
                failures.append(f"{path.name} (executed as far as it got: {out_dir / path.name}):\n"
                                f"{again[path][-1500:]}")
    finally:
        left = run_processes(home, tag_prefix)
        if left:
            rows = processes.format_rows(processes.ps_rows(left))
            from ebookstore.runtime.stack import stop_redis_last
            stop_redis_last(left, timeout=3)
            note = f"{len(left)} process(es) started by the build were still running (now stopped):\n{rows}"
            print(f"site: {note}", flush=True)  # also when the build was interrupted
            failures.append(note)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)
    if failures:
        raise SystemExit("site: executing the notebooks failed:\n" + "\n".join(failures))
    return timings


def execute_batch(paths: list[Path], out_dir: Path, jobs: int, timings: dict) -> dict[Path, str]:
    """Execute `paths`, `jobs` at once, each in a process of its own; {path: what went wrong} for failures.

    Interrupted (Ctrl-C, or SIGTERM, see main), it stops its processes before it returns: the caller
    then stops what their notebooks had started.
    """
    pending, running, failed = list(paths), {}, {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                path = pending.pop(0)
                log = open(out_dir / f"{path.stem}.log", "w")
                command = [sys.executable, "-m", "ebookstore.course.website", "--execute-one", str(path),
                           str(out_dir / path.name)]
                running[subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)] = (path, time.monotonic(), log)
            for proc, (path, started, log) in list(running.items()):
                elapsed = time.monotonic() - started
                if proc.poll() is None and elapsed > NOTEBOOK_TIMEOUT:
                    proc.terminate()
                    proc.wait(timeout=10)
                if proc.poll() is None:
                    continue
                del running[proc]
                log.close()
                if proc.returncode == 0:
                    timings[path.stem] = elapsed
                    print(f"  executed {path.name} in {elapsed:.1f} s", flush=True)
                else:
                    output = re.sub(r"\x1b\[[0-9;]*m", "", Path(log.name).read_text())  # no terminal colours
                    failed[path] = output if elapsed <= NOTEBOOK_TIMEOUT else f"over {NOTEBOOK_TIMEOUT} s: stopped"
            time.sleep(0.2)
    finally:
        for proc, (path, started, log) in running.items():
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            log.close()
    return failed


def execute_one(path: Path, out: Path) -> float:
    """Execute the notebook at `path` (cells run in notebooks/, as in JupyterLab) and write it to `out`."""
    import nbformat
    from nbclient import NotebookClient

    from ebookstore.runtime import processes

    # Ports of its own: notebooks started at the same moment would otherwise both find the same port free.
    os.environ.update({f"EBOOKSTORE_{name}_PORT": str(processes.free_port()) for name in ("REDIS", "WEB", "SMTP")})
    started = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    try:
        NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:  # a failed notebook too, with the outputs it got: what went wrong is in there
        nbformat.write(nb, out)
    return time.perf_counter() - started


def run_processes(home: str, tag_prefix: str) -> list:
    """The live processes started by a build: by state folder (kernels, notebooks' stacks) or run tag (checks)."""
    from ebookstore.runtime import processes

    me, found = os.getpid(), []
    for proc in processes.psutil.process_iter():
        env = processes.environ(proc)
        if proc.pid != me and (env.get("EBOOKSTORE_HOME", "").startswith(home)
                               or env.get(processes.RUN_TAG, "").startswith(tag_prefix)):
            found.append(proc)
    return found


# ---------------------------------------------------------------------------------------------------------
# 2. the pages

def published(repo_path: str) -> str | None:
    """The page or file of the site that stands for `repo_path` (docs-relative), or None if it is not published.

    The solutions' code never is; their Markdown (the tutor's guide) is. An exercise stub has a page.
    """
    path = PurePosixPath(repo_path)
    if not (ROOT / path).is_file():
        return None
    if path.parts[0] == "solutions":
        return str(path) if path.suffix == ".md" else None
    if path.parts[0] == "exercises" and path.suffix == ".py":
        return str(path.with_suffix(".md")) if path.name.startswith("ex") else str(path)
    return str(path)


def page_url(docs_path: str) -> str:
    """The URL (relative to the site's root) MkDocs gives the page `docs_path` (use_directory_urls: false)."""
    path = PurePosixPath(docs_path)
    if path.suffix in (".md", ".ipynb"):
        return str(path.with_name("index.html") if path.stem in ("README", "index") else path.with_suffix(".html"))
    return str(path)


def relative(target: str, start: str) -> str:
    return os.path.relpath(target, PurePosixPath(start).parent or ".").replace(os.sep, "/")


def rewrite_links(text: str, source: str, final_urls: bool, extra: set[str]) -> str:
    """`text` (Markdown of the repository file `source`) with its relative links pointing at the site's pages.

    final_urls: link to the final .html (for notebooks: nbconvert renders their Markdown, MkDocs does not
    touch it); otherwise to the docs source, which MkDocs turns into the page's URL and checks.
    A repository file that is linked but is no page (a Procfile, say) is copied into the site: it is
    added to `extra`. A link to something not published (solutions' code, a folder, a missing file) keeps
    its text and loses the link, and the build says so.
    """
    def target_of(link: str) -> str | None:
        bare = link.strip("<>")
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", bare):
            return None  # absolute URL, fragment or site-absolute: left alone
        path, _, fragment = bare.partition("#")
        repo_path = os.path.normpath(os.path.join(str(PurePosixPath(source).parent), path)).replace(os.sep, "/")
        page = published(repo_path)
        if page is None:
            return ""
        if page == repo_path and not page.endswith((".md", ".ipynb")):
            extra.add(page)
        url = page_url(page) if final_urls else page
        return relative(url if final_urls else page, page_url(source) if final_urls else source) + (
            f"#{fragment}" if fragment else "")

    unlinked = []

    def inline(match: re.Match) -> str:
        new = target_of(match.group(2))
        if new is None:
            return match.group(0)
        if new == "":
            unlinked.append(match.group(2))
            return "](#" + ")"  # replaced below: the text stays, the link goes
        return match.group(1) + new + match.group(3)

    text = INLINE_LINK.sub(inline, text)
    text = re.sub(r"\[([^\]]*)\]\(#\)", r"\1", text)

    def reference(match: re.Match) -> str:
        new = target_of(match.group(2))
        return match.group(0) if not new else match.group(1) + new

    text = REFERENCE_LINK.sub(reference, text)
    for link in unlinked:
        print(f"  note: {source} links to {link}, which the site does not publish: shown as text", flush=True)
    return text


def link_exercise_mentions(text: str, source: str) -> str:
    """A notebook's mention of an exercise file (`exercises/ex04_….py`) as a link to that exercise's page."""
    def link(match: re.Match) -> str:
        repo_path = os.path.normpath(os.path.join(str(PurePosixPath(source).parent), match.group(1)))
        repo_path = repo_path.replace(os.sep, "/")
        if not repo_path.startswith("exercises/"):
            repo_path = match.group(1).lstrip("./")
        page = published(repo_path)
        if page is None:
            return match.group(0)
        return f"[{match.group(0)}]({relative(page_url(page), page_url(source))})"

    return CODE_SPAN_PATH.sub(link, text)


def exercise_page(stub: Path) -> str:
    """The page of an exercise stub: what it is, where it is graded, its code."""
    from ebookstore.course import grading

    number = stub.stem[2:4]
    notebook = next((p for p in notebooks() if p.name.startswith(number)), None)
    code = stub.read_text()
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", code)), default=0))
    docstring = re.match(r'\s*(?:"""|\'\'\')\s*(.*)', code)
    title = docstring.group(1).strip().rstrip(".") if docstring else ""
    if not title.lower().startswith("exercise"):
        title = f"Exercise {number}: {title or exercise_name(stub)}"
    lines = [f"# {title}", ""]
    lines.append(f"The file you edit: `exercises/{stub.name}` ([download]({stub.name})). "
                 "Each function's docstring is its contract; the bodies are yours to write.")
    if notebook is not None:
        lines.append(f"The notebook [{notebook.stem}](../notebooks/{notebook.name}) teaches it; its check cell "
                     f'`check("ex{number}")`, or `ebookstore check ex{number}` in a terminal, grades it.')
    if f"ex{number}" not in grading.EXERCISES:
        lines.append("(This exercise is not graded.)")
    lines += ["", f"{fence}python", code.rstrip("\n"), fence, ""]
    return "\n".join(lines)


def exercise_name(stub: Path) -> str:
    """ex04_async_purchase_notifications.py → "ex04 · async purchase notifications" (the navigation's title)."""
    return f"{stub.stem[:4]} · {stub.stem[5:].replace('_', ' ')}"


def lay_out_pages(executed: Path, dest: Path) -> list:
    """Write every page into `dest` and return MkDocs' nav for them, in course order."""
    import nbformat

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "notebooks").mkdir(parents=True)
    extra: set[str] = set()

    def markdown_page(repo_path: str) -> str:
        text = rewrite_links((ROOT / repo_path).read_text(), repo_path, final_urls=False, extra=extra)
        (dest / repo_path).parent.mkdir(parents=True, exist_ok=True)
        (dest / repo_path).write_text(text)
        return repo_path

    nav_notebooks = []
    for path in notebooks():
        repo_path = f"notebooks/{path.name}"
        nb = nbformat.read(executed / path.name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                text = rewrite_links(cell.source, repo_path, final_urls=True, extra=extra)
                cell.source = link_exercise_mentions(text, repo_path)
        nbformat.write(nb, dest / repo_path)
        nav_notebooks.append(repo_path)

    nav_exercises = []
    for stub in sorted((ROOT / "exercises").glob("ex[0-9][0-9]_*.py")):
        (dest / "exercises").mkdir(exist_ok=True)
        shutil.copy2(stub, dest / "exercises" / stub.name)
        (dest / "exercises" / f"{stub.stem}.md").write_text(exercise_page(stub))
        nav_exercises.append({exercise_name(stub): f"exercises/{stub.stem}.md"})

    home = markdown_page("README.md")
    checklist = markdown_page("checklist.md")
    guide = [markdown_page(str(p.relative_to(ROOT))) for p in
             sorted((ROOT / "solutions").rglob("*.md"), key=lambda p: (p.name != "README.md", str(p)))]
    for repo_path in sorted(extra):  # linked repository files that are no page: served as they are
        (dest / repo_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / repo_path, dest / repo_path)

    nav = [{"Home": home}, {"Notebooks": nav_notebooks}, {"Exercises": nav_exercises}, {"Checklist": checklist}]
    if guide:
        nav.append({"Tutor's guide": guide})
    return nav


# ---------------------------------------------------------------------------------------------------------
# 3. rendering

def render(docs: Path, site: Path, nav: list) -> None:
    """MkDocs builds `site` from `docs` with mkdocs.yml (theme, plugins) and `nav`."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    handler = logging.StreamHandler(sys.stdout)  # what `mkdocs build` would print: its warnings
    handler.setFormatter(logging.Formatter("  mkdocs %(levelname)s %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger("mkdocs").addHandler(handler)
    config = load_config(str(ROOT / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(site), nav=nav)
    build(config)


def on_page_content(html: str, page, config, files) -> str:
    """MkDocs hook: a notebook's table of contents links to its headings' real ids.

    mkdocs-jupyter makes the table's anchors with Python-Markdown, which drops code from a heading
    ("The trap: `lsof -ti` lists clients" → #the-trap-lists-clients); nbconvert, which renders the
    headings, keeps it. Both list the same headings in the same order.
    """
    if not page.file.src_path.endswith(".ipynb"):
        return html
    ids = re.findall(r'<h[1-6][^>]*\bid="([^"]+)"', html)
    items, stack = [], list(reversed(list(page.toc)))
    while stack:
        item = stack.pop()
        items.append(item)
        stack.extend(reversed(list(item.children)))
    if len(items) == len(ids):
        for item, heading_id in zip(items, ids):
            item.id = heading_id
    return html


def on_post_page(output: str, page, config) -> str:
    """MkDocs hook: drop nbconvert's MathJax <script> from notebook pages.

    mkdocs-jupyter always loads MathJax from a CDN, which a site that must work offline can't do; the
    notebooks have no formulas. (The browser test fails on any request that leaves the site.)
    """
    return re.sub(r'<script src="https?://[^"]*mathjax[^"]*">\s*</script>', "", output, flags=re.I)


def build(site: Path = SITE_DIR, jobs: int = 2, execute: bool = True) -> dict:
    """Execute, lay out and render the whole site into `site`; returns timings in seconds.

    execute=False renders the notebooks as the last build executed them (build/site-executed).
    """
    started = time.perf_counter()
    executed, timings = ROOT / "build" / "site-executed", {}
    if execute:
        if executed.exists():
            shutil.rmtree(executed)
        print(f"[site 1/3] executing {len(notebooks())} notebooks in solutions mode, {jobs} at once", flush=True)
        timings = execute_all(notebooks(), executed, jobs)
    else:
        missing = [p.name for p in notebooks() if not (executed / p.name).exists()]
        if missing:
            raise SystemExit(f"site: --no-execute, but {executed} lacks {', '.join(missing)}: build once without it")
        print(f"[site 1/3] not executing: the notebooks as executed in {executed}", flush=True)
    executing = time.perf_counter() - started
    print("[site 2/3] laying out the pages in build/site-src", flush=True)
    nav = lay_out_pages(executed, SOURCE_DIR)
    print(f"[site 3/3] rendering with MkDocs into {site}", flush=True)
    rendered = time.perf_counter()
    render(SOURCE_DIR, site, nav)
    total = time.perf_counter() - started
    print(f"site: built {site} in {total:.0f} s (notebooks {executing:.0f} s, rendering "
          f"{time.perf_counter() - rendered:.0f} s). Serve it: python -m http.server -d {os.path.relpath(site)}")
    return {"notebooks": timings, "executing": executing, "total": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=SITE_DIR, help="where to write the site (default: site/)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("EBOOKSTORE_SITE_JOBS", 2)),
                        help="notebooks executed at once (default 2, or EBOOKSTORE_SITE_JOBS): the demos and "
                             "checks wait for real workers, and more than two at once on two cores slows them")
    parser.add_argument("--no-execute", dest="execute", action="store_false",
                        help="render the notebooks as the last build executed them (quick, to work on the pages)")
    parser.add_argument("--execute-one", nargs=2, type=Path, metavar=("NOTEBOOK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute_one:  # one notebook, in a process of its own (see execute_batch)
        execute_one(*args.execute_one)
        return 0
    signal.signal(signal.SIGTERM, _stop)  # `kill PID` stops a build as Ctrl-C does: its clean-up runs
    try:
        build(args.site.resolve(), args.jobs, args.execute)
    except KeyboardInterrupt:
        print("site: interrupted; the notebooks' processes are stopped, site/ is as it was", file=sys.stderr)
        return 130
    return 0


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
