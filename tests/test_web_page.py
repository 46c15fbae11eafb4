"""The chat page as a first-time user meets it (issue #13, point 10), in Debian's Chromium against a real
``chatkeep serve`` (fixtures: tests/_browser.py): titles that use their row, row actions that exist only when shown
(one "more" button on a phone), an in-page delete confirmation, rename from the title shown, sign-out, highlighted
code, a way back to the end of a chat, and the demo model's prompts offered in an empty chat."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from playwright.async_api import Browser, BrowserContext, Dialog, Locator, Page, Request, expect

from chatkeep.providers.demo import DemoModel
from tests._browser import (
    DESKTOP,
    PHONE,
    SECRET,
    assistant_message,
    last_reply_text,
    send,
    shot,
    stored_thread,
    text_part,
    user_message,
)
from tests._server import Server, running_server

pytestmark = pytest.mark.browser

LONG_TITLE = "Planning the spring trip to Lisbon, Porto and the Douro valley"


async def titled_thread(server: Server, title: str | None) -> str:
    """A thread with one exchange, titled ``title`` (None: untitled), made through the API."""
    thread_id = await stored_thread(server, user_message(text_part("hello")), assistant_message(text_part("Hi!")))
    if title is not None:
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.patch(f"/api/threads/{thread_id}", json={"title": title})
            assert response.status_code == 200, response.text
    return thread_id


def row(page: Page, thread_id: str) -> Locator:
    return page.locator(f'[data-testid="thread"][data-thread-id="{thread_id}"]')


def no_browser_dialogs(page: Page) -> list[str]:
    """The messages of every alert/confirm/prompt the page opens (each is dismissed): the page must open none."""
    opened: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        opened.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return opened


async def width(locator: Locator) -> float:
    box = await locator.bounding_box()
    assert box is not None
    return box["width"]


async def test_a_long_title_gets_its_row_and_the_actions_exist_only_on_hover_or_focus(page: Page, web: Server) -> None:
    thread_id = await titled_thread(web, LONG_TITLE)
    await page.goto(web.url + "/")
    item = row(page, thread_id)
    title = item.get_by_test_id("thread-title")
    await expect(title).to_have_text(LONG_TITLE)
    await page.mouse.move(900, 400)  # over the chat, not the list
    actions = [item.get_by_test_id(name) for name in ("thread-rename", "thread-archive", "thread-delete")]
    for action in actions:
        await expect(action).to_be_hidden()
    # The title has the row, less the link's padding; no invisible button sits over its end to be clicked.
    assert await width(title) >= await width(item) - 20
    box = await item.bounding_box()
    assert box is not None
    at_the_end = await page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.closest('a, button')?.dataset.testid",
        [box["x"] + box["width"] - 12, box["y"] + box["height"] / 2],
    )
    assert at_the_end == "thread-link"

    await item.hover()
    for action in actions:
        await expect(action).to_be_visible()
    await shot(page, "desktop-row-hover")
    await page.mouse.move(900, 400)
    await expect(actions[0]).to_be_hidden()
    # From the keyboard: the title's link, then its actions.
    await item.get_by_test_id("thread-link").focus()
    await expect(actions[0]).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(actions[0]).to_be_focused()


async def test_on_a_phone_a_row_shows_one_more_button_and_its_actions_on_a_tap(browser: Browser, web: Server) -> None:
    first, second = await titled_thread(web, "First of two"), await titled_thread(web, LONG_TITLE)
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    opened = no_browser_dialogs(page)
    try:
        await page.goto(web.url + "/")
        await page.get_by_test_id("menu").tap()
        rows = page.get_by_test_id("thread")
        await expect(rows.first).to_be_visible()
        count = await rows.count()
        await expect(page.get_by_test_id("thread-more")).to_have_count(count)
        for name in ("thread-rename", "thread-archive", "thread-delete"):
            await expect(page.get_by_test_id(name).locator("visible=true")).to_have_count(0)
        await expect(page.get_by_test_id("thread-more").locator("visible=true")).to_have_count(count)

        more = row(page, second).get_by_test_id("thread-more")
        await more.tap()
        await expect(more).to_have_attribute("aria-expanded", "true")
        for name in ("thread-rename", "thread-archive", "thread-delete"):
            await expect(row(page, second).get_by_test_id(name)).to_be_visible()
        await expect(row(page, first).get_by_test_id("thread-delete")).to_be_hidden()
        await page.wait_for_timeout(300)  # the drawer's slide-in, before the picture
        await shot(page, "phone-row-actions")
        # A tap elsewhere closes them; the delete in them asks in the page.
        await page.get_by_test_id("new-chat").tap()
        await expect(row(page, second).get_by_test_id("thread-delete")).to_be_hidden()
        await page.get_by_test_id("menu").tap()
        await row(page, second).get_by_test_id("thread-more").tap()
        await row(page, second).get_by_test_id("thread-delete").tap()
        await page.get_by_test_id("confirm-accept").tap()
        await expect(row(page, second)).to_have_count(0)
        await expect(row(page, first)).to_have_count(1)
        assert opened == []
    finally:
        await context.close()


async def test_delete_asks_in_the_page_and_escape_or_cancel_keep_the_chat(page: Page, web: Server) -> None:
    opened = no_browser_dialogs(page)
    thread_id = await titled_thread(web, "A chat to delete")
    await page.goto(f"{web.url}/chat/{thread_id}")
    item = row(page, thread_id)
    dialog = page.get_by_test_id("confirm-dialog")

    async def ask() -> None:
        await item.hover()
        await item.get_by_test_id("thread-delete").click()
        await expect(dialog).to_be_visible()

    await ask()
    await expect(page.get_by_role("dialog", name="Delete this chat?")).to_be_visible()
    await expect(dialog).to_contain_text("“A chat to delete” and all its messages will be deleted")
    await expect(dialog).to_contain_text("cannot be undone")
    await expect(page.get_by_test_id("confirm-cancel")).to_be_focused()  # the safe answer is the default
    await shot(page, "desktop-delete-confirmation")
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    await expect(item).to_have_count(1)
    await expect(item.get_by_test_id("thread-delete")).to_be_focused()  # back where the user was

    await ask()
    await page.get_by_test_id("confirm-cancel").click()
    await expect(dialog).to_have_count(0)
    await ask()
    await page.mouse.click(5, 5)  # outside the dialog, on its backdrop
    await expect(dialog).to_have_count(0)
    async with httpx.AsyncClient(base_url=web.url) as client:
        assert (await client.get(f"/api/threads/{thread_id}")).status_code == 200

        await ask()
        await page.get_by_test_id("confirm-accept").click()
        await expect(item).to_have_count(0)
        await expect(page.get_by_test_id("empty-chat")).to_be_visible()  # the open chat was this one
        assert (await client.get(f"/api/threads/{thread_id}")).status_code == 404
    assert opened == []


async def test_renaming_an_untitled_chat_starts_from_the_title_shown(page: Page, web: Server) -> None:
    thread_id = await titled_thread(web, None)
    await page.goto(web.url + "/")
    item = row(page, thread_id)
    await expect(item.get_by_test_id("thread-title")).to_have_text("New chat")

    async def rename() -> Locator:
        await item.hover()
        await item.get_by_test_id("thread-rename").click()
        box = item.get_by_test_id("thread-rename-input")
        await expect(box).to_be_focused()
        return box

    box = await rename()
    await expect(box).to_have_value("New chat")
    assert await box.evaluate("(input) => [input.selectionStart, input.selectionEnd]") == [0, len("New chat")]
    # Kept as it is, the placeholder title is not saved as a title.
    await box.press("Enter")
    await expect(item.get_by_test_id("thread-title")).to_have_text("New chat")
    async with httpx.AsyncClient(base_url=web.url) as client:
        assert (await client.get(f"/api/threads/{thread_id}")).json()["title"] is None

        box = await rename()
        await page.keyboard.type("Trip plans")  # replaces the selected title
        await page.keyboard.press("Enter")
        await expect(item.get_by_test_id("thread-title")).to_have_text("Trip plans")
        assert (await client.get(f"/api/threads/{thread_id}")).json()["title"] == "Trip plans"


async def test_sign_out_forgets_the_token_and_shows_the_sign_in(browser: Browser, web: Server, tmp_path: Path) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    try:
        await page.goto(web.url + "/")  # no token, none needed: nothing to sign out of
        await expect(page.get_by_test_id("composer")).to_be_visible()
        await expect(page.get_by_test_id("sign-out")).to_have_count(0)
        with running_server(
            f"sqlite:///{tmp_path / 'auth.db'}", env={"CHATKEEP_JWT_SECRET": SECRET, "CHATKEEP_DEMO_DELAY_MS": "5"}
        ) as server:
            token = jwt.encode({"sub": "browser-user", "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")
            await page.goto(f"{server.url}/?token={token}")
            await send(page, "hello, signed in")
            await expect(last_reply_text(page)).to_have_text("You said: hello, signed in")
            await page.get_by_test_id("sign-out").click()
            await expect(page.get_by_test_id("auth-error")).to_be_visible()
            assert await page.evaluate("localStorage.getItem('chatkeep.token')") is None
            await expect(page.get_by_test_id("token-forget")).to_have_count(0)  # nothing is kept any more
            await page.reload()
            await expect(page.get_by_test_id("auth-error")).to_be_visible()
    finally:
        await context.close()


RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`);
});
"""

