"""docker-compose.yml, .env.example and the Dockerfiles against the code and the real offline tools: the compose
file cannot name a setting or an `ldh` command the code does not know, and every setting is in .env.example."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from ai_service.cli import build_parser
from ai_service.config import Settings
from tests.deploy_support import ROOT, setting_env_names, tool, unknown_ldh_names

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "pipelines" / "Dockerfile"]
# the compose-spec JSON schema Debian's docker-compose validates with
COMPOSE_SPEC = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")


def compose_config(*args: str) -> dict:
    """The file as docker-compose itself resolves it (interpolation, env files, defaults)."""
    run = subprocess.run([tool("docker-compose"), "-f", str(COMPOSE), *args, "config"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


def ours(services: dict) -> dict:
    """The services built from this repository (the ldh image)."""
    built = {name: s for name, s in services.items() if "build" in s}
    assert built, "no service builds the LDH Assist image"
    return built


def test_env_example_lists_every_setting_and_nothing_else():
    listed = re.findall(r"^#? ?(LDH_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), flags=re.M)
    assert len(listed) == len(set(listed)), "a setting is listed twice"
    assert setting_env_names() - set(listed) == set(), "Settings fields missing from .env.example"
    assert unknown_ldh_names(listed) == set(), "names no Settings field reads"


def test_compose_commands_and_env_are_ones_the_code_knows():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in ours(services).items():
        command = service["command"]
        argv = shlex.split(command) if isinstance(command, str) else command
        args = build_parser().parse_args(argv)  # SystemExit (a failure) on an unknown command or option
        assert args.command == "serve", name
        env = service.get("environment", {})
        assert unknown_ldh_names(env) == set(), name
        # the values must also pass the settings' own validation
        Settings(_env_file=None, **{k[4:].lower(): v for k, v in env.items() if k.startswith("LDH_")})


def test_compose_env_file_values_are_known_settings():
    for name, service in ours(compose_config()["services"]).items():
        assert unknown_ldh_names(service.get("environment", {})) == set(), name


@pytest.mark.parametrize("profile", [[], ["--profile", "healthcare"]], ids=["default", "healthcare"])
def test_docker_compose_config_is_valid(profile):
    run = subprocess.run([tool("docker-compose"), "-f", str(COMPOSE), *profile, "config", "-q"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_compose_file_matches_the_compose_spec_schema():
    tool("docker-compose")
    validator = jsonschema.Draft201909Validator(json.loads(COMPOSE_SPEC.read_text()))  # the schema's own draft
    validator.validate(yaml.safe_load(COMPOSE.read_text()))
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["ldh"]["restart"] = ["always"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_compose_publishes_on_loopback_restarts_and_keeps_data_in_named_volumes():
    config = compose_config("--profile", "healthcare")
    for name, service in config["services"].items():
        assert service.get("restart") in {"unless-stopped", "always"}, name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    mounts = {s: [v.split(":") for v in service.get("volumes", [])] for s, service in config["services"].items()}
    named = set(config["volumes"])
    assert ["ldh-data", "/data", "rw"] in mounts["ldh"] and "ldh-data" in named
    assert any(m[0] in named and m[1] == "/var/lib/orthanc/db" for m in mounts["orthanc"])
    # the service image keeps its data where LDH_DATA_DIR points
    assert config["services"]["ldh"]["environment"]["LDH_DATA_DIR"] == "/data"


def test_compose_exports_to_the_pacs_it_starts():
    compose = yaml.safe_load(COMPOSE.read_text())
    ldh = compose["services"]["ldh"]["environment"]
    orthanc = json.loads((ROOT / "deploy" / "orthanc" / "orthanc.json").read_text())
    assert ldh["LDH_NODE_EXPORT_DIMSE"] == f"{orthanc['DicomAet']}@orthanc:{orthanc['DicomPort']}"
    assert ldh["LDH_NODE_ALLOWED_AETS"] == orthanc["DicomAet"]
    aet, host, port = orthanc["DicomModalities"]["ldh"]
    assert (aet, host, port) == (Settings.model_fields["node_ae_title"].default, "ldh",
                                 Settings.model_fields["node_port"].default)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(dockerfile):
    run = subprocess.run([tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    run = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "DL3007" in run.stdout


def test_service_dockerfile_runs_ldh_serve_as_non_root_with_a_readiness_check():
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ldh"]' in text
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, flags=re.M).group(1))
    assert build_parser().parse_args(cmd).command == "serve"
    user = re.findall(r"^USER (\S+)$", text, flags=re.M)[-1]
    assert user.split(":")[0] not in {"0", "root"}
    assert "/readyz" in text and "HEALTHCHECK" in text
    assert "--require-hashes -r requirements.lock" in text
    for env in re.findall(r"\b(LDH_[A-Z0-9_]+)=", text):
        assert unknown_ldh_names([env]) == set(), env


def test_dockerfile_copy_sources_exist():
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                *sources, _dest = line.split()[1:]
                for source in sources:
                    assert (ROOT / source).exists(), f"{dockerfile.name}: {source}"


def test_dockerfile_bases_are_build_arguments_defaulting_to_the_published_images():
    """scripts/container_check.sh builds from local bases; a plain `docker build` still uses the published ones."""
    text = (ROOT / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    assert args == {"BASE_IMAGE": "python:3.11-slim-bookworm", "NODE_IMAGE": "node:20-bookworm-slim"}
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, flags=re.M)
    assert stages == [("${NODE_IMAGE}", "viewer"), ("${BASE_IMAGE}", "build"), ("${BASE_IMAGE}", "service")]


@pytest.mark.slow
def test_the_installed_package_holds_what_the_service_reads_at_run_time(tmp_path):
    """The image installs a wheel, not the checkout (the first image built failed: no web page in it)."""
    import zipfile

    run = subprocess.run([tool("pip"), "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("ldh_assist-*.whl"))).namelist())
    tracked = subprocess.run(["git", "ls-files", "ai_service/api/static", "viewer_plugin/js", "ai_service/model_store"],
                             capture_output=True, text=True, cwd=ROOT, check=True).stdout.split()
    assert len(tracked) > 10 and set(tracked) - names == set()
