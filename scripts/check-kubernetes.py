#!/usr/bin/env python3
"""Checks deploy/kubernetes/ offline, then runs its shard commands here.

    scripts/check-kubernetes.py PUSHBENCH_BINARY

1. Every manifest is valid Kubernetes (kubernetes-validate, strict).
2. The generator is an Indexed Job whose completions, parallelism and the
   N of its `--shard $(SHARD)/N` agree; SHARD is the completion index; its
   --target is the server's Service; the results directory is on the
   volume the merge Job reads.
3. The Job's own arguments run here, one process per completion index at
   once, against a local `pushbench serve` (the Service's URL replaced by
   the local one, /results by a temporary directory, and the phases and
   transports shortened with --set), then the merge Job's own command
   joins them. The merged delivered/expected counts must equal those of a
   single process running the same workload (--set clients.shards=N).

Exit 0 when all of it holds, 1 when something does not, 2 on bad usage or
a missing tool (naming the package that provides it).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
# Short enough for CI, long enough that every shard measures a window.
SHORTEN = [
    "--set", "clients.count=200",
    "--set", "clients.connect_ramp=1s",
    "--set", "phases.warmup=1s",
    "--set", "phases.measure=3s",
    "--set", 'transports=["websocket","long_polling"]',
]
TOKEN = "check-kubernetes-token"


def fail(message):
    print(f"check-kubernetes: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def load_manifests():
    try:
        import yaml
    except ImportError:
        print("check-kubernetes: PyYAML is missing (pip install kubernetes-validate brings it)", file=sys.stderr)
        sys.exit(2)
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def validate():
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        print("check-kubernetes: kubernetes-validate is missing (pip install kubernetes-validate)", file=sys.stderr)
        sys.exit(2)
    files = [str(p) for p in sorted(MANIFESTS.glob("*.yaml"))]
    done = subprocess.run([exe, "--strict", *files], capture_output=True, text=True)
    print(done.stdout + done.stderr, end="")
    if done.returncode != 0:
        fail("kubernetes-validate refused a manifest")


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    fail(f"no {kind} {name} in {MANIFESTS}")


def container(job):
    containers = job["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        fail(f"Job {job['metadata']['name']}: one container expected")
    return containers[0]


def mount_path(job):
    mounts = container(job).get("volumeMounts", [])
    if len(mounts) != 1:
        fail(f"Job {job['metadata']['name']}: one results volume expected")
    return mounts[0]["mountPath"]


def check_generator(docs):
    """The generator Job's shard count and arguments, with $(SHARD) left in."""
    job = find(docs, "Job", "pushbench-generator")
    spec = job["spec"]
    if spec.get("completionMode") != "Indexed":
        fail("the generator Job is not Indexed")
    n = spec["completions"]
    if spec.get("parallelism") != n:
        fail(f"parallelism {spec.get('parallelism')} is not completions {n}: the shards must run at once")
    c = container(job)
    env = {e["name"]: e for e in c.get("env", [])}
    field = env.get("SHARD", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if field != "metadata.annotations['batch.kubernetes.io/job-completion-index']":
        fail(f"SHARD is not the completion index: {field}")
    args = c["command"][1:] + c["args"]
    if c["command"][0] != "pushbench":
        fail(f"the generator runs {c['command'][0]}, not pushbench")
    shard = args[args.index("--shard") + 1]
    if shard != f"$(SHARD)/{n}":
        fail(f"--shard {shard}: expected $(SHARD)/{n} for {n} completions")
    service = find(docs, "Service", "pushbench-server")
    port = service["spec"]["ports"][0]["port"]
    want = f"http://{service['metadata']['name']}:{port}"
    target = args[args.index("--target") + 1]
    if target != want:
        fail(f"--target {target}: the Service is {want}")
    return n, args, target, mount_path(job)


def serve(exe):
    server = subprocess.Popen(
        [exe, "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PUSHBENCH_TOKEN": TOKEN},
    )
    for line in server.stdout:
        if line.startswith("pushbench server listening on "):
            return server, line.split()[-1]
    fail("the local server did not start")


def summary_of(out_dir):
    found = [p for p in pathlib.Path(out_dir).rglob("summary.json")]
    if len(found) != 1:
        fail(f"{out_dir}: {len(found)} summaries, expected 1")
    return json.loads(found[0].read_text())


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    exe = str(pathlib.Path(sys.argv[1]).resolve())
    validate()
    docs = load_manifests()
    n, args, target, results = check_generator(docs)
    merge_job = find(docs, "Job", "pushbench-merge")
    merge_cmd = container(merge_job)
    if mount_path(merge_job) != results:
        fail(f"the merge Job reads {mount_path(merge_job)}, the shards write {results}")
    print(f"check-kubernetes: manifests valid; generator: {n} shards against {target}")

    env = {**os.environ, "PUSHBENCH_TOKEN": TOKEN}
    server, url = serve(exe)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = lambda a: a.replace(target, url).replace(results, f"{tmp}/results")
            whole = subprocess.run(
                [exe, "run", args[1], "--target", url, "--yes", "--quiet", "--json",
                 "--results-dir", f"{tmp}/whole", "--set", f"clients.shards={n}", *SHORTEN],
                cwd=ROOT, env=env, capture_output=True, text=True,
            )
            if whole.returncode != 0:
                fail(f"the single-process run failed:\n{whole.stderr}")
            whole = json.loads(whole.stdout)
            shards = [
                subprocess.Popen(
                    [exe, *[local(a.replace("$(SHARD)", str(k))) for a in args], *SHORTEN],
                    cwd=ROOT, env={**env, "SHARD": str(k)},
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )
                for k in range(n)
            ]
            for k, p in enumerate(shards):
                _, err = p.communicate()
                if p.returncode != 0:
                    fail(f"shard {k} failed:\n{err}")
            # The merge Job's own command, with pushbench this build.
            script = local(" ".join(merge_cmd["args"])).replace("pushbench ", f"{exe} ", 1)
            merged = subprocess.run([*merge_cmd["command"], script], cwd=ROOT,
                                    capture_output=True, text=True)
            if merged.returncode != 0:
                fail(f"the merge failed:\n{merged.stderr}")
            merged = summary_of(f"{tmp}/results/merged")
            for w, m in zip(whole["transports"], merged["transports"]):
                t = w["transport"]
                dw, dm = w["delivery"], m["delivery"]
                print(f"check-kubernetes: {t}: one process expected {dw['expected']} delivered {dw['delivered']}; "
                      f"{n} shards merged expected {dm['expected']} delivered {dm['delivered']} lost {dm['lost']}")
                if (dm["expected"], dm["delivered"]) != (dw["expected"], dw["delivered"]) or dm["lost"] != 0:
                    fail(f"{t}: the merged shards do not give the single process's counts")
                if m["clients"]["requested"] != w["clients"]["requested"]:
                    fail(f"{t}: {m['clients']['requested']} clients merged, {w['clients']['requested']} in one process")
    finally:
        server.kill()
    print("check-kubernetes: pass")


if __name__ == "__main__":
    main()