CODE = (
    "Here:\n\n"
    '```python\ndef greet(name):\n    return f"hi {name}"  # a comment\n```\n\n'
    '```html\n<img src=x onerror="window.__ran = 1"><script>window.__ran = 2</script>\n```\n\n'
    "```\nno language named\n```\n\n"
    "```nosuchlanguage\nx = 1\n```\n"
)


async def test_code_is_highlighted_as_text_by_a_highlighter_loaded_when_needed(
    context: BrowserContext, web: Server
) -> None:
    thread_id = await stored_thread(web, user_message(text_part("code please")), assistant_message(text_part(CODE)))
    await context.add_init_script(RECORD_VIOLATIONS)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    opened = no_browser_dialogs(page)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    scripts: list[str] = []

    def on_request(request: Request) -> None:
        if request.resource_type == "script":
            scripts.append(request.url.rsplit("/", 1)[-1])

    page.on("request", on_request)
    await page.goto(web.url + "/")
    await expect(page.get_by_test_id("composer")).to_be_visible()
    await page.wait_for_load_state("networkidle")
    assert not [name for name in scripts if name.startswith("highlight-")]  # no code shown, no highlighter

    await page.goto(f"{web.url}/chat/{thread_id}")
    blocks = last_reply_text(page).locator("pre")
    await expect(blocks).to_have_count(4)
    python, markup, unnamed, unknown = (blocks.nth(n) for n in range(4))
    await expect(python.locator("code.hljs.language-python")).to_have_count(1)
    await expect(python.locator(".hljs-keyword")).to_have_text(["def", "return"])
    await expect(python.locator(".hljs-title")).to_have_text("greet")
    await expect(python.locator(".hljs-comment")).to_have_text("# a comment")
    await expect(python.locator(".hljs-string").first).to_contain_text('f"hi ')
    assert await python.text_content() == 'def greet(name):\n    return f"hi {name}"  # a comment\n'
    # The colours come from the page's own stylesheet: a keyword is not the colour of plain code.
    keyword_colour = await python.locator(".hljs-keyword").first.evaluate("(el) => getComputedStyle(el).color")
    assert keyword_colour != await python.evaluate("(el) => getComputedStyle(el).color")

    # Markup in code is tokens of text: nothing of it becomes an element or runs.
    await expect(markup.locator(".hljs-tag").first).to_be_visible()
    assert await markup.text_content() == '<img src=x onerror="window.__ran = 1"><script>window.__ran = 2</script>\n'
    await expect(page.locator('[data-testid="message"] img, [data-testid="message"] script')).to_have_count(0)
    # An unnamed or unknown language is not guessed at: plain text.
    for block, text in ((unnamed, "no language named\n"), (unknown, "x = 1\n")):
        await expect(block.locator("[class^='hljs']")).to_have_count(0)
        assert await block.text_content() == text
    await shot(page, "desktop-highlighted-code")

    await page.wait_for_load_state("networkidle")
    assert await page.evaluate("window.__ran") is None
    assert await page.evaluate("window.__violations") == []
    assert opened == [] and errors == []
    assert len([name for name in scripts if name.startswith("highlight-")]) == 1


