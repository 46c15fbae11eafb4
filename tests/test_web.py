"""The web chat page, in Debian's Chromium (headless, driven by Playwright; no browser download), against a real
``chatkeep serve``. Screenshots of the main states, at desktop and phone sizes, go to test-artifacts/screenshots.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.async_api import Browser, BrowserContext, Dialog, FilePayload, Page, Route, expect

from chatkeep.api.app import create_app
from chatkeep.settings import Settings
from tests._browser import (
    DESKTOP,
    PHONE,
    SECRET,
    assistant,
    assistant_message,
    last_reply_text,
    send,
    shot,
    stored_thread,
    text_part,
    user_message,
)
from tests._server import Server, free_port, running_server

pytestmark = pytest.mark.browser

# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0"
    "f01f0005000201e221bc330000000049454e44ae426082"
)


async def test_send_see_the_streamed_reply_and_reload(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    await send(page, "hello there")
    await expect(last_reply_text(page)).to_have_text("You said: hello there")
    await expect(page).to_have_url(re.compile(r"/chat/[^/]+$"))
    await shot(page, "desktop-chat")
    await page.reload()
    await expect(page.locator('[data-testid="message"][data-role="user"]')).to_have_text(["hello there"])
    await expect(last_reply_text(page)).to_have_text("You said: hello there")


async def test_opening_the_page_leaves_no_empty_thread_and_shift_enter_adds_a_line(page: Page, web: Server) -> None:
    async with httpx.AsyncClient() as client:
        before = (await client.get(f"{web.url}/api/threads")).json()
        for _ in range(3):
            await page.goto(web.url + "/")
            await expect(page.get_by_test_id("composer")).to_be_visible()
        composer = page.get_by_test_id("composer")
        await composer.fill("line one")
        await composer.press("Shift+Enter")
        await composer.press_sequentially("line two")
        await expect(composer).to_have_value("line one\nline two")
        await expect(page.locator('[data-testid="message"]')).to_have_count(0)
        assert (await client.get(f"{web.url}/api/threads")).json() == before


async def test_a_tool_call_is_shown_with_its_state_input_and_output(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    await send(page, "What is the weather in Paris?")
    tool = page.get_by_test_id("tool")
    await expect(tool).to_have_attribute("data-state", "output-available")
    await expect(tool).to_contain_text("get_weather")
    await expect(last_reply_text(page)).to_contain_text("The weather in Paris is")
    await tool.click()
    await expect(tool).to_contain_text("Paris")
    await expect(tool).to_contain_text("temperatureC")
    await shot(page, "desktop-tool-call")


async def test_reasoning_is_shown_collapsed_and_sources_as_links(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    await send(page, "think about it and give me a source")
    reasoning = page.get_by_test_id("reasoning")
    await expect(reasoning).to_be_visible()
    assert await reasoning.evaluate("el => el.tagName === 'DETAILS' ? !el.open : true")
    link = page.get_by_test_id("source-link")
    await expect(link).to_have_attribute("href", "https://example.com/chatkeep-demo")
    await shot(page, "desktop-reasoning-source")


async def test_stop_midway_keeps_the_partial_reply(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    await send(page, "count to 500")
    await expect(last_reply_text(page)).to_contain_text(" 20 ")
    await page.get_by_test_id("stop").click()
    await expect(page.get_by_test_id("stop")).to_have_count(0)
    kept = await last_reply_text(page).inner_text()
    numbers = kept.split()
    assert numbers == [str(i) for i in range(1, len(numbers) + 1)] and 20 <= len(numbers) < 500
    await asyncio.sleep(0.5)
    await page.reload()
    await expect(last_reply_text(page)).to_have_text(kept)


async def test_a_reload_during_a_reply_resumes_it(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    await send(page, "count to 150")
    await expect(last_reply_text(page)).to_contain_text(" 10 ")
    await expect(page).to_have_url(re.compile(r"/chat/[^/]+$"))
    await page.reload()
    await expect(last_reply_text(page)).to_have_text(" ".join(str(i) for i in range(1, 151)), timeout=20_000)
    await expect(assistant(page)).to_have_count(1)


async def test_regenerate_and_switch_branches(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    await send(page, "hi")
    await expect(last_reply_text(page)).to_have_text("You said: hi")
    await page.get_by_test_id("regenerate").click()
    label = page.get_by_test_id("branch-label")
    await expect(label).to_have_text("2/2")
    await page.get_by_test_id("branch-prev").click()
    await expect(label).to_have_text("1/2")
    await page.reload()
    await expect(page.get_by_test_id("branch-label")).to_have_text("1/2")


async def test_edit_a_user_message_makes_a_branch(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    await send(page, "first version")
    await expect(last_reply_text(page)).to_have_text("You said: first version")
    await page.get_by_test_id("edit").click()
    editor = page.locator('[data-testid="message"][data-role="user"] textarea')
    await editor.fill("second version")
    await page.get_by_test_id("edit-save").click()
    await expect(last_reply_text(page)).to_have_text("You said: second version")
    await expect(page.get_by_test_id("branch-label").first).to_have_text("2/2")


async def test_html_from_a_user_renders_as_text(page: Page, web: Server) -> None:
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)

    page.on("dialog", on_dialog)
    await page.goto(web.url + "/")
    payload = "<img src=x onerror=alert(1)>"
    await send(page, payload)
    await expect(last_reply_text(page)).to_have_text(f"You said: {payload}")
    await expect(page.locator('[data-testid="message"] img[src="x"]')).to_have_count(0)
    await expect(page.locator('[data-testid="message"][data-role="user"]')).to_contain_text(payload)
    assert dialogs == []


async def test_an_image_attachment_is_sent_stored_and_shown(page: Page, web: Server) -> None:
    await page.goto(web.url + "/")
    picture: FilePayload = {"name": "dot.png", "mimeType": "image/png", "buffer": PNG}
    await page.get_by_test_id("attach-input").set_input_files(files=[picture])
    await send(page, "what is in this picture?")
    await expect(last_reply_text(page)).to_have_text("You said: what is in this picture?")
    await page.reload()
    image = page.locator('[data-testid="message"][data-role="user"]').get_by_test_id("attachment-image")
    await expect(image).to_have_count(1)
    assert (await image.get_attribute("src") or "").startswith("data:image/png;base64,")


async def test_an_error_keeps_what_was_typed(page: Page, web: Server) -> None:
    async def fail(route: Route) -> None:
        await route.fulfill(status=503, content_type="application/json", body='{"error":{"code":"x","message":"down"}}')

    await page.goto(web.url + "/")
    await page.route("**/api/chat", fail)
    await send(page, "please keep this text")
    await expect(page.get_by_test_id("error-banner")).to_be_visible()
    await expect(page.get_by_test_id("composer")).to_have_value("please keep this text")
    await shot(page, "desktop-error")
    await page.unroute("**/api/chat", fail)
    await page.get_by_test_id("retry").click()
    await expect(last_reply_text(page)).to_have_text("You said: please keep this text")


async def test_rename_archive_unarchive_and_delete_a_thread(page: Page, web: Server) -> None:
    browser_dialogs: list[str] = []
    page.on("dialog", lambda dialog: browser_dialogs.append(dialog.message))
    await page.goto(web.url + "/")
    await send(page, "a thread to manage")
    await expect(last_reply_text(page)).to_have_text("You said: a thread to manage")
    thread_id = page.url.rsplit("/", 1)[1]
    item = page.locator(f'[data-testid="thread"][data-thread-id="{thread_id}"]')
    await expect(item).to_contain_text("a thread to manage")  # the automatic title
    await item.hover()
    await item.get_by_test_id("thread-rename").click()
    rename = item.locator("input")
    await rename.fill("Renamed thread")
    await rename.press("Enter")
    await expect(item).to_contain_text("Renamed thread")
    await item.hover()
    await item.get_by_test_id("thread-archive").click()
    await expect(page.get_by_test_id("thread-unarchive")).to_have_count(1)
    await item.hover()
    await page.get_by_test_id("thread-unarchive").click()
    await expect(item.get_by_test_id("thread-archive")).to_have_count(1)
    await item.hover()
    await item.get_by_test_id("thread-delete").click()
    await page.get_by_test_id("confirm-accept").click()
    await expect(page.locator(f'[data-thread-id="{thread_id}"]')).to_have_count(0)
    assert browser_dialogs == []
    await page.goto(web.url + f"/chat/{thread_id}")
    await expect(page.get_by_text("does not exist")).to_be_visible()


async def test_phone_layout(browser: Browser, web: Server) -> None:
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()
    try:
        await page.goto(web.url + "/")
        await shot(page, "phone-empty")
        await send(page, "weather in Oslo, and think first")
        await expect(page.get_by_test_id("tool")).to_have_attribute("data-state", "output-available")
        await expect(last_reply_text(page)).to_contain_text("The weather in Oslo is")
        await shot(page, "phone-chat")
        await page.get_by_test_id("menu").click()
        await expect(page.get_by_test_id("new-chat")).to_be_visible()
        await expect(page.get_by_test_id("new-chat")).to_be_in_viewport(ratio=1)
        await page.wait_for_timeout(400)  # let the drawer's slide-in finish before the picture
        await shot(page, "phone-drawer")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width}px)"
    finally:
        await context.close()


async def test_auth_token_and_a_clear_401(browser: Browser, tmp_path: Path) -> None:
    with running_server(
        f"sqlite:///{tmp_path / 'auth.db'}", env={"CHATKEEP_JWT_SECRET": SECRET, "CHATKEEP_DEMO_DELAY_MS": "5"}
    ) as server:
        context = await browser.new_context(viewport=DESKTOP)
        page = await context.new_page()
        try:
            await page.goto(server.url + "/")
            await expect(page.get_by_test_id("auth-error")).to_be_visible()
            await shot(page, "desktop-auth-error")
            token = jwt.encode({"sub": "browser-user", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
            await page.goto(server.url + f"/?token={token}")
            await send(page, "hello with a token")
            await expect(last_reply_text(page)).to_have_text("You said: hello with a token")
            assert "token=" not in page.url
        finally:
            await context.close()


def test_the_committed_bundle_is_a_build_of_the_sources(tmp_path: Path) -> None:
    """src/chatkeep/web/dist is checked in (running chatkeep needs no Node): it must be exactly what building web/
    gives, so a change to the page cannot ship with a stale bundle."""
    import filecmp
    import subprocess

    web_dir = Path(__file__).resolve().parent.parent / "web"
    dist = web_dir.parent / "src" / "chatkeep" / "web" / "dist"
    if not (web_dir / "node_modules").is_dir():
        pytest.fail("web/node_modules is missing: run 'npm ci --prefix web' (scripts/test does it)")
    out = tmp_path / "dist"
    result = subprocess.run(
        ["npx", "vite", "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "error"],
        cwd=web_dir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    comparison = filecmp.dircmp(out, dist)
    assert not comparison.left_only and not comparison.right_only, (comparison.left_only, comparison.right_only)
    assert comparison.diff_files == [], comparison.diff_files
    assets = filecmp.dircmp(out / "assets", dist / "assets")
    assert not assets.left_only and not assets.right_only and not assets.diff_files, (
        "rebuild the page: npm run build --prefix web, and commit src/chatkeep/web/dist"
    )


# ---- what the page may contact, and the headers that confine it (issue #12, point 6)


@contextmanager
def image_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on another origin that answers every GET with a PNG and records the paths it was asked."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def image_part(url: str) -> dict[str, Any]:
    return {"type": "file", "mediaType": "image/png", "url": url, "filename": url.rsplit("/", 1)[-1]}


async def test_images_from_other_sites_load_only_on_a_click(page: Page, web: Server) -> None:
    with image_server() as (origin, hits):
        thread_id = await stored_thread(
            web,
            user_message(
                image_part(f"{origin}/file-1.png"),
                text_part(
                    f"look ![mine]({origin}/user.png?q=secret) and [![linked]({origin}/linked.png)](https://example.com/)"
                ),
            ),
            assistant_message(
                text_part(f"Sure. ![chart]({origin}/leak.png?conversation=the+whole+chat)"),
                image_part(f"{origin}/file-2.png"),
                image_part(
                    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP4z8DwHwAFAAH/q842iQAAAABJRU5ErkJggg=="
                ),
            ),
        )
        await page.goto(f"{web.url}/chat/{thread_id}")
        placeholders = page.get_by_test_id("remote-image")
        await expect(placeholders).to_have_count(5)
        await expect(placeholders.get_by_test_id("remote-image-host")).to_have_text(
            [origin.removeprefix("http://")] * 5
        )
        await expect(page.get_by_test_id("attachment-image")).to_have_count(1)  # the data: URL shows at once
        await page.wait_for_load_state("networkidle")
        assert hits == []
        await shot(page, "desktop-remote-images")
        link = page.locator('[data-testid="message"] a[href="https://example.com/"]')
        assert set((await link.get_attribute("rel") or "").split()) >= {"noopener", "noreferrer"}

        await page.locator('[data-testid="remote-image"][title*="leak.png"]').get_by_test_id("load-image").click()
        await expect(placeholders).to_have_count(4)
        await page.wait_for_function(
            "() => [...document.images].some((image) => image.src.includes('leak.png') && image.complete)"
        )
        await page.wait_for_load_state("networkidle")
        assert hits == ["/leak.png?conversation=the+whole+chat"]


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = [d.split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


async def test_the_page_is_sent_with_a_content_security_policy_and_no_sniffing(web: Server) -> None:
    async with httpx.AsyncClient(base_url=web.url) as client:
        for path in ("/", "/chat/some-thread"):
            response = await client.get(path)
            assert response.status_code == 200
            csp = csp_directives(response.headers["content-security-policy"])
            assert csp["default-src"] == ["'self'"]
            assert csp["script-src"] == ["'self'"]
            assert csp["connect-src"] == ["'self'"]
            assert csp["frame-ancestors"] == ["'none'"]
            assert csp["base-uri"] == ["'none'"]
            assert csp["object-src"] == ["'none'"]
            assert csp["form-action"] == ["'self'"]
            assert {"'self'", "data:", "blob:"} <= set(csp["img-src"])  # and http(s): for a click, by default
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"
            # script-src 'self' holds only if the page has no inline script.
            assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", response.text) == []
        asset = re.search(r'src="(/assets/[^"]+\.js)"', response.text)
        assert asset is not None
        assert (await client.get(asset.group(1))).headers["x-content-type-options"] == "nosniff"
        assert (await client.get("/api/threads")).headers["x-content-type-options"] == "nosniff"


async def test_remote_images_never_keeps_them_out_of_the_policy_too(tmp_path: Path) -> None:
    settings = Settings(web_remote_images="never", database_url=f"sqlite:///{tmp_path / 'never.db'}")
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        response = await client.get("/")
    assert csp_directives(response.headers["content-security-policy"])["img-src"] == ["'self'", "data:", "blob:"]
    assert '<meta name="chatkeep-remote-images" content="never" />' in response.text


RECORD_PROBLEMS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
"""


