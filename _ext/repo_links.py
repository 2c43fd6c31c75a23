"""Sphinx extension: repository and launch buttons only for a real repository;
each script once per page.

The book's repository address lives in one place, ``repository.url`` in
``_config.yml``. Until the course is published it is left empty, and then
this extension removes the repository button and the Binder and Colab
launch buttons, which would otherwise point at an address that does not
exist. The download button (.ipynb) does not need a repository and stays.

To publish: set ``repository.url`` to the real address, push, build.
"""
from __future__ import annotations

from urllib.parse import urlparse

# Addresses that are known not to be the course's repository: a reader must
# never be sent there. tests/check_built_book.py fails on a link to any of them.
PLACEHOLDER_URLS = (
    "https://github.com/cnnlab/cnnlab",  # written here before the course had a home
    "https://github.com/OWNER/REPO",
)


def is_real_repository(url: str | None) -> bool:
    """True when ``url`` is a plausible repository address and not a placeholder."""
    if not url:
        return False
    parts = urlparse(url.strip())
    if parts.scheme != "https" or not parts.netloc or parts.path.strip("/").count("/") < 1:
        return False
    return url.strip().rstrip("/").lower() not in {p.lower() for p in PLACEHOLDER_URLS}


def drop_buttons_without_repository(app, config) -> None:
    """``config-inited``: the repository button on for a real address; else no buttons."""
    options = config.html_theme_options
    if is_real_repository(options.get("repository_url")):
        options["use_repository_button"] = True
        return
    options.pop("repository_url", None)
    options["use_repository_button"] = False
    options["launch_buttons"] = {}


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """``html-page-context``: each script once.

    sphinx-thebe adds its inline ``const THEBE_JS_URL = ...`` twice under
    Jupyter Book 1, and the second copy is a SyntaxError in every page's
    console. Keeping the first copy of each script removes it.
    """
    seen, unique = set(), []
    for script in context.get("script_files", []):
        attributes = tuple(sorted(getattr(script, "attributes", {}).items()))
        # An inline script's filename is None or "", depending on who added it.
        key = (getattr(script, "filename", None) or "", attributes)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", drop_buttons_without_repository)
    app.connect("html-page-context", drop_duplicate_scripts, priority=999)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
