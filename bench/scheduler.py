"""Compare fifo-static, tiresias and gpuscale on the Pollux OSDI 2021 workloads.

Run `python -m bench.scheduler --help` for the options. Prints one row per policy and workload,
the mean over workloads, and the decision time of gpuscale's policy for 1,000 active jobs; writes
the same numbers as JSON to the path it prints.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from gpuscale.scheduling import Ceiling, GpuPool, JobRequest, PolicySettings, ScalingModel, allocate
from gpuscale.sim.engine import SimConfig, SimResult, simulate
from gpuscale.sim.model import DATA_DIR, load_applications, load_workload
from gpuscale.sim.schedulers import FifoStatic, Gpuscale, Tiresias, gpu_limit_for

PUBLISHED_TIRESIAS_MEAN_JCT_S = 4038.0
LOAD_FOLDERS = {"0.5": "workloads-0.5", "1.0": "workloads", "1.5": "workloads-1.5", "2.0": "workloads-2.0"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA_DIR,
        help="folder with traces/ and workloads*/ (default: the copy shipped in gpuscale.sim; "
        "../shared/data/pollux-osdi21 holds the full artifact data)",
    )
    parser.add_argument("--load", choices=sorted(LOAD_FOLDERS), action="append", help="relative load; repeatable (default 1.0)")
    parser.add_argument("--workloads", default="1-8", help="workload numbers, such as 1-8 or 1,3 (default 1-8)")
    parser.add_argument("--policies", default="fifo-static,tiresias,gpuscale", help="comma-separated policies")
    parser.add_argument("--price", type=float, default=2.5, help="price per GPU-hour in dollars (default 2.5)")
    parser.add_argument(
        "--half-price-ceiling",
        action="store_true",
        help="add a ceiling of half the full cluster's price per hour for every policy",
    )
    parser.add_argument("--restart-cost", type=float, default=30.0, help="seconds of no progress per restart (default 30)")
    parser.add_argument("--window", type=float, default=PolicySettings().stabilisation_window_s, help="gpuscale stabilisation window in seconds")
    parser.add_argument("--no-remaining-time", action="store_true", help="do not tell gpuscale each job's remaining run time")
    parser.add_argument("--decision-jobs", type=int, default=1000, help="active jobs in the decision-time benchmark (default 1000)")
    parser.add_argument("--output", type=Path, default=Path("out/bench-scheduler.json"), help="JSON output path")
    return parser.parse_args(argv)


def parse_workloads(text: str) -> list[int]:
    numbers = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            numbers.extend(range(int(low), int(high) + 1))
        else:
            numbers.append(int(part))
    return numbers


def build_scheduler(name: str, applications, args: argparse.Namespace):
    if name == "fifo-static":
        return FifoStatic()
    if name == "tiresias":
        return Tiresias()
    if name == "gpuscale":
        settings = PolicySettings(stabilisation_window_s=args.window, restart_cost_s=args.restart_cost)
        return Gpuscale(applications, args.price, settings, use_remaining_time=not args.no_remaining_time)
    raise SystemExit(f"unknown policy {name!r}; choose from fifo-static, tiresias, gpuscale")


def summarize(result: SimResult, jobs: int) -> dict:
    decisions = sorted(result.decision_seconds)
    return {
        "mean_jct_s": result.mean_jct,
        "p99_jct_s": result.p99_jct,
        "makespan_s": result.makespan_s,
        "gpu_hours": result.gpu_hours,
        "dollars": result.dollars,
        "ceiling_violation_s": result.ceiling_violation_s,
        "capacity_violation_s": result.capacity_violation_s,
        "restarts_per_job": result.restarts / jobs,
        "restart_gpu_hours": result.restart_gpu_hours,
        "restart_share": result.restart_gpu_hours / result.gpu_hours if result.gpu_hours else 0.0,
        "decision_mean_ms": 1000 * statistics.fmean(decisions),
        "decision_max_ms": 1000 * decisions[-1],
    }


def benchmark_decision(job_count: int, repeats: int = 20) -> dict:
    """Time `allocate` on a synthetic snapshot of `job_count` active jobs (fixed seed)."""
    rng = random.Random(0)
    jobs = []
    for index in range(job_count):
        minimum = rng.randint(1, 4)
        current = rng.choice([0, minimum, minimum + 2])
        maximum = minimum + 12
        jobs.append(
            JobRequest(
                key=f"job-{index}",
                min_workers=minimum,
                max_workers=maximum,
                gpus_per_worker=rng.choice([1, 1, 2]),
                priority=rng.choice([0, 0, 0, 1]),
                submitted_at=rng.random() * 86_400,
                current_workers=current,
                price_class=rng.choice(["a100", "h100"]) if current else None,
                seconds_since_rescale=rng.random() * 900 if current else None,
                scaling=ScalingModel.amdahl(rng.uniform(0.8, 0.99), maximum),
                expected_remaining_s=rng.uniform(60, 36_000),
            )
        )
    pools = [GpuPool("a100", 1.8, 4000), GpuPool("h100", 4.0, 2000)]
    keys = [job.key for job in jobs]
    ceilings = [Ceiling("cluster", 12_000.0, frozenset(keys)), Ceiling("team", 2_000.0, frozenset(keys[::3]))]
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        allocate(jobs, pools, ceilings)
        timings.append(time.perf_counter() - started)
    timings.sort()
    return {"jobs": job_count, "median_ms": 1000 * timings[len(timings) // 2], "max_ms": 1000 * timings[-1]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    applications = load_applications(args.data)
    cluster_gpus = 64
    ceiling = cluster_gpus * args.price / 2 if args.half_price_ceiling else None
    config = SimConfig(cluster_gpus=cluster_gpus, restart_cost_s=args.restart_cost, price_per_gpu_hour=args.price, ceiling_per_hour=ceiling)
    gpu_limit = gpu_limit_for(ceiling, args.price, cluster_gpus)
    policies = args.policies.split(",")
    report: dict = {"config": {**vars(args), "data": str(args.data), "output": str(args.output), "ceiling_per_hour": ceiling}, "runs": {}}

    header = f"{'load':>4} {'wl':>3} {'policy':<12} {'mean JCT':>9} {'p99 JCT':>9} {'makespan':>9} {'GPU-h':>7} {'dollars':>8} {'viol s':>6} {'rst/job':>7} {'lost':>5} {'dec ms':>6}"
    for load in args.load or ["1.0"]:
        totals: dict[str, list[dict]] = {policy: [] for policy in policies}
        print(header)
        for number in parse_workloads(args.workloads):
            jobs = load_workload(args.data / LOAD_FOLDERS[load] / f"workload-{number}.csv", applications)
            for policy in policies:
                scheduler = build_scheduler(policy, applications, args)
                row = summarize(simulate(jobs, applications, scheduler, config, gpu_limit), len(jobs))
                totals[policy].append(row)
                report["runs"].setdefault(load, {}).setdefault(f"workload-{number}", {})[policy] = row
                print(format_row(load, str(number), policy, row))
        means = {}
        for policy, rows in totals.items():
            means[policy] = {key: statistics.fmean(row[key] for row in rows) for key in rows[0]}
            means[policy]["gpu_hours_total"] = sum(row["gpu_hours"] for row in rows)
            means[policy]["dollars_total"] = sum(row["dollars"] for row in rows)
            means[policy]["ceiling_violation_s"] = sum(row["ceiling_violation_s"] for row in rows)
            print(format_row(load, "all", policy, means[policy]))
        report["runs"][load]["mean"] = means
        print_targets(load, means, ceiling is not None)

    decision = benchmark_decision(args.decision_jobs)
    report["decision_benchmark"] = decision
    print(f"gpuscale decision for {decision['jobs']} active jobs: median {decision['median_ms']:.1f} ms, max {decision['max_ms']:.1f} ms (one core)")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.output}")
    return 0


def format_row(load: str, workload: str, policy: str, row: dict) -> str:
    return (
        f"{load:>4} {workload:>3} {policy:<12} {row['mean_jct_s']:>9.0f} {row['p99_jct_s']:>9.0f} "
        f"{row['makespan_s']:>9.0f} {row['gpu_hours']:>7.0f} {row['dollars']:>8.0f} "
        f"{row['ceiling_violation_s']:>6.0f} {row['restarts_per_job']:>7.2f} "
        f"{100 * row['restart_share']:>4.1f}% {row['decision_mean_ms']:>6.2f}"
    )


def print_targets(load: str, means: dict, with_ceiling: bool) -> None:
    """Print the ratios the benchmark's targets are stated in."""
    if "tiresias" in means and not with_ceiling and load == "1.0":
        tiresias = means["tiresias"]["mean_jct_s"]
        print(f"tiresias mean JCT {tiresias:.0f} s vs published {PUBLISHED_TIRESIAS_MEAN_JCT_S:.0f} s: {100 * (tiresias / PUBLISHED_TIRESIAS_MEAN_JCT_S - 1):+.1f}%")
    if "gpuscale" not in means:
        return
    gpuscale = means["gpuscale"]
    for baseline in ("fifo-static", "tiresias"):
        if baseline in means:
            other = means[baseline]
            print(
                f"gpuscale / {baseline}: mean JCT x{gpuscale['mean_jct_s'] / other['mean_jct_s']:.2f}, "
                f"GPU-hours x{gpuscale['gpu_hours_total'] / other['gpu_hours_total']:.2f}, "
                f"dollars {gpuscale['dollars_total'] - other['dollars_total']:+.0f}"
            )


if __name__ == "__main__":
    sys.exit(main())
