"""Each script once per page: a Sphinx extension local to this book.

With Jupyter Book 1.x (Sphinx 7.4), sphinx-thebe and sphinx-togglebutton add
their inline configuration scripts twice to every page. sphinx-thebe's
declares `const THEBE_JS_URL`, so its copy is a SyntaxError in the reader's
console, which tests/test_browser.py rightly counts as a script error. This
keeps the first of identical scripts.
"""


def _once(app, pagename, templatename, context, doctree):
    if "script_files" in context:
        context["script_files"] = list(dict.fromkeys(context["script_files"]))


def setup(app):
    app.connect("html-page-context", _once)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
