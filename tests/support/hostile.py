"""Hostile strings a tester file may carry, and the check that a page shows them only as text."""

from __future__ import annotations

from typing import Any

# Each would run script, add an element or a link if a page put it into the HTML unescaped.
SCRIPT_TAG = "<script>window.__pwned=1;alert(1)</script>"
IMG_ONERROR = '"><img src=x id=pwned-img onerror="window.__pwned=2;alert(2)">'
SVG_ONLOAD = "'><svg id=pwned-svg onload=alert(3)>"
JS_URL = "javascript:window.__pwned=4;alert(4)"
RTL_OVERRIDE = "LOT\u202egpj.exe"
LONG = "L" * 3000
PAYLOADS = (SCRIPT_TAG, IMG_ONERROR, SVG_ONLOAD, JS_URL, RTL_OVERRIDE, LONG)


def assert_rendered_as_text(driver: Any, page: str, expected: tuple[str, ...]) -> None:
    """No dialog, no script ran, no injected element or javascript: link; ``expected`` visible."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    try:
        text = driver.switch_to.alert.text
    except NoAlertPresentException:
        text = None
    assert text is None, f"{page}: an alert dialog fired ({text!r})"
    assert driver.execute_script("return window.__pwned === undefined"), f"{page}: script ran"
    for selector in ("#pwned-img", "#pwned-svg", "script:not([src])[id^=pwned]"):
        assert not driver.find_elements(By.CSS_SELECTOR, selector), f"{page}: {selector} injected"
    links = driver.execute_script(
        "return [...document.querySelectorAll('[href],[src],[action]')]"
        ".map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('action'))"
        ".filter(v => v.trim().toLowerCase().startsWith('javascript:'))"
    )
    assert not links, f"{page}: javascript: URL in an attribute: {links}"
    body = driver.find_element(By.TAG_NAME, "body").get_attribute("textContent")
    for s in expected:
        assert s in body, f"{page}: {s[:40]!r} is not shown as text"
