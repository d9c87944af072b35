"""A Kubernetes API emulator for the end-to-end test, on loopback: kmock plus what a kube-rs
controller and kubectl need.

kmock (pinned, 0.8) gives the HTTP server (aiohttp), request parsing, API discovery (``/api``,
``/apis``, ``/apis/<group>/<version>``, with the bundled descriptions of the built-in
resources) and the object store with every object's history (``ApiServer.objects``). Its own
create/patch/delete/list/watch handlers store objects as plain JSON and stream watch events
without resource versions, so this module replaces them for resource requests with:

- ``metadata.uid``, ``creationTimestamp``, ``generation`` (incremented when anything but
  metadata and status changes) and a cluster-wide monotonic ``resourceVersion``, carried by
  objects, lists and watch events; no-op writes change nothing and emit no event (a controller
  that applies the same objects every reconcile must not wake itself up);
- create (POST, with ``generateName``), replace (PUT, with the resourceVersion precondition),
  patch (merge, JSON patch, strategic merge approximated as merge, and server-side apply, which
  creates a missing object), delete (finalizers, deletionTimestamp, preconditions, garbage
  collection of dependents through ``ownerReferences``, a namespace's objects with it) and
  deletecollection;
- the ``status`` subresource of every resource that declares one (built-in and from CRDs):
  writes to the object ignore ``status``, writes to ``.../status`` change only ``status``;
- label and field selectors on list, watch and deletecollection;
- watch from a resourceVersion (events are kept in a log and replayed), ``timeoutSeconds``,
  ``sendInitialEvents`` with the initial-events-end bookmark, and the ADDED/DELETED events a
  selector-filtered watch sees when an object starts or stops matching;
- CustomResourceDefinitions: creating one serves its resources (discovery included) and marks
  it Established; deleting one removes its resources and objects;
- Kubernetes ``Status`` errors with the standard reasons (NotFound, AlreadyExists, Conflict,
  Invalid, BadRequest, MethodNotAllowed) that kubectl and kube-rs classify.

Simplifications (none matters to the idn operator or the kubectl commands of the test):

- server-side apply keeps, per object, subresource and field manager, the last applied
  configuration; a new apply removes the fields the manager applied before and no longer
  applies, then merges the new configuration in. Maps merge; lists are atomic (replaced whole,
  where a real server merges ``listType: map`` lists by key). There is no field ownership, so
  there are no conflicts between managers (as if ``force=true``), and no ``managedFields``;
- strategic merge patch is handled as JSON merge patch without its ``$`` directives (lists are
  replaced, not merged by their patch merge key);
- no admission, no schema validation or defaulting (a Deployment gets no default strategy, a
  Service no clusterIP), no pruning of unknown fields, no namespace existence checks, no
  authentication or authorization (the kubeconfig's token is ignored), no OpenAPI documents
  (an empty ``/openapi/v2`` lets kubectl's validation pass), no protobuf (JSON only: kubectl's
  typed commands such as ``kubectl create namespace`` send protobuf and get 415; ``kubectl
  apply`` works), no Table output (kubectl prints its own columns), no ``limit``/``continue``
  paging (a list returns everything);
- ``events.k8s.io/v1`` and core ``v1`` events are separate stores (a real server shows each
  event through both APIs);
- no controllers: nothing creates pods or updates a Deployment's status (the test does that,
  as the deployment controller would once the kubelets report ready pods);
- the watch log is never compacted, so no watch gets 410 Gone.

Run it on its own to try kubectl against it::

    .venv/bin/python tests/e2e/apiserver.py --kubeconfig /tmp/emulator.kubeconfig
    KUBECONFIG=/tmp/emulator.kubeconfig kubectl apply -f crds/
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime
import json
import pathlib
import random
import re
import signal
import string
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import parsing, rendering  # kmock 0.8 internals: request parsing

# kmock 0.8's path parser fails on `/api/v1/namespaces` (it takes `namespaces` for the start of
# `namespaces/<ns>/...` and finds no <ns>), so every request for it would be a 500 before any
# handler runs. Requests for resources are routed by ApiServer._target, not by this parse.
_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    try:
        return _kmock_parse_path(path)
    except ValueError:
        return _kmock_parse_path(path.rstrip("/") + "/-")  # read as a named object


parsing.parse_path = _parse_path

try:  # apply patches may be YAML; kubectl and kube-rs send JSON, which is YAML too
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-kmock",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# Objects of these resources exist from the start, as in a fresh cluster.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ApiError(Exception):
    """A Kubernetes ``Status`` failure."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(resource: Any, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{resource.plural}.{resource.group or "core"} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strip_directives(patch: Any) -> Any:
    """A strategic merge patch without its ``$patch``, ``$setElementOrder/...`` keys."""
    if isinstance(patch, dict):
        return {k: strip_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [strip_directives(v) for v in patch]
    return patch


def apply_merge(current: dict, previous: dict | None, applied: dict) -> dict:
    """Server-side apply for one field manager: drop what it applied before and no longer
    applies, then merge what it applies now (maps merge, lists and scalars replace)."""
    result = copy.deepcopy(current)

    def prune(target: dict, before: dict, now_: dict) -> None:
        for key, old in before.items():
            if key not in target:
                continue
            if key not in now_:
                del target[key]
            elif isinstance(old, dict) and isinstance(now_[key], dict) and isinstance(target[key], dict):
                prune(target[key], old, now_[key])

    def merge(target: dict, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                merge(target[key], value)
            else:
                target[key] = copy.deepcopy(value)

    if previous:
        prune(result, previous, applied)
    merge(result, applied)
    return result


# --- selectors ---------------------------------------------------------------------------

_SET_TERM = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def label_matcher(selector: str | None):
    """A predicate on a labels dict for a label selector (``a=b,c!=d,e in (f,g),!h,i``)."""
    if not selector:
        return lambda labels: True
    checks = []
    for term in split_terms(selector):
        if m := _SET_TERM.match(term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",") if v.strip()}
            if op == "in":
                checks.append(lambda l, k=key, vs=values: l.get(k) in vs)
            else:
                checks.append(lambda l, k=key, vs=values: l.get(k) not in vs)
        elif m := _EQ_TERM.match(term):
            key, op, value = m[1], m[2], m[3]
            if op == "!=":
                checks.append(lambda l, k=key, v=value: l.get(k) != v)
            else:
                checks.append(lambda l, k=key, v=value: l.get(k) == v)
        elif m := _EXISTS_TERM.match(term):
            negate, key = m[1] == "!", m[2]
            checks.append(lambda l, k=key, n=negate: (k in l) != n)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_matcher(selector: str | None):
    """A predicate on an object for a field selector (``metadata.name=x,spec.a!=b``)."""
    if not selector:
        return lambda obj: True
    checks = []
    for term in split_terms(selector):
        m = _EQ_TERM.match(term)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
        path, op, value = m[1].split("."), m[2], m[3]

        def get(obj: dict, path=path) -> str:
            for part in path:
                obj = obj.get(part) if isinstance(obj, dict) else None
            return "" if obj is None else str(obj)

        if op == "!=":
            checks.append(lambda o, g=get, v=value: g(o) != v)
        else:
            checks.append(lambda o, g=get, v=value: g(o) == v)
    return lambda obj: all(check(obj) for check in checks)


# --- the server ----------------------------------------------------------------------------


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator with the Kubernetes semantics listed in the module docstring."""

    _revision: int = attrs.field(default=0, init=False)
    # Per resource: every change as (resourceVersion, type, object, previous object).
    _log: dict = attrs.field(factory=lambda: defaultdict(list), init=False)
    # Per resource: the queues of the watches in progress.
    _watchers: dict = attrs.field(factory=lambda: defaultdict(set), init=False)
    # (resource, namespace, name, subresource, field manager) -> last applied configuration.
    _applied: dict = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()  # discovery of the built-in resources (a recent k3s)
        for name in INITIAL_NAMESPACES:
            self._store_new(kmock.resource("", "v1", "namespaces"), None, {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
            })

    async def _serve_server_version(self, request: rendering.Request) -> dict:
        return SERVER_VERSION

    async def _serve_version(self, request: rendering.Request) -> dict:
        """``/api/v1``, ``/apis/<group>/<version>`` from kmock's resource descriptions, with
        subresources listed as a real server does: kmock gives them their parent's short names
        and categories, which makes every short name ambiguous to kubectl."""
        parts = [p for p in request.url.path.split("/") if p]
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        entries = []
        for resource, info in sorted(self.resources.items(), key=lambda item: item[0].plural):
            if (resource.group, resource.version) != (group, version):
                continue
            entries.append({
                "name": resource.plural, "singularName": info.singular or info.kind.lower(),
                "namespaced": bool(info.namespaced), "kind": info.kind, "verbs": sorted(info.verbs),
                "shortNames": sorted(info.shortnames), "categories": sorted(info.categories),
            })
            for sub in sorted(info.subresources):
                entries.append({
                    "name": f"{resource.plural}/{sub}", "singularName": "", "namespaced": bool(info.namespaced),
                    "kind": "Scale" if sub == "scale" else info.kind, "verbs": ["get", "patch", "update"],
                } | ({"group": "autoscaling", "version": "v1"} if sub == "scale" else {}))
        if not entries and group:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": entries}

    # --- dispatch ---

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        try:
            parts = [p for p in request.url.path.split("/") if p]
            if parts == ["openapi", "v2"]:
                # kubectl's validation loads the OpenAPI v2 document (protobuf) first; an empty
                # one parses as a document without schemas, so kubectl skips client-side
                # validation. There is no /openapi/v3: kubectl falls back to v2 without it.
                return aiohttp.web.Response(body=b"", headers={
                    "Content-Type": "application/octet-stream"})
            if (len(parts) == 2 and parts[0] == "api") or (len(parts) == 3 and parts[0] == "apis"):
                return self._json(await self._serve_version(request))
            target = self._target(request)
            if target is None:  # discovery, /version, /openapi/...: kmock's scaffold
                return await kmock.RawHandler._handle(self, request)
            return await self._serve(request, *target)
        except ApiError as error:
            return aiohttp.web.json_response(error.status(), status=error.code)

    def _target(self, request: rendering.Request):
        """(resource, info, namespace, name, subresource) of a resource request, else None."""
        parts = [p for p in request.url.path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None  # .../namespaces/<ns>/<plural>/... but also .../namespaces/<ns>[/status]
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest:
            return None
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, "/".join(rest[2:]) or None
        resource = kmock.resource(group, version, plural)
        if resource not in self.resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        info = self.resources[resource]
        if info.namespaced and namespace is None and name is not None:
            raise ApiError(404, "NotFound", f"{plural} is namespaced: give its namespace")
        if not info.namespaced:
            namespace = None
        if sub is not None and sub not in info.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return resource, info, namespace, name, sub

    async def _serve(self, request, resource, info, namespace, name, sub):
        method = request.method.value if hasattr(request.method, "value") else str(request.method)
        params = request.params
        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self._watch(request, resource, info, namespace, name)
        async with self._lock:
            if method == "GET" and name is None:
                return self._json(self._list(resource, info, namespace, params))
            if method == "GET":
                return self._json(self._get(resource, namespace, name))
            if method == "POST" and name is None:
                return self._json(self._create(request, resource, info, namespace), 201)
            if method == "PUT" and name is not None:
                return self._json(self._replace(request, resource, info, namespace, name, sub))
            if method == "PATCH" and name is not None:
                return self._json(*self._patch(request, resource, info, namespace, name, sub))
            if method == "DELETE" and name is not None:
                return self._json(self._delete(request, resource, namespace, name))
            if method == "DELETE":
                return self._json(self._delete_collection(request, resource, info, namespace))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {request.url.path}")

    @staticmethod
    def _json(body: dict, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.json_response(body, status=status)

    # --- storage ---

    def _current(self, resource, namespace, name) -> dict | None:
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _get(self, resource, namespace, name) -> dict:
        obj = self._current(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _emit(self, resource, type_: str, obj: dict, previous: dict | None) -> None:
        entry = (int(obj["metadata"]["resourceVersion"]), type_, obj, previous)
        self._log[resource].append(entry)
        for queue in self._watchers[resource]:
            queue.put_nowait(entry)

    def _store_new(self, resource, namespace, obj: dict) -> dict:
        info = self.resources[resource]
        meta = obj.setdefault("metadata", {})
        meta.update({
            "uid": str(uuid.uuid4()),
            "creationTimestamp": now(),
            "generation": 1,
            "resourceVersion": self._next_revision(),
        })
        if namespace is not None:
            meta["namespace"] = namespace
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(key, None)
        obj["apiVersion"] = f"{resource.group}/{resource.version}" if resource.group else resource.version
        obj["kind"] = info.kind
        key = (resource, namespace, meta["name"])
        if key in self.objects:
            self.objects[key].create(obj)  # continues the history of a deleted namesake
        else:
            self.objects[key] = obj
        self._emit(resource, "ADDED", obj, None)
        self._on_changed(resource, None, obj)
        return obj

    def _store_update(self, resource, namespace, old: dict, new: dict) -> dict:
        """Stores a new version unless nothing changed; bumps generation on spec changes."""
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for key in ("uid", "creationTimestamp", "name", "namespace", "generation",
                    "resourceVersion", "deletionTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta.pop("managedFields", None)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if new == old:
            return old
        spec = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}
        if spec(new) != spec(old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        meta["resourceVersion"] = self._next_revision()
        key = (resource, namespace, meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects[key].delete()
            self._emit(resource, "DELETED", new, old)
            self._on_changed(resource, old, None)
            self._collect_dependents(meta["uid"])
            return new
        self.objects[key].history.append(new)
        self._emit(resource, "MODIFIED", new, old)
        self._on_changed(resource, old, new)
        return new

    def _remove(self, resource, namespace, name) -> dict:
        old = self._get(resource, namespace, name)
        meta = old["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now()
            new["metadata"]["resourceVersion"] = self._next_revision()
            self.objects[(resource, namespace, name)].history.append(new)
            self._emit(resource, "MODIFIED", new, old)
            return new
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = self._next_revision()
        self.objects[(resource, namespace, name)].delete()
        self._applied = {k: v for k, v in self._applied.items() if k[:3] != (resource, namespace, name)}
        self._emit(resource, "DELETED", gone, old)
        self._on_changed(resource, old, None)
        self._collect_dependents(meta["uid"])
        if (resource.group, resource.plural) == ("", "namespaces"):  # a namespace takes its objects
            for (res, ns, obj_name), obj in list(self.objects.items()):
                if ns == name and not obj.deleted:
                    self._remove(res, ns, obj_name)
        return gone

    def _collect_dependents(self, uid: str) -> None:
        """Garbage collection: delete every object an ownerReference ties to a deleted owner."""
        for (resource, namespace, name), obj in list(self.objects.items()):
            if obj.deleted:
                continue
            refs = obj.raw["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == uid for ref in refs):
                self._remove(resource, namespace, name)

    def _on_changed(self, resource, old: dict | None, new: dict | None) -> None:
        """CustomResourceDefinitions serve (or stop serving) their resources."""
        if (resource.group, resource.plural) != ("apiextensions.k8s.io", "customresourcedefinitions"):
            return
        for crd in (old, new):
            if crd is None:
                continue
            spec = crd.get("spec", {})
            for version in spec.get("versions", []):
                served = kmock.resource(spec["group"], version["name"], spec["names"]["plural"])
                if served in self.resources:
                    del self.resources[served]
        if new is None:
            for key, obj in list(self.objects.items()):
                if (key[0].group, key[0].plural) == (old["spec"]["group"], old["spec"]["names"]["plural"]):
                    del self.objects[key]
            return
        spec, names = new["spec"], new["spec"]["names"]
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            self.resources[kmock.resource(spec["group"], version["name"], names["plural"])] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                shortnames=names.get("shortNames", []),
                categories=names.get("categories", []),
                subresources=list(version.get("subresources", {}) or {}),
                verbs=["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            )
        if not any(c.get("type") == "Established" for c in new.get("status", {}).get("conditions", [])):
            established = copy.deepcopy(new)
            established["status"] = {
                "acceptedNames": names,
                "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now()}
                    for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"))
                ],
            }
            self._store_update(resource, None, new, established)

    # --- verbs ---

    @staticmethod
    def _body(request: rendering.Request) -> Any:
        if "protobuf" in request.headers.get("Content-Type", ""):
            # kubectl's typed commands (`kubectl create namespace`, `create configmap`, ...) send
            # built-in objects as protobuf; `kubectl apply` and `patch` send JSON.
            raise ApiError(415, "UnsupportedMediaType",
                           "the emulator reads JSON bodies only, not protobuf: use kubectl apply")
        if isinstance(request.data, (dict, list)):
            return copy.deepcopy(request.data)
        if request.text.strip() and yaml is not None:
            try:
                return yaml.safe_load(request.text)
            except yaml.YAMLError as error:
                raise ApiError(400, "BadRequest", f"invalid body: {error}")
        raise ApiError(400, "BadRequest", "the request has no (JSON) body")

    @staticmethod
    def _dry_run(request: rendering.Request) -> bool:
        return "dryRun" in request.params

    def _check_namespace(self, info, namespace, obj: dict) -> str | None:
        body_namespace = obj.get("metadata", {}).get("namespace")
        if not info.namespaced:
            return None
        if namespace and body_namespace and body_namespace != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the object does not match the namespace of the request")
        if not namespace:
            raise ApiError(404, "NotFound", "a namespaced resource needs a namespace in its path")
        return namespace

    def _create(self, request, resource, info, namespace) -> dict:
        obj = self._body(request)
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body must be an object")
        namespace = self._check_namespace(info, namespace, obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        if self._current(resource, namespace, meta["name"]) is not None:
            raise ApiError(409, "AlreadyExists", f'{resource.plural}.{resource.group or "core"} "{meta["name"]}" already exists',
                           {"name": meta["name"], "group": resource.group, "kind": resource.plural})
        if "status" in info.subresources and resource.plural != "customresourcedefinitions":
            obj.pop("status", None)
        if self._dry_run(request):
            return obj
        return self._store_new(resource, namespace, obj)

    def _check_version(self, old: dict, obj: dict) -> None:
        wanted = obj.get("metadata", {}).get("resourceVersion")
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on "{old["metadata"]["name"]}": the object has been modified; '
                           "please apply your changes to the latest version and try again",
                           {"name": old["metadata"]["name"]})

    def _finish(self, resource, info, namespace, old: dict, merged: dict, sub: str | None, request) -> dict:
        """Keeps what the (sub)resource written does not own, then stores."""
        merged = copy.deepcopy(merged)
        if sub == "status":
            new = copy.deepcopy(old)
            if "status" in merged:
                new["status"] = merged["status"]
            else:
                new.pop("status", None)
        elif sub is not None:
            raise ApiError(405, "MethodNotAllowed", f"writing subresource {sub} is not supported")
        else:
            new = merged
            if "status" in info.subresources:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
        if self._dry_run(request):
            return new
        return self._store_update(resource, namespace, old, new)

    def _replace(self, request, resource, info, namespace, name, sub) -> dict:
        obj = self._body(request)
        self._check_namespace(info, namespace, obj)
        old = self._get(resource, namespace, name)
        if obj.get("metadata", {}).get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name in the path")
        self._check_version(old, obj)
        return self._finish(resource, info, namespace, old, obj, sub, request)

    def _patch(self, request, resource, info, namespace, name, sub) -> tuple[dict, int]:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        body = self._body(request)
        old = self._current(resource, namespace, name)
        if content_type == "application/apply-patch+yaml":
            manager = request.params.get("fieldManager")
            if not manager:
                raise ApiError(400, "BadRequest", "fieldManager is required for apply requests")
            if body.get("metadata", {}).get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the name in the path")
            key = (resource, namespace, name, sub, manager)
            if old is None:
                if sub is not None:
                    raise not_found(resource, name)
                body.setdefault("metadata", {})["name"] = name
                namespace = self._check_namespace(info, namespace, body)
                if "status" in info.subresources:
                    body.pop("status", None)
                created = body if self._dry_run(request) else self._store_new(resource, namespace, copy.deepcopy(body))
                if not self._dry_run(request):
                    self._applied[key] = body
                return created, 201
            self._check_version(old, body)
            merged = apply_merge(old, self._applied.get(key), body)
            result = self._finish(resource, info, namespace, old, merged, sub, request)
            if not self._dry_run(request):
                self._applied[key] = body
            return result, 200
        if old is None:
            raise not_found(resource, name)
        if content_type == "application/json-patch+json":
            try:
                merged = jsonpatch.apply_patch(old, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                raise ApiError(422, "Invalid", f"the JSON patch does not apply: {error}")
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if content_type.startswith("application/strategic"):
                body = strip_directives(body)
            self._check_version(old, body)
            merged = merge_patch(old, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the patch type {content_type!r} is not supported")
        return self._finish(resource, info, namespace, old, merged, sub, request), 200

    def _delete(self, request, resource, namespace, name) -> dict:
        old = self._get(resource, namespace, name)
        options = request.data if isinstance(request.data, dict) else {}
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != old["metadata"].get(field):
                raise ApiError(409, "Conflict", f"Precondition failed: {field} in precondition: "
                               f"{preconditions[field]}, {field} in object meta: {old['metadata'].get(field)}")
        if self._dry_run(request):
            return old
        return self._remove(resource, namespace, name)

    def _select(self, resource, namespace, params) -> list[dict]:
        labels, fields = label_matcher(params.get("labelSelector")), field_matcher(params.get("fieldSelector"))
        return [
            obj.raw for (res, ns, _), obj in self.objects.items()
            if res == resource and not obj.deleted and (namespace is None or ns == namespace)
            and labels(obj.raw["metadata"].get("labels") or {}) and fields(obj.raw)
        ]

    def _list(self, resource, info, namespace, params) -> dict:
        items = self._select(resource, namespace, params)
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return {
            "apiVersion": f"{resource.group}/{resource.version}" if resource.group else resource.version,
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    def _delete_collection(self, request, resource, info, namespace) -> dict:
        items = self._select(resource, namespace, request.params)
        if not self._dry_run(request):
            for obj in items:
                self._remove(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        return self._list(resource, info, namespace, {}) | {"items": items}

    async def _watch(self, request, resource, info, namespace, name) -> aiohttp.web.StreamResponse:
        params = dict(request.params)
        if name is not None:  # the deprecated GET .../<name>?watch=true
            params["fieldSelector"] = ",".join(filter(None, [params.get("fieldSelector"), f"metadata.name={name}"]))
        labels, fields = label_matcher(params.get("labelSelector")), field_matcher(params.get("fieldSelector"))

        def matches(obj: dict | None) -> bool:
            return (obj is not None and (namespace is None or obj["metadata"].get("namespace") == namespace)
                    and labels(obj["metadata"].get("labels") or {}) and fields(obj))

        def translate(entry) -> dict | None:
            _, type_, obj, previous = entry
            now_, before = matches(obj) and type_ != "DELETED", matches(previous)
            if type_ == "DELETED":
                return {"type": "DELETED", "object": obj} if before or matches(obj) else None
            if now_ and not before:
                return {"type": "ADDED", "object": obj}
            if before and not now_:
                return {"type": "DELETED", "object": obj}
            return {"type": type_, "object": obj} if now_ else None

        timeout = float(params.get("timeoutSeconds") or 1800)
        since = params.get("resourceVersion") or "0"
        initial = params.get("sendInitialEvents") == "true"
        queue: asyncio.Queue = asyncio.Queue()
        async with self._lock:
            self._watchers[resource].add(queue)
            if since == "0" or initial:
                backlog = [{"type": "ADDED", "object": obj} for obj in self._select(resource, namespace, params)]
                if initial:
                    backlog.append({"type": "BOOKMARK", "object": {
                        "apiVersion": f"{resource.group}/{resource.version}" if resource.group else resource.version,
                        "kind": info.kind,
                        "metadata": {"resourceVersion": str(self._revision),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}})
            else:
                backlog = [e for entry in self._log[resource] if entry[0] > int(since) and (e := translate(entry))]

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        raw = request._raw_request
        try:
            await response.prepare(raw)
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                if raw.transport is None or raw.transport.is_closing():
                    break
                try:
                    entry = await asyncio.wait_for(queue.get(), timeout=min(left, 2.0))
                except asyncio.TimeoutError:
                    continue
                if event := translate(entry):
                    await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watchers[resource].discard(queue)
        return response


# --- running it ----------------------------------------------------------------------------


def kubeconfig(url: str) -> str:
    """A kubeconfig for the emulator (plain http; the token is accepted and ignored)."""
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "kmock", "user": {"token": "kmock"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}],
        "current-context": "kmock",
    }, indent=2)


async def serve(kubeconfig_path: pathlib.Path | None, port: int, ready=None) -> None:
    async with ApiServer() as handler, kmock.Server(handler, port=port or None) as server:
        url = f"http://{server.host}:{server.port}"
        if kubeconfig_path is not None:
            kubeconfig_path.write_text(kubeconfig(url))
        print(f"serving {url}", flush=True)
        if ready is not None:
            ready(handler, url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


@contextlib.contextmanager
def running(directory: pathlib.Path, timeout: float = 30):
    """Runs the emulator in a child process (output in ``directory/apiserver.log``) until the
    block ends; yields the path of its kubeconfig."""
    path, log = directory / "kubeconfig", directory / "apiserver.log"
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, __file__, "--kubeconfig", str(path)],
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not log.read_text().startswith("serving "):  # printed once it listens
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API emulator did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield path
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="write a kubeconfig for the emulator here")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.kubeconfig, args.port))


if __name__ == "__main__":
    sys.exit(main())
