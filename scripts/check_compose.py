"""Structural check of docker-compose.yml (there is no Docker engine to run it here).

Checks that the compose file parses, that `nanochat` is built from this repository's Dockerfile
and serves on the port it publishes, and that Open WebUI is pointed at that port's /v1 and
waits for the health check the Dockerfile declares. Exits non-zero with the reason otherwise.
"""

import re
import sys
from pathlib import Path

import yaml


def fail(message: str) -> None:
    print(f"docker-compose.yml: {message}", file=sys.stderr)
    sys.exit(1)


def main(path: str) -> None:
    root = Path(path).resolve().parent
    compose = yaml.safe_load(Path(path).read_text())
    services = compose.get("services") or {}
    for name in ("nanochat", "open-webui"):
        if name not in services:
            fail(f"no service {name!r}")
    nanochat, webui = services["nanochat"], services["open-webui"]
    context = root / nanochat.get("build", {}).get("context", ".")
    dockerfile = context / nanochat.get("build", {}).get("dockerfile", "Dockerfile")
    if not dockerfile.is_file():
        fail(f"nanochat is built from {dockerfile}, which does not exist")
    command = nanochat.get("command") or []
    if command[:1] != ["serve"] or "--host" not in command or "--port" not in command:
        fail(f"nanochat's command must be `serve --host 0.0.0.0 --port N`, got {command}")
    if command[command.index("--host") + 1] != "0.0.0.0":
        fail("nanochat must listen on 0.0.0.0 to be reachable from Open WebUI")
    port = command[command.index("--port") + 1]
    published = [str(p).split(":")[-1] for p in nanochat.get("ports", [])]
    if port not in published:
        fail(f"nanochat listens on {port} but publishes {published}")
    base_url = (webui.get("environment") or {}).get("OPENAI_API_BASE_URL", "")
    if base_url != f"http://nanochat:{port}/v1":
        fail(f"Open WebUI's OPENAI_API_BASE_URL is {base_url!r}, expected http://nanochat:{port}/v1")
    condition = (webui.get("depends_on") or {}).get("nanochat", {}).get("condition")
    if condition == "service_healthy" and not re.search(r"^HEALTHCHECK ", dockerfile.read_text(), re.M):
        fail("Open WebUI waits for nanochat to be healthy, but the Dockerfile has no HEALTHCHECK")
    declared = compose.get("volumes") or {}
    for service in services.values():
        for volume in service.get("volumes", []):
            named = str(volume).split(":")[0]
            if not named.startswith((".", "/")) and named not in declared:
                fail(f"volume {named!r} is used but not declared")
    print("docker-compose.yml: ok")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml")
