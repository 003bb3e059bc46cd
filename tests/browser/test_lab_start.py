"""`make lab` as a learner meets it, in a real JupyterLab and headless Chromium.

The server is started by the same launcher `make lab` runs (see tests/browser/lab.py, LabServer):
the browser goes to the server's root address, as the window `make lab` opens does, and must land
on chapters/00_start_here.ipynb with the whole course in the file browser, no news toast, and
exercises/00_warmup.ipynb one double-click away, its setup cell running.
"""

import shutil

from tests.browser import lab

NEWS_TOAST = "official Jupyter news"


def listed(page) -> list[str]:
    return [t.split("\n")[0].strip() for t in page.locator(".jp-DirListing-item").all_inner_texts()]


def test_course_settings_come_with_the_environment(lab_server):
    schema = lab_server.api(
        "lab/api/settings/@jupyterlab/apputils-extension:notification")["schema"]
    assert schema["properties"]["fetchNews"]["default"] == "false", (
        "the course's lab settings are missing: run the install step (make venv)")
    assert schema["properties"]["checkForUpdates"]["default"] is False


def test_start_notebook_opens_and_exercises_are_one_click_away(lab_server, chromium, artifacts):
    page = chromium.new_page()
    try:
        nb = lab.NotebookPage(page, lab_server, "00_start_here.ipynb")
        # a learner's first start: no kernel running, and no tabs left open by earlier tests on
        # this server (the widget tests open other chapters, and JupyterLab restores its default
        # workspace; a notebook reopened on its old kernel asks it for widget models it no
        # longer has)
        lab_server.shutdown_kernels()
        for name in ("chapters/00_start_here.ipynb", "exercises/00_warmup.ipynb"):
            # as released: the widget tests save the chapters they drive, with widget views whose
            # models lived in a kernel that is gone
            shutil.copy(lab.ROOT / name, lab_server.root / name)
        page.request.delete(f"{lab_server.base}/lab/api/workspaces/default",
                            headers={"Authorization": f"token {lab_server.token}"})
        page.goto(f"{lab_server.base}/?token={lab_server.token}")
        page.wait_for_selector(".jp-Notebook", state="attached", timeout=120_000)
        assert "/lab/tree/chapters/00_start_here.ipynb" in page.url
        assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current").inner_text() \
            .strip() == "00_start_here.ipynb"
        nb.wait_idle()
        page.wait_for_function("n => document.querySelectorAll('.jp-DirListing-item').length >= n",
                               arg=3, timeout=30_000)
        names = listed(page)
        for name in ("chapters", "exercises", "solutions", "README.md"):
            assert name in names, f"{name} not in the file browser at start: {names}"
        page.wait_for_timeout(3000)  # the news question comes a moment after start-up
        assert NEWS_TOAST not in page.locator("body").inner_text()
        page.screenshot(path=str(artifacts / "lab-start.png"))

        page.locator(".jp-DirListing-item", has_text="exercises").first.dblclick()
        page.locator(".jp-DirListing-item", has_text="00_warmup.ipynb").first.dblclick(
            timeout=30_000)
        page.wait_for_function(
            """() => { const t = document.querySelector('.lm-DockPanel-tabBar .lm-mod-current');
                       return t && t.textContent.includes('00_warmup.ipynb'); }""", timeout=60_000)
        warmup = lab.NotebookPage(page, lab_server, "00_warmup.ipynb")
        warmup.wait_idle()
        # the setup cell: the first code cell, or the second after Google Colab's install cell
        # (which does nothing here and is left unrun)
        cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")
        setup = cells.filter(has_text="nncourse.setup()").first
        assert "nncourse.setup()" in setup.locator(".jp-InputArea").inner_text()
        assert setup.evaluate("(el, first) => el === first", cells.first.element_handle()) or \
            "google.colab" in cells.first.locator(".jp-InputArea").inner_text()
        setup.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        page.wait_for_function(
            """(cell) => /\\[1\\]/.test(cell.querySelector('.jp-InputPrompt').textContent)""",
            arg=setup.element_handle(), timeout=120_000)
        warmup.wait_idle()
        assert setup.locator(".jp-OutputArea-output[data-mime-type*='error']").count() == 0
        assert setup.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']") \
            .count() == 0
        page.screenshot(path=str(artifacts / "lab-warmup.png"))
        assert nb.console_errors == []
    finally:
        page.close()
