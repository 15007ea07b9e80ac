"""One HTTP request to the app, made inside its container by the image's own Python.

Run as ``python -c SOURCE METHOD URL [TOKEN [JSON]]``; prints ``{"status": ..., "body": ...}``.
It uses only the standard library (the image has nothing else the test could rely on)
and no proxy, whatever the container's environment says.
"""

import json
import sys
import urllib.error
import urllib.request


def request(method: str, url: str, token: str = "", body: str = "") -> dict:
    headers = {"Accept": "application/json, text/html"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body:
        headers["Content-Type"] = "application/json"
    outgoing = urllib.request.Request(url, data=body.encode() or None, headers=headers, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(outgoing, timeout=10) as response:
            return {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as refused:
        return {"status": refused.code, "body": refused.read().decode()}


if __name__ == "__main__":
    print(json.dumps(request(*sys.argv[1:])))