async def test_normal_use_breaks_no_rule_of_the_policy(context: BrowserContext, web: Server) -> None:
    await context.add_init_script(RECORD_PROBLEMS)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(web.url + "/")
    picture: FilePayload = {"name": "dot.png", "mimeType": "image/png", "buffer": PNG}
    await page.get_by_test_id("attach-input").set_input_files(files=[picture])
    await expect(page.get_by_test_id("pending-file")).to_have_count(1)  # a blob: preview
    await send(page, "some code:\n\n```python\nprint(1)\n```\n\n| centred |\n|:-:|\n| cell |")
    await expect(last_reply_text(page).locator("pre")).to_have_text("print(1)")
    # A table column's alignment is a style React sets through the DOM, which style-src 'self' allows.
    assert await last_reply_text(page).locator("td").evaluate("(cell) => getComputedStyle(cell).textAlign") == "center"
    await last_reply_text(page).get_by_test_id("copy-code").click()
    await expect(last_reply_text(page).get_by_test_id("copy-code")).to_contain_text("Copied")
    await page.reload()
    await expect(page.get_by_test_id("attachment-image")).to_have_count(1)  # a data: URL
    await expect(last_reply_text(page).locator("pre")).to_have_text("print(1)")
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate("window.__violations") == []
    assert errors == []


