"""Checks of an HTML report: parse it, and prove it fetches nothing (shared by unit and integration tests)."""

import re
from html.parser import HTMLParser


class ParsedDoc(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    def handle_data(self, data):
        self.text.append(data)


def parse_report(text: str) -> ParsedDoc:
    doc = ParsedDoc()
    doc.feed(text)
    doc.close()
    return doc


def assert_self_contained(doc: ParsedDoc) -> None:
    assert "script" not in doc.tags and "link" not in doc.tags and "iframe" not in doc.tags
    for tag, k, v in doc.attrs:
        if k in ("src", "href", "data", "poster"):
            assert v.startswith("data:") or v.startswith("#"), (tag, k, v[:60])
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", "".join(doc.text)), "external url() in CSS"
