#!/usr/bin/env python3
"""The demo's script of real work, run by scripts/demo.sh once everything is up.

Through the public HTTP API only (standard library, no dependencies), with the admin key the
demo bootstrapped:

1. creates three connections to the simulator, one per API family (SAP OData v4 with OAuth2,
   Maximo OSLC with an API key, Oracle REST with basic auth), each syncing all four entities;
2. subscribes the demo's webhook receiver to every event type of the first connection;
3. asks for a full sync of every entity of every connection and waits for all of them;
4. changes, creates and deletes records in the simulator, asks for incremental syncs, waits,
   and shows that only the changes were read;
5. shows a connection's status, one stored record, the queues and the webhooks received
   (each verified by the official Standard Webhooks library).

Environment: DEMO_API (base URL), DEMO_KEY (admin key), DEMO_SIM (simulator base URL),
DEMO_EVENTS (the receiver's event file), DEMO_RECEIVER (the receiver's URL).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

API = os.environ["DEMO_API"]
KEY = os.environ["DEMO_KEY"]
SIM = os.environ["DEMO_SIM"]
EVENTS = os.environ["DEMO_EVENTS"]
RECEIVER = os.environ["DEMO_RECEIVER"]
ENTITIES = ["purchase_orders", "work_orders", "assets", "vendors"]


def call(method, url, body=None, key=KEY):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        text = err.read()
        return err.code, json.loads(text) if text else None


def api(method, path, body=None, expect=(200, 201, 202)):
    status, answer = call(method, API + path, body)
    if status not in expect:
        sys.exit(f"demo: {method} {path} answered {status}: {json.dumps(answer)}")
    return answer


def say(text=""):
    print(f"demo: {text}" if text else "", flush=True)


def connection_body(name, profile, credentials, settings=None):
    body = {
        "name": name,
        "profile": profile,
        "base_url": SIM,
        "credentials": credentials,
        "entities": [{"entity": entity, "interval_secs": 900} for entity in ENTITIES],
    }
    if settings:
        body["settings"] = settings
    return body


def wait_for_syncs(sync_ids, timeout=600):
    deadline = time.monotonic() + timeout
    pending = set(sync_ids)
    runs = {}
    while pending and time.monotonic() < deadline:
        for sync_id in list(pending):
            run = api("GET", f"/v1/syncs/{sync_id}")
            if run["status"] in ("succeeded", "failed", "cancelled"):
                runs[sync_id] = run
                pending.discard(sync_id)
        if pending:
            time.sleep(0.2)
    if pending:
        sys.exit(f"demo: {len(pending)} syncs did not finish in {timeout} s")
    return [runs[sync_id] for sync_id in sync_ids]


def seconds(run):
    from datetime import datetime

    def parse(text):
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(run["finished_at"]) - parse(run["started_at"])).total_seconds()


def table(runs, names):
    say(f"{'connection':<18} {'entity':<16} {'mode':<12} {'status':<10} "
        f"{'fetched':>8} {'written':>8} {'same':>6} {'deleted':>8} {'secs':>6}")
    for run in runs:
        counts = run["counts"]
        say(f"{names[run['connection_id']]:<18} {run['entity']:<16} {run['mode']:<12} "
            f"{run['status']:<10} {counts['records_fetched']:>8} {counts['records_written']:>8} "
            f"{counts['records_unchanged']:>6} {counts['records_deleted']:>8} "
            f"{seconds(run):>6.2f}")
        if run.get("error"):
            say(f"    error: {run['error']}")


def run_syncs(connections, mode):
    sync_ids = []
    for connection_id in connections:
        accepted = api("POST", f"/v1/connections/{connection_id}/syncs",
                       {"entities": ENTITIES, "mode": mode})
        sync_ids += [sync["sync_id"] for sync in accepted["syncs"]]
    started = time.monotonic()
    runs = wait_for_syncs(sync_ids)
    return runs, time.monotonic() - started


def main():
    names = {}
    connections = []
    for name, profile, credentials, settings in [
        ("SAP S/4 (OData v4)", "odata_v4",
         {"type": "oauth2_client_credentials", "token_url": f"{SIM}/oauth2/token",
          "client_id": "conveyor", "client_secret": "sim-client-secret"}, None),
        ("Maximo (OSLC)", "oslc",
         {"type": "api_key", "header": "apikey", "key": "sim-api-key"},
         {"utc_offset": "-04:00"}),
        ("Oracle (REST)", "offset_hasmore",
         {"type": "basic", "username": "conveyor", "password": "conveyor-sim"}, None),
    ]:
        created = api("POST", "/v1/connections",
                      connection_body(name, profile, credentials, settings))
        names[created["id"]] = name
        connections.append(created["id"])
        say(f"created connection {created['id']} ({name})")

    endpoint = api("POST", f"/v1/connections/{connections[0]}/webhooks", {
        "url": RECEIVER,
        "event_types": ["sync.completed", "sync.failed", "connection.auth_required",
                        "connection.status_changed", "system.error"],
        "description": "demo receiver",
    })
    with open(EVENTS + ".secret", "w") as secret:
        secret.write(endpoint["secret"])
    say(f"webhook endpoint {endpoint['id']} -> {RECEIVER} (secret shown once, kept by the receiver)")

    say()
    say(f"full syncs of {len(ENTITIES)} entities x {len(connections)} connections ...")
    runs, wall = run_syncs(connections, "full")
    table(runs, names)
    total = sum(run["counts"]["records_fetched"] for run in runs)
    say(f"{total} records in {wall:.1f} s ({total / wall:,.0f} records/s across the fleet)")

    say()
    say("changing the source: 25 updates, 5 new and 3 deleted records per entity ...")
    for entity in ENTITIES:
        status, _ = call("POST", f"{SIM}/admin/entities/{entity}/changes",
                         {"create": 5, "update": 25, "delete": 3}, key=None)
        if status != 200:
            sys.exit(f"demo: the simulator refused the changes ({status})")
    runs, wall = run_syncs(connections, "incremental")
    table(runs, names)
    say(f"incremental syncs read only the changes in {wall:.1f} s (SAP flags deletions, so they "
        f"arrive as changes; systems that drop records need the next full sync)")

    say()
    # SAP keeps deleted vendors with a deletion flag, so its incremental sync already stored
    # them as deleted; Maximo drops them, so only a full sync can notice they are gone.
    say(f"a full sync of vendors on {names[connections[1]]} (which drops deleted records) "
        f"finds the 3 deleted ones ...")
    accepted = api("POST", f"/v1/connections/{connections[1]}/syncs",
                   {"entities": ["vendors"], "mode": "full"})
    table(wait_for_syncs([sync["sync_id"] for sync in accepted["syncs"]]), names)

    say()
    status = api("GET", f"/v1/connections/{connections[0]}/status")
    say(f"status of {names[connections[0]]}: {status['status']}, "
        f"last success {status.get('last_success_at')}")
    for entity, at in sorted((status.get("data_as_of") or {}).items()):
        say(f"    {entity:<16} data as of {at}")
    page = api("GET", f"/v1/connections/{connections[0]}/records/work_orders?limit=1")
    if page["items"]:
        record = page["items"][0]
        shown = {name: value for name, value in record.items() if name != "raw"}
        say(f"one stored work order (unified fields; the raw source record is kept too): "
            f"{json.dumps(shown)[:400]}")
    queues = api("GET", "/v1/queues")
    say(f"queues: {json.dumps(queues)[:400]}")

    deadline = time.monotonic() + 30
    expected = len(ENTITIES) * 2
    lines = []
    while time.monotonic() < deadline:
        try:
            with open(EVENTS) as events:
                lines = [json.loads(line) for line in events if line.strip()]
        except FileNotFoundError:
            lines = []
        if len(lines) >= expected:
            break
        time.sleep(0.2)
    verified = sum(1 for line in lines if line["verified"])
    say(f"webhooks received by the demo receiver: {len(lines)} ({verified} verified with the "
        f"official Standard Webhooks library)")
    for line in lines[:10]:
        data = line.get("data") or {}
        say(f"    #{line['sequence']} {line['type']:<26} {data.get('entity', '')} "
            f"{data.get('mode', '')} {line['webhook_id']}")
    if len(lines) < expected or verified != len(lines):
        sys.exit(f"demo: expected {expected} verified webhooks, got {verified} of {len(lines)}")


if __name__ == "__main__":
    main()