# ---- long Markdown stays interactive (issue #12, point 7)

# The longest task the page ran, from when it started (a task that blocks input is a "longtask", over 50 ms).
RECORD_LONGEST_TASK = """
window.__longestTask = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longestTask = Math.max(window.__longestTask, entry.duration);
}).observe({ type: "longtask", buffered: true });
"""
# Today's page blocked for 34 s on 1.5 M characters; a chunk of Markdown takes tens of milliseconds. The bound is
# far above the second and far below the first, so a slow, shared machine does not fail it.
LONGEST_TASK_MS = 3_000


def markdownish(size: int) -> str:
    """Markdown of about `size` characters, with every kind of block react-markdown and remark-gfm parse."""
    blocks: list[str] = []
    total = 0
    while total < size:
        n = len(blocks) + 1
        block = (
            f"## Section {n}\n\nParagraph {n} with **bold**, *emphasis*, `code`, a [link](https://example.com/{n}) "
            f"and ~~strike~~.\n\n- item {n}\n- item **two**\n  - nested\n\n1. first\n2. second\n\n"
            f"```python\nx = {n}\nprint(x)\n```\n\n| a | b |\n|---|---|\n| {n} | **x** |\n\n> quote {n}\n\n"
        )
        blocks.append(block)
        total += len(block)
    return "".join(blocks)[:size]


