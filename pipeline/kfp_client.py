"""Upload, schedule and submit a compiled KFP v1 pipeline through the KFP SDK (`kfp.Client`, kfp 1.8).

Every call is bounded by a short timeout, every failure names the step and what
the server said, and whatever was created before a failure is reported with the
command that deletes it: nothing is left half-created without the user knowing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import pathlib
import urllib.error
import urllib.request
from typing import Any, Iterator

from specs.errors import UsageError

HEALTHZ = "/apis/v1beta1/healthz"
DELETE_COMMANDS = {"pipeline": "pipeline delete", "pipeline version": "pipeline delete-version",
                   "experiment": "experiment delete", "recurring run": "recurring-run delete"}


class KfpError(RuntimeError):
    """A Kubeflow Pipelines call failed; the message names the step and the server's answer."""


@dataclasses.dataclass(frozen=True)
class Created:
    kind: str
    id: str
    name: str


def check_host(host: str) -> str:
    if not host.startswith(("http://", "https://")):
        raise UsageError(f"--host {host!r}: give the KFP API URL with its scheme, e.g. http://localhost:8080 "
                         f"(after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`)")
    return host.rstrip("/")


def probe(host: str, timeout: float) -> None:
    """Fails fast (within `timeout`) when nothing answers at `host`, before kfp.Client retries for minutes."""
    try:
        with urllib.request.urlopen(host + HEALTHZ, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as e:
        hint = " (authentication needed: use a port-forward or a token)" if e.code in (401, 403) else ""
        raise KfpError(f"{host} answered HTTP {e.code} on {HEALTHZ}: not a reachable KFP API{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise KfpError(f"cannot reach Kubeflow Pipelines at {host} within {timeout:g} s ({reason}); check --host, "
                       f"e.g. http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui "
                       f"8080:80`") from None


def version_name(pipeline_name: str) -> str:
    return f"{pipeline_name}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"


def recurring_run_request(experiment_id: str, pipeline_id: str, version_id: str | None, job_name: str,
                          cron: str) -> dict[str, Any]:
    """The `kfp.Client.create_recurring_run` arguments; --dry-run prints the same dict."""
    return {"experiment_id": experiment_id, "job_name": job_name, "cron_expression": cron,
            "pipeline_id": pipeline_id, "version_id": version_id,
            # One run at a time, and no backfill of missed slots after a pause.
            "max_concurrency": 1, "no_catchup": True, "enabled": True}


def run_request(experiment_id: str, job_name: str, package: pathlib.Path) -> dict[str, Any]:
    """The `kfp.Client.run_pipeline` arguments: the package goes inline, no pipeline object is created."""
    return {"experiment_id": experiment_id, "job_name": job_name, "pipeline_package_path": str(package)}


class KfpSession:
    """A `kfp.Client` that bounds calls, explains failures and remembers what it created."""

    def __init__(self, host: str, timeout: float, namespace: str | None = None):
        self.host = check_host(host)
        self.timeout = timeout
        self.created: list[Created] = []
        probe(self.host, timeout)
        import kfp  # noqa: PLC0415 - heavy, and only needed once the host answers
        with self.step("connect"):
            self.client = kfp.Client(host=self.host, namespace=namespace or "kubeflow")
        self._bound_requests()

    def _bound_requests(self) -> None:
        """kfp_server_api sends requests with no timeout; give each one ours so a stalled server fails."""
        rest = self.client._run_api.api_client.rest_client  # noqa: SLF001 - the one client all APIs share
        request = rest.request

        def bounded(*args, _request_timeout=None, **kwargs):
            return request(*args, _request_timeout=_request_timeout or self.timeout, **kwargs)
        rest.request = bounded

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        import kfp_server_api
        import urllib3
        try:
            yield
        except kfp_server_api.ApiException as e:
            raise KfpError(f"KFP rejected the request to {what} (HTTP {e.status} {e.reason}: "
                           f"{server_message(e.body)})") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KfpError(f"no answer from KFP at {self.host} to {what} within {self.timeout:g} s ({e})") from None
        except ValueError as e:  # kfp.Client's own checks, e.g. two pipelines with one name
            raise KfpError(f"could not {what}: {e}") from None

    def upload(self, package: pathlib.Path, pipeline_name: str, version: str) -> tuple[str, str | None]:
        """A new pipeline, or a new version when a pipeline of that name exists: (pipeline id, version id)."""
        with self.step(f"look up pipeline {pipeline_name!r}"):
            pipeline_id = self.client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            with self.step(f"upload pipeline {pipeline_name!r}"):
                pipeline = self.client.upload_pipeline(str(package), pipeline_name=pipeline_name)
            self.created.append(Created("pipeline", pipeline.id, pipeline_name))
            return pipeline.id, pipeline.default_version.id if pipeline.default_version else None
        with self.step(f"upload version {version!r} of pipeline {pipeline_name!r}"):
            uploaded = self.client.upload_pipeline_version(str(package), version, pipeline_id=pipeline_id)
        self.created.append(Created("pipeline version", uploaded.id, version))
        return pipeline_id, uploaded.id

    def experiment(self, name: str) -> str:
        with self.step(f"look up experiment {name!r}"):
            try:
                return self.client.get_experiment(experiment_name=name).id
            except ValueError as e:
                if not str(e).startswith("No experiment is found"):
                    raise
        with self.step(f"create experiment {name!r}"):
            experiment = self.client.create_experiment(name)
        self.created.append(Created("experiment", experiment.id, name))
        return experiment.id

    def schedule(self, package: pathlib.Path, pipeline_name: str, version: str, experiment: str, job_name: str,
                 cron: str) -> dict[str, str | None]:
        pipeline_id, version_id = self.upload(package, pipeline_name, version)
        experiment_id = self.experiment(experiment)
        with self.step(f"create recurring run {job_name!r} (cron {cron!r})"):
            job = self.client.create_recurring_run(
                **recurring_run_request(experiment_id, pipeline_id, version_id, job_name, cron))
        self.created.append(Created("recurring run", job.id, job_name))
        return {"pipeline_id": pipeline_id, "version_id": version_id, "experiment_id": experiment_id,
                "recurring_run_id": job.id, "url": f"{self.host}/#/recurringrun/details/{job.id}"}

    def submit(self, package: pathlib.Path, experiment: str, job_name: str) -> dict[str, str]:
        experiment_id = self.experiment(experiment)
        with self.step(f"start run {job_name!r}"):
            run = self.client.run_pipeline(**run_request(experiment_id, job_name, package))
        return {"experiment_id": experiment_id, "run_id": run.id, "url": f"{self.host}/#/runs/details/{run.id}"}

    def created_report(self) -> str:
        """What exists on the cluster now, and how to delete it (newest first)."""
        if not self.created:
            return "Nothing was created on the cluster."
        lines = ["Created before the failure (delete what you do not want):"]
        for item in reversed(self.created):
            lines.append(f"  {item.kind} {item.name!r} id {item.id}: "
                         f"kfp --endpoint {self.host} {DELETE_COMMANDS[item.kind]} {item.id}")
        return "\n".join(lines)


def server_message(body: Any) -> str:
    """The `error`/`message` of a KFP error body, else the body itself (shortened)."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        parsed = json.loads(text)
        text = parsed.get("error") or parsed.get("message") or text
    except (ValueError, AttributeError):
        pass
    return text.strip()[:500] or "no details"
