"""The one place credentials are hidden: every recorded command, storage URL, log line
and error message that could hold one goes through `redact` before it is printed,
written to a file or stored in a study.

Shapes handled (each is tested): `scheme://user:pw@host`, `scheme://:pw@host`, a password
holding '@' or ':' (the user info runs to the last '@' of the URL), one holding a space or a
quote (to the line's last '@'), `https://TOKEN@host`, query parameters such as `?password=pw`,
`&sslpassword=pw` or `access_token=...`, and `PGPASSWORD=pw`, `MYSQL_PWD=pw`, `*_TOKEN=...`
assignments; `user:pw@host` with no scheme at all (a URL that lost its scheme); plus any exact
secret the caller knows, and the pieces of it a driver may echo (`url_secrets`).
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
# a credential's name, also as the end of a longer one (access_token, client_secret, db_password)
_QUERY = re.compile(r"(?i)(?<![A-Za-z0-9])((?:ssl)?pass(?:word|wd)?|pwd|secret|token|api[_-]?key)=([^&\s'\"]*)")
_ASSIGN = re.compile(r"(?<![?&\w])([A-Z][A-Z0-9_]*(?:PASSWORD|PASSWD|PWD|SECRET[A-Z0-9_]*|TOKEN))=(\S+)")  # environment
# user:password@ where the password holds what ends a URL above (a space, a quote): to the line's last '@'
_LOOSE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:'\"]*:)[^\n@]*@")
# user:password@host with no scheme (a URL that lost it), also inside a path: the password runs
# to the token's last '@' before a host; a scheme's own "://" is the URL patterns' work
_BARE = re.compile(r"(?<![\w.~%+\-:@])([\w.~%+\-]*):(?!//)[^\s'\"<>]*@(?=[\w\[])")
# what a URL parser that splits at the wrong '@' or ':' echoes of a password (SQLAlchemy reads
# user:W@r:ng%41pw@host as host "r", port "ng%41pw@host")
_SPLIT = re.compile(r"[@:/?#]")


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            rest = f"{user}:{MASK}@{host}"
        elif "/" in userinfo or "?" in userinfo:  # an '@' after the path: leave the URL's own shape
            pass
        elif scheme.lower() in ("http", "https"):  # https://TOKEN@host: on the web a bare user is a token
            rest = f"{MASK}@{host}"
    return scheme + sep + _QUERY.sub(lambda m: f"{m.group(1)}={MASK}", rest)


def url_secrets(url: str) -> list[str]:
    """The password of a URL (or of `user:pw@host` without a scheme), raw and percent-decoded,
    and the pieces of it between '@', ':', '/', '?' and '#' that a driver parsing the URL
    differently may echo (at least 3 characters each), for exact redaction elsewhere."""
    try:
        pw = urlsplit(url).password if "://" in url else None
    except ValueError:
        pw = None
    if not pw:
        rest = url.partition("://")[2] if "://" in url else url
        userinfo = rest.rsplit("@", 1)[0] if "@" in rest else ""
        pw = userinfo.split(":", 1)[1] if ":" in userinfo else None
    if not pw:
        return []
    whole = {pw, unquote(pw)}
    pieces = {p for w in whole for sep in ("@", ":", _SPLIT) for p in
              (w.split(sep) if isinstance(sep, str) else sep.split(w))}
    return sorted(s for s in whole | pieces if s and (s in whole or len(s) >= 3))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential replaced by ***."""
    if not text:
        return text
    for s in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(s, MASK)
    text = _LOOSE.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    text = _BARE.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    text = _QUERY.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return _ASSIGN.sub(lambda m: f"{m.group(1)}={MASK}", text)