async def test_a_four_million_character_message_opens_and_the_page_stays_responsive(
    context: BrowserContext, web: Server
) -> None:
    text = markdownish(3_900_000)
    last_section = text.rsplit("## Section ", 1)[1].split("\n", 1)[0]
    thread_id = await stored_thread(
        web, user_message(text_part("a long one please")), assistant_message(text_part(text))
    )
    await context.add_init_script(RECORD_LONGEST_TASK)
    page = await context.new_page()
    page.set_default_timeout(30_000)
    await page.goto(f"{web.url}/chat/{thread_id}")
    reply = last_reply_text(page)
    # The end of the reply is on screen, as Markdown; the page takes input; the start renders when scrolled to.
    await expect(reply.get_by_role("heading", name=f"Section {last_section}", exact=True)).to_be_in_viewport()
    composer = page.get_by_test_id("composer")
    await composer.fill("still answering")
    await expect(composer).to_have_value("still answering")
    await reply.evaluate("(element) => element.scrollIntoView()")
    await expect(reply.get_by_role("heading", name="Section 1", exact=True)).to_be_in_viewport()
    await expect(reply.locator("table strong").first).to_have_text("x")
    assert await page.evaluate("window.__longestTask") < LONGEST_TASK_MS


async def test_a_long_streamed_reply_stays_responsive(browser: Browser, tmp_path: Path) -> None:
    # The demo model echoes the prompt word by word: regenerating its reply streams about 3,000 deltas of a
    # 300,000-character Markdown reply.
    blocks = [
        f"## S{n}\n\n**b{n}**\t*e*\t`c`\t[l](https://x.org/{n})\n\n-\tone\n-\t**two**\n\n```\nx={n}\n```\n\n|a|b|\n|-|-|\n|{n}|y|\n\n"
        for n in range(1, 3_000)
    ]
    prompt = "".join(blocks)
    with running_server(f"sqlite:///{tmp_path / 'stream.db'}", env={"CHATKEEP_DEMO_DELAY_MS": "0"}) as server:
        thread_id = await stored_thread(server, user_message(text_part(prompt)), assistant_message(text_part("Hm.")))
        context = await browser.new_context(viewport=DESKTOP)
        await context.add_init_script(RECORD_LONGEST_TASK)
        page = await context.new_page()
        page.set_default_timeout(60_000)
        try:
            await page.goto(f"{server.url}/chat/{thread_id}")
            await page.get_by_test_id("regenerate").click()
            # (Not "the stop button shows": with no delay the reply may be whole before a check could see it.)
            reply = last_reply_text(page)
            await expect(reply.get_by_role("heading", name="S2999", exact=True)).to_be_in_viewport()
            await expect(reply.locator("pre").last).to_have_text("x=2999")
            assert await page.evaluate("window.__longestTask") < LONGEST_TASK_MS
        finally:
            await context.close()