async def test_a_button_takes_a_reader_who_scrolled_up_back_to_the_end(page: Page, web: Server) -> None:
    long_reply = "\n\n".join(f"Paragraph {n} of a long reply." for n in range(1, 121))
    thread_id = await stored_thread(
        web, user_message(text_part("a long one")), assistant_message(text_part(long_reply))
    )
    await page.goto(f"{web.url}/chat/{thread_id}")
    reply = last_reply_text(page)
    end = reply.get_by_text("Paragraph 120 of a long reply.")
    await expect(end).to_be_in_viewport()
    jump = page.get_by_test_id("scroll-bottom")
    await expect(jump).to_have_count(0)  # at the end: nothing below

    messages = page.get_by_test_id("messages")
    await messages.hover()
    await page.mouse.wheel(0, -2_000)
    await expect(jump).to_be_visible()
    await expect(end).not_to_be_in_viewport()
    await shot(page, "desktop-scroll-to-bottom")
    await jump.click()
    await expect(end).to_be_in_viewport()
    await expect(jump).to_have_count(0)
    assert await messages.evaluate("(el) => el.scrollHeight - el.scrollTop - el.clientHeight") < 2
    # Back at the end, the next reply is followed again.
    await send(page, "count to 120")
    await expect(last_reply_text(page)).to_contain_text(" 120")
    await expect(last_reply_text(page).get_by_text(" 120", exact=False)).to_be_in_viewport()
    await expect(jump).to_have_count(0)


