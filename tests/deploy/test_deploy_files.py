"""The fleet's deployment files (deploy/), checked as CI can: without a Docker daemon or a cluster.

- deploy/compose.yaml through `docker-compose config` (Debian's docker-compose), and its load balancer's
  deploy/haproxy.cfg through `haproxy -c` (Debian's haproxy);
- the kustomize base deploy/kubernetes rendered by `kubectl kustomize` and piped through
  `kubernetes-validate --strict` (the API schemas of a recent Kubernetes);
- every lookout-emulator command line in both, with the environment the file gives it, through the CLI's
  own parser, so that a renamed flag or variable breaks this test rather than a deployment.

.ci/run installs the tools. Elsewhere a missing tool skips its test, naming the tool; under CI it fails.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.cli import COMMAND_OPTIONS, build_parser, parse_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
HAPROXY_CONFIG = DEPLOY / "haproxy.cfg"
KUSTOMIZE_BASE = DEPLOY / "kubernetes"
IMAGE = "lookout-emulator"  # the image name, without registry or tag, the files give our Dockerfile's image
# The variables deploy/example.env asks for, with throwaway values.
COMPOSE_VARIABLES = {"POSTGRES_PASSWORD": "a-password", "S3_ACCESS_KEY_ID": "a-key-id",
                     "S3_SECRET_ACCESS_KEY": "a-secret"}



def tool(name: str, purpose: str) -> str:
    """A command-line tool: the one pip put beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed ({purpose}; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(*command: str | Path, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], input=stdin, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


# ----------------------------------------------------------------------------- the tools' own checks
def compose_config(variables: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with these variables only: an empty --env-file, not a deploy/.env there may be."""
    compose = tool("docker-compose", "checks deploy/compose.yaml")
    env = {name: value for name, value in os.environ.items() if name not in COMPOSE_VARIABLES} | variables
    (folder / "empty.env").write_text("")
    return run(compose, "--env-file", folder / "empty.env", "-f", COMPOSE_FILE, "config", env=env)


def test_the_compose_file_is_valid(tmp_path):
    done = compose_config(COMPOSE_VARIABLES, tmp_path)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert sorted(services) == ["api-1", "api-2", "haproxy", "migrate", "postgres", "seaweedfs", "worker"]


@pytest.mark.parametrize("missing", sorted(COMPOSE_VARIABLES))
def test_the_compose_file_refuses_to_run_without_its_secrets(missing, tmp_path):
    done = compose_config({name: value for name, value in COMPOSE_VARIABLES.items() if name != missing}, tmp_path)
    assert done.returncode != 0
    assert f"set {missing} in deploy/.env" in done.stderr


def test_the_load_balancer_configuration_is_valid():
    haproxy = tool("haproxy", "checks deploy/haproxy.cfg")
    done = run(haproxy, "-c", "-f", HAPROXY_CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    # The compose file's service names resolve only inside its network, which the file allows for.
    warnings = [line for line in done.stdout.splitlines() + done.stderr.splitlines()
                if "WARNING" in line and "could not resolve address" not in line]
    assert not warnings, warnings


def test_the_kustomize_base_renders_valid_kubernetes_resources():
    kubectl = tool("kubectl", "renders deploy/kubernetes with its built-in kustomize")
    validate = tool("kubernetes-validate", "checks the rendered resources against Kubernetes' API schemas")
    rendered = run(kubectl, "kustomize", KUSTOMIZE_BASE)
    assert rendered.returncode == 0, rendered.stderr
    checked = run(validate, "--strict", "-", stdin=rendered.stdout)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    kinds = sorted(f"{doc['kind']}/{doc['metadata']['name']}" for doc in yaml.safe_load_all(rendered.stdout))
    assert [re.sub(r"-[a-z0-9]{10}$", "", kind) for kind in kinds] == [  # generated names end in a hash
        "ConfigMap/lookout-settings", "Deployment/lookout-api", "Deployment/lookout-worker", "Job/lookout-migrate",
        "Secret/lookout-connection", "Secret/lookout-credentials", "Service/lookout-emulator"]


# ----------------------------------------------------------- our command lines, through our parser
def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's substitutions that deploy/compose.yaml uses: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match.groups()
        value = variables.get(name, "")
        if not value and operator == ":?":
            raise AssertionError(f"compose would refuse to run: {word}")
        return value or (word if operator == ":-" else "")

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", substitute, text)


def compose_command_lines() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each service running our image: its command line and environment, as compose would give them."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    found = {}
    for name, service in services.items():
        if service.get("image", "").split(":")[0] == IMAGE:
            command = service["command"]
            argv = shlex.split(command) if isinstance(command, str) else command
            environment = {key: interpolate(str(value), COMPOSE_VARIABLES)
                           for key, value in service.get("environment", {}).items()}
            found[f"compose:{name}"] = (argv, environment)
    return found


def env_file(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def kubernetes_command_lines() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each container running our image in the base: its arguments (after the image's entrypoint) and
    the environment its envFrom (the base's generated ConfigMap and Secrets) and env give it."""
    kustomization = yaml.safe_load((KUSTOMIZE_BASE / "kustomization.yaml").read_text())
    generated: dict[str, dict[str, str]] = {}
    for generator in kustomization.get("configMapGenerator", []) + kustomization.get("secretGenerator", []):
        generated[generator["name"]] = {}
        for path in generator.get("envs", []):
            generated[generator["name"]].update(env_file(KUSTOMIZE_BASE / path))
    found = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((KUSTOMIZE_BASE / resource).read_text()):
            pod: dict[str, Any] = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                if container["image"].split(":")[0] != IMAGE:
                    continue
                assert "command" not in container, "the image's entrypoint is lookout-emulator: give args only"
                environment: dict[str, str] = {}
                for source in container.get("envFrom", []):
                    reference = source.get("configMapRef") or source.get("secretRef")
                    environment.update(generated[reference["name"]])
                environment.update({item["name"]: item["value"] for item in container.get("env", [])})
                found[f"kubernetes:{doc['kind']}/{doc['metadata']['name']}"] = (container["args"], environment)
    return found



COMMAND_LINES = compose_command_lines() | kubernetes_command_lines()


def test_the_files_run_the_fleet_the_readme_describes():
    commands = sorted(shlex.join(argv) for argv, _ in COMMAND_LINES.values())
    assert commands == ["db upgrade", "db upgrade"] + ["serve --role api,inference"] * 3 + ["serve --role worker"] * 2


@pytest.mark.parametrize(("argv", "environment"), COMMAND_LINES.values(), ids=COMMAND_LINES.keys())
def test_every_command_line_is_accepted_by_the_cli(argv, environment, monkeypatch, capsys):
    variables = {option.env for options in COMMAND_OPTIONS.values() for option in options if option.env}
    unknown = sorted(name for name in environment if name.startswith("LOOKOUT_") and name not in variables)
    assert not unknown, f"variables no lookout-emulator command reads: {unknown}"
    for name in os.environ:
        if name.startswith("LOOKOUT_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    try:
        parse_args(build_parser(), argv)
    except SystemExit:
        pytest.fail(f"lookout-emulator {shlex.join(argv)} is refused: {capsys.readouterr().err.strip()}")
