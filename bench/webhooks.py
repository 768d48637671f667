"""`tradedesk bench webhooks`: signed Stripe events over HTTP, 16 at a time, 30% of them duplicates, applied once.

The real webhook app (`webhooks.app.create_app` with a `StripeGateway`, served by `web.AppRunner` on 127.0.0.1 as
`tradedesk run` serves it, access log off) receives `POST /stripe/webhook` from 16 concurrent keep-alive aiohttp
clients. Each request carries an event serialised as Stripe sends it (pretty-printed JSON) and a `Stripe-Signature`
computed at send time. The webhook verifies it, re-fetches the subscription from a local Stripe stub
(`bench.fake_stripe.FakeStripe`, through stripe-python's `StripeClient` exactly as in production) and applies the event
in one system_scope transaction (core/billing/service.py). Goal: >= 500 requests/s with p99 <= 50 ms.

Processes: the sender and the Stripe stub run in a second process (spawned), as Stripe is another machine in
production; this process runs only the webhook app (and the baseline's), Postgres runs its own backends. Both share
this machine's cores with whatever else runs on it: the load average is recorded before and after.

Data: N users (`resolve_identity`), each with an active Pro subscription registered in the stub whose metadata names
the user (what Checkout's `subscription_data[metadata]` sets). Warm-up: one `customer.subscription.created` per user
through the webhook, which links the customer and turns Pro on (one "Welcome to Pro" DM each). Then rounds of
`customer.subscription.updated` (40%), `invoice.paid` (40%) and `invoice.payment_failed` (20%), each with its own
event id. In every round's send list 30% of the requests are repeats of an event of that round: a third of them
within 16 places of their original (so usually in flight at the same time: the second waits on the event id's
primary key), the rest up to 2,000 places later. Stripe does both (retries and concurrent deliveries).

events_per_s counts every request answered, duplicates included, over the wall time of the measured rounds
(`distinct_events_per_s` counts each event once). Latency is measured by the sender, from before the POST to the
end of the answer's body.

The baseline, in the same run: the same requests (same bytes, same order, same 16 senders, signed the same way) to a
trivial aiohttp endpoint in this process that only verifies the signature and answers 200: the floor of HTTP and
the signature. `ratio = events_per_s / baseline_events_per_s`. Rounds alternate (real then baseline, then baseline
then real, ...) so drift hits both.

Exactly once, checked afterwards: every answer 200; each event answered "applied" exactly once and "duplicate"
otherwise; stripe_events holds exactly the distinct events, all 'applied'; the outbox holds exactly one
"payment_failed" DM per invoice.payment_failed event and one "upgraded" DM per user, and nothing else from Stripe;
one active Pro subscription row per user. `double_applied` counts events answered "applied" more than once plus
DMs beyond those expected; `lost` counts events never applied or missing from stripe_events; `exactly_once` is all
of these checks, and `goal_met` needs it.

Where the time goes (`cpu_ms_per_request`: CPU seconds of each process over the measured rounds, per request) and
the database pool: the app's defaults (`Database(url)`: 10 connections + 10 overflow), as `tradedesk run` deploys it.
At concurrency 16 the pool's overflow connections are opened and closed again and again (SQLAlchemy's QueuePool
closes an overflow connection at check-in); `db_sessions` (pg_stat_database.sessions) counts the connections made.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import psutil
import stripe
from aiohttp import web

from app.stripe_gateway import StripeGateway
from bench import BenchResult
from bench import fake_stripe as fs
from bench.cluster import run_async, throwaway_cluster
from bench.serve import serve
from bench.stats import p50, p99, r
from core.config import Settings
from core.db.database import Database
from core.db.identity import resolve_identity
from core.db.roles import SCHEMA
from webhooks.app import create_app

SEED = 20261125
CONCURRENCY = 16
DUPLICATE_SHARE = 0.30
NEAR = 16  # a repeat within this many places of its original is usually in flight with it
FAR = 2_000
GOAL_EVENTS_PER_S = 500
GOAL_P99_MS = 50.0
WEBHOOK_SECRET = "whsec_bench_webhooks"
API_KEY = "sk_test_bench_webhooks"
PRICE_PRO = "price_bench_pro"
MIX = (("customer.subscription.updated", 4), ("invoice.paid", 4), ("invoice.payment_failed", 2))
PATH = "/stripe/webhook"


# ------------------------------------------------------------------------------------------- the events


class Plan:
    """The events of a run: per round, the distinct events (bytes as Stripe sends them) and the send order."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []  # every distinct event, warm-up first
        self.ids: list[str] = []
        self.types: list[str] = []
        self.warmup: list[int] = []  # indexes into payloads, in send order
        self.rounds: list[list[int]] = []  # per round, indexes in send order (repeats included)

    def add(self, evt: dict[str, Any]) -> int:
        payload, _ = fs.signed(evt, WEBHOOK_SECRET, 0)  # the bytes only: the sender signs at send time
        self.payloads.append(payload)
        self.ids.append(str(evt["id"]))
        self.types.append(str(evt["type"]))
        return len(self.payloads) - 1


