"""The provider's few HTML pages: sign-in, the device page, and a message page.

Templates live here rather than in files so the package needs no package data; Jinja2 escapes every
value. Pages are never cached, never framed, and load nothing from elsewhere.
"""

from __future__ import annotations

from typing import Any

from jinja2 import DictLoader, Environment, select_autoescape
from starlette.responses import HTMLResponse

_BASE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · 统一身份认证（模拟）</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
.banner { font-size: .85rem; color: #8a5a00; background: #fff4db; padding: .4rem .6rem; }
.error { color: #a40000; background: #fde8e8; padding: .5rem .7rem; }
label { display: block; margin-top: .8rem; }
input { width: 100%; padding: .4rem; box-sizing: border-box; font-size: 1rem; }
button { margin-top: 1rem; padding: .5rem 1rem; font-size: 1rem; }
</style>
</head>
<body>
<p class="banner">统一身份认证（开发用模拟服务）Identity provider stand-in: for development and tests only.</p>
<h1>{{ title }}</h1>
{% if error %}<p class="error" id="error">{{ error }}</p>{% endif %}
{% block content %}{% endblock %}
</body>
</html>
"""

_SIGN_IN = """{% extends "base" %}{% block content %}
<p>登录到 <strong>{{ client_id }}</strong>。Sign in to {{ client_id }}.</p>
<form method="post" action="/authorize">
  <input type="hidden" name="request_id" value="{{ request_id }}">
  <label for="username">账号 Account</label>
  <input id="username" name="username" autocomplete="username" required value="{{ username }}">
  <label for="password">密码 Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">登录 Sign in</button>
</form>
{% endblock %}"""

_DEVICE = """{% extends "base" %}{% block content %}
<p>输入命令行显示的用户码并登录，以授权该设备。<br>
Enter the code your command line shows, and sign in to let it act for you.</p>
<form method="post" action="/device">
  <label for="user_code">用户码 User code</label>
  <input id="user_code" name="user_code" autocomplete="off" required value="{{ user_code }}">
  <label for="username">账号 Account</label>
  <input id="username" name="username" autocomplete="username" value="{{ username }}">
  <label for="password">密码 Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password">
  <button type="submit" name="decision" value="approve">登录并授权 Sign in and allow</button>
  <button type="submit" name="decision" value="deny" formnovalidate>拒绝 Deny</button>
</form>
{% endblock %}"""

_MESSAGE = """{% extends "base" %}{% block content %}<p id="message">{{ message }}</p>{% endblock %}"""

_templates = Environment(
    loader=DictLoader({"base": _BASE, "sign_in": _SIGN_IN, "device": _DEVICE, "message": _MESSAGE}),
    autoescape=select_autoescape(default=True, default_for_string=True),
)

HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _templates.get_template(template).render({"error": None, **values})
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def message(title: str, text: str, status: int = 200) -> HTMLResponse:
    return render("message", status, title=title, message=text)