async def test_long_markdown_is_cut_only_between_blocks(browser: Browser, web: Server) -> None:
    # Code blocks with blank lines inside and loose lists, across many chunks; then one code block too long to
    # parse in one go (shown as its source text), then Markdown again.
    sections = [
        f"### Part {n}\n\n```text\nfirst {n}\n\nsecond {n}\n```\n\n{n}. item\n\n{n + 1}. next item\n\n" + "word " * 60
        for n in range(1, 61)
    ]
    huge_code = "```\n" + ("x = 1; " * 30 + "\n\n") * 80 + "```"
    text = "\n\n".join([*sections, huge_code, "**after** the long block"])
    thread_id = await stored_thread(web, user_message(text_part("long")), assistant_message(text_part(text)))
    # A screen tall enough that every chunk is near it, so all of them render.
    context = await browser.new_context(viewport={"width": 1280, "height": 16_000})
    page = await context.new_page()
    try:
        await page.goto(f"{web.url}/chat/{thread_id}")
        reply = last_reply_text(page)
        await expect(reply.locator("strong").last).to_have_text("after")  # the end shows first
        await reply.evaluate("(element) => element.scrollIntoView()")
        await expect(reply.locator("h3")).to_have_count(60)
        await expect(reply.locator("pre")).to_have_text([f"first {n}\n\nsecond {n}" for n in range(1, 61)])
        await expect(reply.locator("ol")).to_have_count(60)
        assert await reply.locator("ol").nth(41).get_attribute("start") == "42"
        sources = reply.get_by_test_id("md-source")
        await expect(sources).to_have_count(2)
        assert "".join(await sources.all_text_contents()) == huge_code + "\n\n"
    finally:
        await context.close()