def _send_order(first: int, distinct: int, requests: int, rng: random.Random) -> list[int]:
    """`distinct` events numbered from `first`, each once in order, with `requests - distinct` repeats mixed in."""
    keyed = [(float(i), first + i) for i in range(distinct)]
    for _ in range(requests - distinct):
        original = rng.randrange(distinct)
        offset = rng.uniform(1, NEAR) if rng.random() < 1 / 3 else rng.uniform(NEAR, FAR)
        keyed.append((original + offset, first + original))
    keyed.sort()
    return [i for _, i in keyed]


def make_plan(subs: list[dict[str, Any]], rounds: int, per_round: int) -> Plan:
    rng = random.Random(SEED)
    plan = Plan()
    for sub in subs:
        plan.warmup.append(plan.add(fs.subscription_created(sub)))
    kinds = [k for k, w in MIX for _ in range(w)]
    distinct = round(per_round * (1 - DUPLICATE_SHARE))
    for _ in range(rounds):
        first = len(plan.payloads)
        for _ in range(distinct):
            sub = rng.choice(subs)
            kind = rng.choice(kinds)
            if kind == "customer.subscription.updated":
                evt = fs.subscription_updated(sub, {"cancel_at_period_end": True})
            elif kind == "invoice.paid":
                evt = fs.invoice_paid(fs.invoice(sub, billing_reason="subscription_cycle"))
            else:
                inv = fs.invoice(sub, status="open", billing_reason="subscription_cycle")
                evt = fs.invoice_payment_failed(inv)
            plan.add(evt)
        plan.rounds.append(_send_order(first, distinct, per_round, rng))
    return plan


# ------------------------------------------------------------------- the sender and the stub (other process)


async def _send(url: str, payloads: list[bytes], order: list[int]) -> dict[str, Any]:
    """POST payloads[i] for i in order from CONCURRENCY keep-alive clients; per request: latency, status, outcome."""
    latency = [0] * len(order)
    status = [0] * len(order)
    outcome = [""] * len(order)
    position = iter(range(len(order)))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for k in position:
                payload = payloads[order[k]]
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": fs.sign(payload, WEBHOOK_SECRET),
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                }
                t0 = time.perf_counter_ns()
                async with session.post(url, data=payload, headers=headers) as resp:
                    body = await resp.read()
                latency[k] = time.perf_counter_ns() - t0
                status[k] = resp.status
                outcome[k] = body.decode("utf-8", "replace")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - started
    return {"latency_ns": latency, "status": status, "outcome": outcome, "wall_s": wall}