async def test_an_empty_chat_offers_the_demo_prompts_and_they_work(page: Page, web: Server) -> None:
    labels = [suggestion.label for suggestion in DemoModel().suggestions]
    await page.goto(web.url + "/")
    suggestions = page.get_by_test_id("suggestion")
    await expect(suggestions).to_have_count(len(labels))
    for suggestion, label in zip(await suggestions.all(), labels, strict=True):
        await expect(suggestion).to_contain_text(label)
    await shot(page, "desktop-suggestions")

    await suggestions.filter(has_text="Call a tool").click()
    tool = page.get_by_test_id("tool")
    await expect(tool).to_have_attribute("data-state", "output-available")
    await expect(tool).to_have_attribute("data-tool-name", "get_weather")
    await expect(last_reply_text(page)).to_contain_text("The weather in Paris is")
    await expect(page.locator('[data-testid="message"][data-role="user"]')).to_have_text(
        "What is the weather in Paris?"
    )
    await expect(suggestions).to_have_count(0)

    await page.get_by_test_id("new-chat").click()
    await suggestions.filter(has_text="Render Markdown and code").click()
    reply = last_reply_text(page)
    await expect(reply.locator("pre .hljs-keyword").first).to_have_text("def")  # a streamed reply, highlighted
    await expect(reply.locator("strong")).to_have_text("bold")


async def test_the_phone_empty_chat_fits_its_suggestions(browser: Browser, web: Server) -> None:
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()
    try:
        await page.goto(web.url + "/")
        await expect(page.get_by_test_id("suggestion")).to_have_count(len(DemoModel().suggestions))
        await shot(page, "phone-suggestions")
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await page.get_by_test_id("suggestion").filter(has_text="Think").tap()
        await expect(page.get_by_test_id("reasoning")).to_be_visible()
        await expect(page.get_by_test_id("source-link")).to_have_count(1)
    finally:
        await context.close()
