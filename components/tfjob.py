"""The Trainer's workers on Kubernetes: a Kubeflow TFJob, created and watched from the Trainer's pod.

On Kubeflow the multi-worker Trainer step does what the local launcher does, with
pods instead of processes: it writes the plan (components/multi_worker_trainer.py)
under the pipeline root, which every pod can read, and creates a TFJob whose N
`Worker` replicas each run `python -m components.multi_worker_trainer PLAN` in the
pipeline image. Kubeflow's training operator gives each replica its TF_CONFIG
(`{"cluster": {"worker": ["JOB-worker-0.NS.svc:2222", ...]}, "task": {"type":
"worker", "index": i}}`), so worker 0 is the chief that writes the model. The step
waits for the job and fails with the job's message when it fails.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any, Callable, Protocol

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"
PORT = 2222                 # the training operator's default `tfjob-port`
POLL_S = 15
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class TfJobFailed(RuntimeError):
    """The TFJob ended in the Failed condition."""


@dataclasses.dataclass(frozen=True)
class TfJobOptions:
    """How the Trainer step starts its workers on the cluster (from the compile options)."""

    image: str                          # the pipeline image: the workers run the same code as the step
    volume: str | None = None           # PVC holding the pipeline root, mounted like the steps' volume
    mount_path: str | None = None
    namespace: str | None = None        # default: the Trainer pod's own namespace

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def job_name(plan_uri: str) -> str:
    """A DNS-1123 name unique per Trainer execution (its output URI is)."""
    return f"trainer-{hashlib.sha256(plan_uri.encode()).hexdigest()[:12]}"


def tfjob_manifest(name: str, namespace: str, plan_uri: str, workers: int, options: TfJobOptions) -> dict[str, Any]:
    """A TFJob with `workers` Worker replicas running the plan; no restarts (a failed worker fails the job)."""
    container: dict[str, Any] = {
        "name": "tensorflow",  # the operator finds the TF container by this name
        "image": options.image,
        "command": ["python", "-m", "components.multi_worker_trainer", plan_uri],
        "ports": [{"name": "tfjob-port", "containerPort": PORT}]}
    pod: dict[str, Any] = {"containers": [container]}
    if options.volume:
        container["volumeMounts"] = [{"name": "tfx-shared", "mountPath": options.mount_path}]
        pod["volumes"] = [{"name": "tfx-shared", "persistentVolumeClaim": {"claimName": options.volume}}]
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TFJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0},
                 "tfReplicaSpecs": {"Worker": {"replicas": workers, "restartPolicy": "Never",
                                               "template": {"spec": pod}}}}}


class CustomObjects(Protocol):
    """The two calls of kubernetes.client.CustomObjectsApi this module makes."""

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: dict) -> dict: ...

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                     name: str) -> dict: ...


def in_cluster_api() -> CustomObjects:
    from kubernetes import client, config
    config.load_incluster_config()  # the Trainer pod's service account (needs create/get on tfjobs)
    return client.CustomObjectsApi()


def own_namespace() -> str:
    with open(NAMESPACE_FILE) as f:
        return f.read().strip()


def run_tfjob(manifest: dict[str, Any], api: CustomObjects, say: Callable[[str], None] = print,
              poll_s: float = POLL_S) -> None:
    """Creates the TFJob and waits until it succeeds; raises TfJobFailed with the job's message."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    workers = manifest["spec"]["tfReplicaSpecs"]["Worker"]["replicas"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    say(f"created TFJob {namespace}/{name} with {workers} workers; logs: kubectl logs -n {namespace} "
        f"-l training.kubeflow.org/job-name={name} --prefix")
    last = None
    while True:
        job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        conditions = {c.get("type"): c for c in job.get("status", {}).get("conditions", [])
                      if c.get("status") == "True"}
        if "Succeeded" in conditions:
            say(f"TFJob {name} succeeded")
            return
        if "Failed" in conditions:
            raise TfJobFailed(f"TFJob {namespace}/{name} failed: {conditions['Failed'].get('message', 'no message')}")
        state = ", ".join(sorted(conditions)) or "pending"
        if state != last:
            say(f"TFJob {name}: {state}")
            last = state
        time.sleep(poll_s)
