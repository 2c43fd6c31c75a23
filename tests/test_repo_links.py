"""_ext/repo_links.py: the repository and launch buttons only for a real address."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
from repo_links import (drop_buttons_without_repository, drop_duplicate_scripts,  # noqa: E402
                        is_real_repository)


@pytest.mark.parametrize("url", ["", None, "https://github.com/cnnlab/cnnlab",
                                 "https://github.com/cnnlab/cnnlab/", "github.com/a/b",
                                 "http://github.com/a/b", "https://github.com/onlyowner"])
def test_placeholders_and_malformed_addresses_are_not_real(url):
    assert not is_real_repository(url)


def test_a_full_https_repository_address_is_real():
    assert is_real_repository("https://github.com/someone/cnnlab")


def _config(url):
    launch = {"binderhub_url": "https://mybinder.org",
              "colab_url": "https://colab.research.google.com"}
    return SimpleNamespace(html_theme_options={"repository_url": url, "launch_buttons": launch})


def test_without_a_repository_no_button_points_anywhere():
    config = _config("")
    drop_buttons_without_repository(None, config)
    options = config.html_theme_options
    assert "repository_url" not in options
    assert options["use_repository_button"] is False
    assert options["launch_buttons"] == {}


def test_with_a_real_repository_the_buttons_stay():
    config = _config("https://github.com/someone/cnnlab")
    drop_buttons_without_repository(None, config)
    options = config.html_theme_options
    assert options["use_repository_button"] is True
    assert options["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


def test_an_inline_script_added_twice_is_kept_once():
    def script(filename, **attributes):
        return SimpleNamespace(filename=filename, attributes=attributes)
    body = 'const THEBE_JS_URL = "x"'
    context = {"script_files": [script(None, body=body), script("_static/a.js"),
                                script("", body=body), script("_static/b.js"),
                                script(None, body="let other = 1")]}
    drop_duplicate_scripts(None, "page", "page.html", context, None)
    kept = [(s.filename, s.attributes.get("body")) for s in context["script_files"]]
    assert kept == [(None, body), ("_static/a.js", None), ("_static/b.js", None),
                    (None, "let other = 1")]