async def _sender_main(conn: Connection, subs: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    async with fs.FakeStripe(api_key=API_KEY) as fake:
        fake.add_price(PRICE_PRO)
        for sub in subs:
            fake.add_subscription(sub)
        conn.send(fake.port)
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message == "stop":
                conn.send({"stub_requests": len(fake.requests)})
                return
            url, payloads, order = message
            conn.send(await _send(url, payloads, order))
            fake.requests.clear()  # the stub records every request; nothing here reads them


def _sender(conn: Connection, subs: list[dict[str, Any]]) -> None:
    asyncio.run(_sender_main(conn, subs))


class Sender:
    """The spawned process holding the Stripe stub and the 16 senders."""

    def __init__(self, subs: list[dict[str, Any]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_sender, args=(child, subs), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("bench webhooks: the sender process did not start")
        self.stub_port: int = self._conn.recv()
        assert self._proc.pid is not None
        self.pid: int = self._proc.pid

    async def send(self, url: str, plan: Plan, order: list[int]) -> dict[str, Any]:
        # The payloads travel once per call (pickled bytes: a memcpy); only those this order sends.
        used = sorted(set(order))
        local = {i: n for n, i in enumerate(used)}
        message = (url, [plan.payloads[i] for i in used], [local[i] for i in order])
        self._conn.send(message)
        answer: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)
        return answer

    def stop(self) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(10):
                self._conn.recv()
        except (OSError, EOFError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


# ------------------------------------------------------------------------------------ the servers (here)


async def _baseline_webhook(request: web.Request) -> web.Response:
    """The floor: read the body, verify the signature exactly as the webhook does, answer 200."""
    raw = await request.read()
    try:
        stripe.WebhookSignature.verify_header(
            raw.decode("utf-8"), request.headers.get("Stripe-Signature", ""), WEBHOOK_SECRET, 300
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        return web.json_response({"error": "invalid signature"}, status=400)
    return web.json_response({"status": "ok"})


# ---------------------------------------------------------------------------------------- where the CPU goes


class CpuMeter:
    """CPU seconds (user + system) of this process (the webhook app), the sender process (senders and Stripe
    stub) and the Postgres cluster (postmaster and backends), accumulated per phase."""

    GROUPS = ("webhook_app", "sender_and_stub", "postgres")

    def __init__(self, sender_pid: int, workdir: str) -> None:
        self.sender = psutil.Process(sender_pid)
        self.postmaster = next(
            p for p in psutil.process_iter(["cmdline"]) if any(workdir in a for a in p.info["cmdline"] or [])
        )
        self.totals: dict[str, dict[str, float]] = {}

    def _now(self) -> dict[str, float]:
        def cpu(procs: list[psutil.Process]) -> float:
            total = 0.0
            for proc in procs:
                try:
                    t = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += t.user + t.system
            return total

        # Backends that exited (the pool's overflow connections close) live on in the postmaster's children_* times.
        reaped = self.postmaster.cpu_times()
        postgres = cpu([self.postmaster, *self.postmaster.children()]) + reaped.children_user + reaped.children_system
        return {"webhook_app": cpu([psutil.Process()]), "sender_and_stub": cpu([self.sender]), "postgres": postgres}

    def start(self) -> dict[str, float]:
        return self._now()

    def stop(self, phase: str, before: dict[str, float]) -> None:
        after = self._now()
        total = self.totals.setdefault(phase, dict.fromkeys(self.GROUPS, 0.0))
        for group in self.GROUPS:
            total[group] += after[group] - before[group]

    def per_request_ms(self, phase: str, requests: int) -> dict[str, float]:
        return {group: round(1000 * s / requests, 3) for group, s in self.totals[phase].items()}


# ------------------------------------------------------------------------------------------- checking


class Tally:
    def __init__(self) -> None:
        self.applied: Counter[int] = Counter()
        self.statuses: Counter[int] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unexpected: list[str] = []

    def add(self, order: list[int], answer: dict[str, Any]) -> None:
        for i, status, body in zip(order, answer["status"], answer["outcome"], strict=True):
            self.statuses[status] += 1
            outcome = str(json.loads(body).get("status")) if status == 200 else f"HTTP {status}"
            self.outcomes[outcome] += 1
            if outcome == "applied":
                self.applied[i] += 1
            elif outcome != "duplicate" and len(self.unexpected) < 5:
                self.unexpected.append(f"{outcome}: {body[:200]}")


async def _verify(superuser_url: str, plan: Plan, users: list[UUID], tally: Tally) -> dict[str, int]:
    conn = await asyncpg.connect(superuser_url, server_settings={"search_path": SCHEMA})
    try:
        events = await conn.fetch("SELECT id, status FROM stripe_events")
        dms = await conn.fetch("SELECT user_id, dedupe_key FROM notifications WHERE dedupe_key LIKE 'stripe:%'")
        subs = await conn.fetch("SELECT user_id, status, plan FROM subscriptions")
        sessions = await conn.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
    finally:
        await conn.close()
    sent = set(plan.ids)
    in_db = Counter(str(e["id"]) for e in events)
    applied_rows = {str(e["id"]) for e in events if e["status"] == "applied"}
    expected_dms = {f"stripe:{plan.ids[i]}:upgraded" for i in plan.warmup} | {
        f"stripe:{evt}:payment_failed"
        for evt, kind in zip(plan.ids, plan.types, strict=True)
        if kind == "invoice.payment_failed"
    }
    dm_keys = Counter(str(d["dedupe_key"]) for d in dms)
    twice_answered = sum(1 for n in tally.applied.values() if n > 1)
    extra_dms = sum(n - 1 for n in dm_keys.values() if n > 1) + sum(
        n for key, n in dm_keys.items() if key not in expected_dms
    )
    subs_ok = sum(1 for s in subs if s["status"] == "active" and s["plan"] == "pro")
    return {
        "double_applied": twice_answered + extra_dms,
        "answered_applied_twice": twice_answered,
        "extra_dms": extra_dms,
        "lost": sum(1 for i in range(len(plan.ids)) if tally.applied[i] == 0) + len(sent - applied_rows),
        "stripe_events_rows": len(events),
        "stripe_events_not_sent": len(set(in_db) - sent),
        "dms": len(dms),
        "dms_expected": len(expected_dms),
        "dms_missing": len(expected_dms - set(dm_keys)),
        "subscriptions_active": subs_ok,
        "subscriptions_rows": len(subs),
        "users": len(users),
        "db_sessions": int(sessions),  # connections opened over the run: the pool's, and its overflow churn
    }


# ------------------------------------------------------------------------------------------- the run


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def _users(db: Database, n: int) -> list[UUID]:
    return [await resolve_identity(db, console_handle=f"bench-webhooks-{i}") for i in range(n)]


async def _run(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    n_users = 100 if quick else 500
    rounds = 2 if quick else 4
    per_round = 600 if quick else 3_000
    started = time.perf_counter()
    load_before = _loadavg()

    async with throwaway_cluster(settings, "webhooks", progress) as cluster:
        db = Database(cluster.app_url, application_name="tradedesk-bench")  # the app's own pool sizes, as deployed
        sender: Sender | None = None
        runners: list[web.AppRunner] = []
        gateway: StripeGateway | None = None
        try:
            progress(f"creating {n_users} users with a Pro subscription each")
            users = await _users(db, n_users)
            subs = [
                fs.subscription(
                    customer=fs.new_id("cus", 14), prices=[fs.price(PRICE_PRO)], metadata={"user_id": str(u)}
                )
                for u in users
            ]
            plan = make_plan(subs, rounds, per_round)
            progress("starting the sender and the Stripe stub (another process), and the webhook apps")
            sender = Sender(subs)
            gateway = StripeGateway(
                API_KEY,
                price_pro=PRICE_PRO,
                price_pro_metered=None,
                meter_event=None,
                api_base=f"http://127.0.0.1:{sender.stub_port}",
                max_network_retries=0,
            )
            app = create_app(settings, database=db, version="bench", billing=gateway, webhook_secret=WEBHOOK_SECRET)
            served = await serve(app)
            runner, url = served.runner, served.base_url + PATH
            runners.append(runner)
            floor = web.Application()
            floor.router.add_post(PATH, _baseline_webhook)
            served = await serve(floor)
            floor_runner, floor_url = served.runner, served.base_url + PATH
            runners.append(floor_runner)
            meter = CpuMeter(sender.pid, str(cluster.workdir))
            pool = db.engine.pool.status()  # e.g. "Pool size: 10  Connections in pool: 1 Current Overflow: -9 ..."

            tally = Tally()
            progress(f"warming up: {len(plan.warmup)} customer.subscription.created (one per user), and the baseline")
            tally.add(plan.warmup, await sender.send(url, plan, plan.warmup))
            await sender.send(floor_url, plan, plan.warmup)

            real_ns: list[int] = []
            floor_ns: list[int] = []
            real_s = floor_s = 0.0
            floor_bad = 0
            for k, order in enumerate(plan.rounds):
                phases = ["real", "baseline"] if k % 2 == 0 else ["baseline", "real"]
                for phase in phases:
                    before = meter.start()
                    answer = await sender.send(url if phase == "real" else floor_url, plan, order)
                    meter.stop(phase, before)
                    if phase == "real":
                        tally.add(order, answer)
                        real_ns += answer["latency_ns"]
                        real_s += answer["wall_s"]
                    else:
                        floor_ns += answer["latency_ns"]
                        floor_s += answer["wall_s"]
                        floor_bad += sum(1 for s in answer["status"] if s != 200)
                    progress(
                        f"round {k + 1}/{rounds}: {len(order):,} {phase} requests from {CONCURRENCY} senders,"
                        f" {len(order) / answer['wall_s']:,.0f}/s, p99 {p99(answer['latency_ns']):.1f} ms"
                    )
        finally:
            for runner in reversed(runners):
                await runner.cleanup()
            if gateway is not None:
                await gateway.close()
            if sender is not None:
                sender.stop()
            await db.dispose()

        progress("checking exactly-once effects")
        checks = await _verify(cluster.superuser_url, plan, users, tally)
    load_after = _loadavg()

    requests = len(real_ns)
    distinct = sum(len(set(order)) for order in plan.rounds)
    events_per_s = requests / real_s
    floor_per_s = len(floor_ns) / floor_s
    non_200 = sum(n for s, n in tally.statuses.items() if s != 200)
    exact = (
        checks["double_applied"] == 0
        and checks["lost"] == 0
        and non_200 == 0
        and not tally.unexpected
        and checks["dms_missing"] == 0
        and checks["stripe_events_not_sent"] == 0
        and checks["subscriptions_active"] == checks["subscriptions_rows"] == n_users
    )
    p99_ms = r(p99(real_ns))
    results: dict[str, Any] = {
        "events_per_s": round(events_per_s, 1),
        "distinct_events_per_s": round(distinct / real_s, 1),
        "p50_ms": r(p50(real_ns)),
        "p99_ms": p99_ms,
        "max_ms": r(max(real_ns) / 1e6),
        "baseline_events_per_s": round(floor_per_s, 1),
        "baseline_p50_ms": r(p50(floor_ns)),
        "baseline_p99_ms": r(p99(floor_ns)),
        "ratio": round(events_per_s / floor_per_s, 4),
        "requests": requests,
        "duplicates": requests - distinct,
        "double_applied": checks["double_applied"],
        "lost": checks["lost"],
        "non_200": non_200,
        "exactly_once": exact,
        "goal_met": events_per_s >= GOAL_EVENTS_PER_S and p99_ms <= GOAL_P99_MS and exact,
    }
    params: dict[str, Any] = {
        "users": n_users,
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "requests_per_round": per_round,
        "distinct_events": distinct,
        "duplicate_share": DUPLICATE_SHARE,
        "mix": {k: w / sum(w for _, w in MIX) for k, w in MIX},
        "warmup_events": len(plan.warmup),
        "db_pool": pool.split("  ")[0] + f", max_overflow {getattr(db.engine.pool, '_max_overflow', '?')}",
        "cpu_ms_per_request": meter.per_request_ms("real", requests),
        "baseline_cpu_ms_per_request": meter.per_request_ms("baseline", len(floor_ns)),
        "outcomes": dict(tally.outcomes),
        "baseline_non_200": floor_bad,
        **{k: v for k, v in checks.items() if k not in results},
        "unexpected_answers": tally.unexpected,
        "goal_events_per_s": GOAL_EVENTS_PER_S,
        "goal_p99_ms": GOAL_P99_MS,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpus": os.cpu_count(),
        "quick": quick,
        "postgres": cluster.version,
        "total_s": round(time.perf_counter() - started, 1),
    }
    met = "met" if events_per_s >= GOAL_EVENTS_PER_S else "NOT met"
    met99 = "met" if p99_ms <= GOAL_P99_MS else "NOT met"
    table = [
        ("setup", f"{n_users} users with Pro, {CONCURRENCY} senders + Stripe stub in another process,"
                  f" PostgreSQL {cluster.version} (embedded, throwaway)"),
        ("requests", f"{requests:,} in {rounds} rounds: {distinct:,} distinct events + {requests - distinct:,}"
                     f" duplicates ({DUPLICATE_SHARE:.0%})"),
        ("events/s", f"{events_per_s:,.0f}  (all requests; goal >= {GOAL_EVENTS_PER_S}: {met});"
                     f" distinct {results['distinct_events_per_s']:,.0f}/s"),
        ("latency", f"p50 {results['p50_ms']:.2f} ms, p99 {p99_ms:.2f} ms (goal <= {GOAL_P99_MS:g}: {met99}),"
                    f" max {results['max_ms']:.1f} ms"),
        ("baseline", f"{floor_per_s:,.0f}/s, p50 {results['baseline_p50_ms']:.2f} ms,"
                     f" p99 {results['baseline_p99_ms']:.2f} ms  (verify the signature, answer 200)"),
        ("ratio", f"{results['ratio']:.3f}  (events/s / baseline)"),
        ("exactly once", f"double_applied {checks['double_applied']}, lost {checks['lost']}, non-200 {non_200};"
                         f" {checks['stripe_events_rows']:,} stripe_events rows, {checks['dms']:,} DMs"
                         f" ({checks['dms_expected']:,} expected)"),
        ("outcomes", ", ".join(f"{k} {v:,}" for k, v in sorted(tally.outcomes.items()))),
        ("cpu per request", ", ".join(f"{k} {v:.2f} ms" for k, v in params["cpu_ms_per_request"].items())),
        ("baseline cpu", ", ".join(f"{k} {v:.2f} ms" for k, v in params["baseline_cpu_ms_per_request"].items())),
        ("database", f"{params['db_pool']} (the app's defaults); {checks['db_sessions']} sessions opened"),
        ("load average", f"{load_before} before, {load_after} after ({os.cpu_count()} cpus)"),
        ("goal", "met" if results["goal_met"] else "NOT met"),
        ("total", f"{params['total_s']} s"),
    ]  # fmt: skip
    return BenchResult("webhooks", results, params, table)


def bench_webhooks(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    return run_async(_run(settings, quick, progress))
