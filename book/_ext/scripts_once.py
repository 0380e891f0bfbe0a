"""Each script once per page: a Sphinx extension local to this book.

With Jupyter Book 1.x (Sphinx 7.4), sphinx-thebe and sphinx-togglebutton add
their inline configuration scripts twice to every page (once with the file name
None, once with ""). sphinx-thebe's declares `const THEBE_JS_URL`, so its copy is a
SyntaxError in the reader's console, which tests/test_browser.py rightly counts
as a script error. This keeps the first of scripts that would render alike.
"""


def _rendered(js):
    return js.filename or None, tuple(sorted(js.attributes.items()))


def _once(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for js in context.get("script_files", []):
        if _rendered(js) not in seen:
            seen.add(_rendered(js))
            kept.append(js)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _once, priority=900)  # after the handlers that add scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
