"""`edge serve`'s processes: a supervisor that binds the socket, and the workers that serve on it.

The supervisor never renders and never serves. It binds one listening socket per worker on
the same port (`SO_REUSEPORT`: the kernel spreads connections evenly over them) and keeps them all
open; worker number k accepts on socket k, and so does its replacement after a crash or a reload, so
no socket is closed while the node runs and no connection waiting in one is reset (connections in
a dead worker's socket wait for its replacement, about a second); only a full stop closes them, and a
replacement delayed (below), whose socket is closed until it starts so that nothing waits in it. It
forks `workers` processes, restarts a worker that dies (at once, but after a delay that doubles with each
worker of its number in a row that died before serving: one that crashes as it starts is not started again 20
times a second; and gives up, exit status 1, when every worker keeps dying so and none serves: a full stop),
and handles the signals:

- SIGHUP: load and validate the config file again, in a thread of its own (`_Reading`): a plugin's
  `from_config` or the cache folder's check that blocks (a hung disk) leaves the supervisor replacing
  workers and taking signals meanwhile, and is given up after `READING_TIMEOUT_SECONDS`. A bad one is
  logged and the running one kept.
  A good one starts a new generation of workers; once every one of them is serving (it says so on a
  pipe), the old workers are told to stop: they stop accepting (what is queued in their sockets
  first: the new workers share the sockets, which stay open), finish the requests they have and
  exit. No request is dropped, and every worker serves the new config. `host`, `port`, `workers`,
  `metrics_port` and `metrics_host` keep their running values (the sockets are bound once): changing them
  needs a restart.
  The endpoints it points at other origins are purged once the old workers have exited (`_purge_moved`); a
  start purges those pointed elsewhere since the node last ran (`purge.origins_served`), before any worker serves.
- SIGTERM / SIGINT: the supervisor closes its copies of the listening sockets (`metrics_port`'s too),
  then tells the workers to stop: each accepts what the kernel has queued in its sockets and closes
  them, the last copies, so new connections are refused at once (a balancer goes to another node
  instead of waiting in a backlog nobody accepts from); it finishes its requests (`shutdown_grace`
  seconds at most, then their connections are closed) and exits; the supervisor exits 0. A
  connection that arrives between a worker's last accept and its close is reset (Linux does not
  move it to another socket of the group unless `net.ipv4.tcp_migrate_req` = 1, and none is left).

Each worker has a pipe to the supervisor: it writes `1` once it serves, then its event loop writes
a heartbeat byte every second. A serving worker the supervisor has not heard from for `[server]
worker_timeout` is blocked (a plugin's blocking call in a coroutine, a deadlock): the supervisor kills
it and starts another, as for a crash; the worker's own faulthandler has written its threads' stacks by
then, naming the call that blocks (`_beating`). The silence is measured on the supervisor's own clock, from
when a byte arrived: no shared memory, no time written by one process and read by another; and it
kills only once it has lasted `CONFIRM_SECONDS` past the timeout, so that a clock jumping forward
(a virtual machine resumed) kills nobody. The supervisor's deadlines (that silence, a reload's
`READY_TIMEOUT_SECONDS`, a stopping worker's kill) are kept on `SteadyClock`, which such a jump moves
by `CLOCK_STEP_MAX_SECONDS` at most.

The supervisor runs even with one worker: one code path for reloads and restarts, at the cost of one
idle process (a few MB of resident memory beyond what fork shares).

Memory: the supervisor imports everything a worker serves with (`preload`: Tornado, libvips, the
metrics client, the cache, the plugins) before its first fork, and moves those objects out of the
cyclic collector's reach (`gc.freeze`) before every fork, so the workers share those pages with it
copy-on-write instead of each importing, and a collection in a worker does not write to (and so
copy) every inherited object. Measured in benchmarks/README.md ("Memory").
"""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import gc
import logging
import math
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

from . import memory
from .checks import bind, keep_cache_dirs_locked
from .config import Config, Endpoint, endpoints_fetching_elsewhere
from .errors import ConfigError, StartupError
from .logs import configure_logging
from .render_notes import RenderNotes, keep

log = logging.getLogger("edge")

#: the delay before a worker that died before serving is replaced, from the second such death in a row of its
#: number on: the first delay, doubled with each, and the most. Without it a worker crashing as it started (a
#: plugin's native code, libvips' start) was started again 10 times in 0.4 s, and the node stopped itself, and so
#: the workers that served beside it (soak probe)
RESTART_DELAY_SECONDS = (0.5, 30.0)
#: deaths before serving in a row of every worker number, none serving, after which the node stops (exit status
#: 1): ~7.5 s of tries
GIVE_UP_AFTER_FAILED_STARTS = 6
#: the exit status of a worker that cannot start (`StartupError`: an origin that does not open): at the
#: node's own start, the node does not start (it had restarted it ten times, its port bound, answering nothing)
CANNOT_START = 3
#: how long a stopped worker waits for the tasks left running (`_run_to_the_end`) before it exits
LEFTOVER_SECONDS = 2.0
#: `[server]` keys a reload cannot change (the sockets are bound, the workers counted): a restart can
RESTART_KEYS = ("host", "port", "workers", "metrics_port", "metrics_host")
#: seconds a stopping worker gives the scrapes under way on `metrics_port` (each waits at most
#: `metrics.EXPOSITION_SECONDS` for its text)
METRICS_DRAIN_SECONDS = 2.0
#: seconds a reload's new workers have to start serving (origins opened, cache open) before it is abandoned
READY_TIMEOUT_SECONDS = 60
#: seconds a SIGHUP's reading of the config may take before it is given up (the running config kept)
READING_TIMEOUT_SECONDS = 30
#: beyond a worker's own shutdown grace, before the supervisor kills it
KILL_MARGIN_SECONDS = 5
_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
#: signals whose default action ends the process, sent by mistake (`kill -USR1`, a log rotator written
#: for another server): logged and ignored, never a node killed
STRAY_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
#: what a worker killed by SIGKILL is said to be, most often (the supervisor kills a hung one after saying so):
#: an operator's log had shown the kernel's OOM kills of a container as bare exits
_KILLED = (" (killed by SIGKILL: most often the kernel's OOM killer, the node's memory limit reached: see dmesg, and "
           "operations.md on sizing a memory limit)")
#: what a worker ended by a fatal signal of its own is said to be: its threads' stacks are above it (`serve_worker`)
_CRASHED = {signal.SIGSEGV: "a crash in native code (libvips, a loader, a plugin's extension)",
            signal.SIGBUS: "a crash in native code, or a mapped file cut short (the cache's disk?)",
            signal.SIGABRT: "an abort: most often libvips failing to allocate memory (a memory limit below the "
                            "node's budgets: operations.md on sizing a memory limit)",
            signal.SIGILL: "a crash in native code", signal.SIGFPE: "a crash in native code"}
#: how often a serving worker writes its heartbeat
HEARTBEAT_SECONDS = 1.0
#: what a worker writes on its pipe: once when it serves, then every `HEARTBEAT_SECONDS`
SERVING, HEARTBEAT = b"1", b"."
#: a silence longer than `worker_timeout` kills only if it is still one this much later: a clock that
#: jumps forward (a virtual machine resumed or migrated) makes every worker look silent at once, and a
#: live one beats again within a second
CONFIRM_SECONDS = 5.0
#: the most a turn of the supervisor's loop (a second at most: `select`'s timeout) counts on its clock
CLOCK_STEP_MAX_SECONDS = 5.0


class SteadyClock:
    """`CLOCK_MONOTONIC` less its forward jumps (a virtual machine resumed or migrated), for the supervisor's
    deadlines: read at every turn of its loop, each step counted for `CLOCK_STEP_MAX_SECONDS` at most. A
    jump ended every deadline under way at once: a reload's new workers still starting were killed and the
    reload abandoned, draining old workers killed with their requests unanswered."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._read_at = clock()
        self._now = self._read_at

    def __call__(self) -> float:
        now = self._clock()
        self._now += min(now - self._read_at, CLOCK_STEP_MAX_SECONDS)
        self._read_at = now
        return self._now


class Slots:
    """Small numbers, one per live worker, given back when it exits: its metrics files are named by it.
    There are as many as workers were ever alive at once: reloads whose old workers drain slow requests
    can hold many generations, and a worker with no slot left had been named by its pid, its files kept
    (read by every scrape) long after it exited (9 quick reloads of 2 workers: 38 such files)."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._made = 0

    def take(self) -> int:
        if self._free:
            return self._free.pop()
        self._made += 1
        return self._made - 1

    def give_back(self, slot: int) -> None:
        self._free.append(slot)


@dataclass
class _Worker:
    pid: int
    number: int
    generation: int
    pipe: int | None  # read end of its pipe (`SERVING`, then a `HEARTBEAT` a second); None after EOF
    heard: float  # when its last byte arrived (its fork, before the first), on the supervisor's clock
    slot: int  # from `Slots`
    notes: RenderNotes  # what its render threads work on
    ready: bool = False
    kill_at: float | None = None  # told to stop: killed if still alive then
    overdue_at: float | None = None  # when its silence was first seen to be over `worker_timeout`
    hung: bool = False  # killed for its silence, not yet reaped
    killed: bool = False  # killed at `kill_at`, not yet reaped


class _Reading:
    """A SIGHUP's reading of the config file, in a thread: `config` or `error` once `done`."""

    def __init__(self, read: Callable[[], Config], started: float, wake: int) -> None:
        self.started = started
        self.config: Config | None = None
        self.error: BaseException | None = None
        self.done = False
        #: given up for its time (`READING_TIMEOUT_SECONDS`): what it comes to is dropped
        self.abandoned = False
        self._thread = threading.Thread(target=self._run, args=(read, wake), name="config-reading", daemon=True)
        self._thread.start()

    def _run(self, read: Callable[[], Config], wake: int) -> None:
        try:
            self.config = read()
        except BaseException as error:  # a plugin's SystemExit too: the running node outlives it
            self.error = error
        try:
            os.write(wake, b"r")  # the supervisor's loop goes on with it at once
        except BlockingIOError:  # the pipe full: the loop wakes anyway
            pass
        self.done = True  # last: once done, `wake` is not written to, and may be closed

    def stack(self) -> str:
        """Where it is held: the calls below `_run`."""
        frame = sys._current_frames().get(self._thread.ident)
        if frame is None:
            return "(it has just ended)"
        calls = traceback.extract_stack(frame)
        below = next((n + 1 for n, call in enumerate(calls) if call.name == "_run" and call.filename == __file__), 0)
        return "".join(traceback.format_list(calls[below:])).rstrip("\n")


class Supervisor:
    def __init__(self, config: Config, sockets: list[list], reload_config: Callable[[], Config],
                 announce: Callable[[Config], None], multiprocess_metrics: bool, metrics_sockets: list = ()):
        self.config = config
        #: the listening sockets of worker number k: `sockets[k]` (one per address of `host`); none while its
        #: replacement waits (`respawns`)
        self.sockets = sockets
        self.port = sockets[0][0].getsockname()[1]
        #: `[server] metrics_port`'s socket (empty: /metrics is on the main port)
        self.metrics_sockets = metrics_sockets
        self.reload_config = reload_config
        self.announce = announce
        self.multiprocess_metrics = multiprocess_metrics
        self.workers: dict[int, _Worker] = {}
        self.generation = 0
        self.pending: tuple[int, Config, float] | None = None  # (generation, config, ready deadline)
        self.reading: _Reading | None = None  # a SIGHUP's, under way
        self.reload_again = False
        #: the workers are to be replaced once the reload under way is done (`_check_metrics_folder`)
        self.replace_again = False
        #: what `_finish_reload` logs of the generation under way, and whether it is a SIGHUP's
        self._pending_done = ""
        self._pending_reload = False
        #: the multiprocess metrics folder, held open: deleted (a cleaner of the temporary folder), its
        #: link count is 0 even if a folder of the same name was made since
        self._metrics_folder: int | None = None
        #: per worker number: how many of its workers in a row died before serving
        self.failed_starts: dict[int, int] = {}
        #: per worker number: when its dead worker is to be replaced (`RESTART_DELAY_SECONDS`), and whether
        #: the dead one had served (`_spawn`'s `replacing`)
        self.respawns: dict[int, tuple[float, bool]] = {}
        self.stopping = False
        self.gave_up = False
        self.announced = False
        #: the endpoints reloads pointed at other origins, each with the generation and config serving them so:
        #: purged once no worker of an older generation lives (`_purge_moved`); and those of the reload under way
        self.moved: list[tuple[int, Config, list[Endpoint]]] = []
        self._pending_moved: list[Endpoint] = []
        #: where each endpoint's originals came from as the node served them, removed endpoints' included
        #: (`purge.note_origins_served`)
        self.origins_served: dict[str, str] = {}
        self._signals: list[int] = []
        self.slots = Slots()
        self.clock = SteadyClock()

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        for signum in (*_SIGNALS, *STRAY_SIGNALS):
            signal.signal(signum, lambda signum, _frame: self._signals.append(signum))
        self._wake_fds = (wake_read, wake_write)
        try:
            preload()
            from . import metrics  # imported by `preload`, after the metrics mode was chosen
            from .cache import checkpoint_left_logs

            metrics.node_started = time.time()
            metrics.share_notes(metrics.node_started)
            if self.multiprocess_metrics:
                self._metrics_folder = os.open(os.environ["PROMETHEUS_MULTIPROC_DIR"], os.O_RDONLY | os.O_DIRECTORY)
            # once a start, before any worker serves: a restart on a config that points an endpoint at other origins
            # finds what the old ones gave in the cache folder. The purge's cache threads have ended when it
            # returns, and it runs no libvips (`threads_before_fork`)
            from .purge import note_origins_served, origins_served, purge_moved
            if (served := origins_served(self.config.cache.dir)) is not None:
                if moved := endpoints_fetching_elsewhere(served, self.config):
                    purge_moved(self.config, moved, "since the node last ran,")
            self.origins_served = note_origins_served(self.config, served or {})
            for number in range(self.config.server.workers):
                self._spawn(number, self.generation, self.config)
            while self.workers or not self.stopping:
                self._wait_for_events(wake_read)
                self._reap()
                self._purge_moved()
                while self._signals:
                    self._on_signal(self._signals.pop(0))
                self._check_metrics_folder()
                keep_cache_dirs_locked()
                self._check_reading()
                self._progress()
            checkpoint_left_logs(self.config.cache.dir)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            if self.reading is None or self.reading.done:  # else its thread writes to `wake_write` yet
                os.close(wake_read)
                os.close(wake_write)
            if self._metrics_folder is not None:
                os.close(self._metrics_folder)
        return 1 if self.gave_up else 0

    def _wait_for_events(self, wake_read: int) -> None:
        pipes = [w.pipe for w in self.workers.values() if w.pipe is not None]
        due = min((at for at, _ in self.respawns.values()), default=math.inf)
        readable, _, _ = select.select([wake_read, *pipes], [], [], max(0.0, min(1.0, due - self.clock())))
        if wake_read in readable:
            try:
                os.read(wake_read, 512)
            except BlockingIOError:
                pass
        now = self.clock()
        for worker in self.workers.values():
            if worker.pipe is not None and worker.pipe in readable:
                heard = os.read(worker.pipe, 4096)
                if not heard:  # it is exiting: `_reap` will know how
                    os.close(worker.pipe)
                    worker.pipe = None
                    continue
                worker.heard = now
                worker.ready = worker.ready or SERVING in heard

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP and not self.stopping:
            self._begin_reload()
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self._stop_all("stopping")
        elif signum in STRAY_SIGNALS:
            log_stray_signal(signum)

    def _progress(self) -> None:
        now = self.clock()
        current = [w for w in self.workers.values() if w.generation == self.generation]
        if not self.announced and current and all(w.ready for w in current):
            self.announced = True
            self.announce(self.config)
        if self.pending is not None:
            generation, config, deadline = self.pending
            new = [w for w in self.workers.values() if w.generation == generation]
            if len(new) == config.server.workers and all(w.ready for w in new):
                self._finish_reload(generation, config)
            elif now > deadline:
                self._abandon_reload(f"the new workers did not start serving in {READY_TIMEOUT_SECONDS}s")
        for number, (at, replacing) in list(self.respawns.items()):
            if now >= at and not self.stopping:
                del self.respawns[number]
                self._spawn(number, self.generation, self.config, replacing)
        for worker in self.workers.values():
            if worker.kill_at is not None and now > worker.kill_at:
                if not worker.killed:  # its loop held (a plugin's blocking close()?), or a drain past its grace
                    log.warning("worker %d (pid %d) had not exited shutdown_grace + %ds after it was told to stop "
                                "(its event loop held?): killed", worker.number, worker.pid, KILL_MARGIN_SECONDS)
                    worker.killed = True
                _kill(worker.pid, signal.SIGKILL)
            elif worker.kill_at is None and not worker.hung:
                self._watch(worker, now)

    def _watch(self, worker: _Worker, now: float) -> None:
        silence = now - worker.heard
        if silence <= self.config.server.worker_timeout:
            worker.overdue_at = None
        elif worker.overdue_at is None:
            worker.overdue_at = now
        elif now - worker.overdue_at >= CONFIRM_SECONDS:
            # a starting worker beats too (`serve_worker`): an origin's `open()` blocking its loop escapes the
            # open's own bound, and had left the node silent for good, its port taking connections into the backlog
            if _stopped(worker.pid):  # SIGSTOP or a debugger: faulthandler's thread is stopped too
                cause, stacks = "the process is stopped", "it wrote no stacks"
            else:
                cause = "its event loop is blocked" + ("" if worker.ready else " while it started: an origin's open()?")
                stacks = "its threads' stacks, written when the silence reached worker_timeout, are above"
            log.error("worker %d (pid %d) gave no sign of life for %.0fs (%s): killed; %s",
                      worker.number, worker.pid, silence, cause, stacks)
            worker.hung = True
            _kill(worker.pid, signal.SIGKILL)

    # -- workers ----------------------------------------------------------------------------------
    def _spawn(self, number: int, generation: int, config: Config, replacing: bool = False) -> None:
        """Fork worker `number`; `replacing`: in place of one that served and exited on its own (`Node.start`)."""
        if self.stopping or not self._listening(number):
            return
        pipe_read, pipe_write = os.pipe()
        notes = RenderNotes(config.server.transform_threads)
        slot = self.slots.take()
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # no supervisor handler runs in the child
        gc.freeze()  # what the child inherits stays shared: its collections no longer write to it
        if config.server.memory_trim:
            # free pages given back first: the child's first allocations would land in them, each a
            # page copied that this process keeps too (2 workers: -1.0 MB of the node's idle PSS)
            memory.trim()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.set_wakeup_fd(-1)
                for signum in _SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor reloads; a worker is replaced
                inherited = [pipe_read, *self._wake_fds, *(w.pipe for w in self.workers.values() if w.pipe is not None),
                             *([] if self._metrics_folder is None else [self._metrics_folder])]
                for fd in inherited:
                    os.close(fd)
                for other in self.sockets[:number] + self.sockets[number + 1:]:
                    for sock in other:
                        sock.close()  # the supervisor keeps them open
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                _die_with_parent()
                keep(notes)
                if self.multiprocess_metrics:
                    from .metrics import name_files_by  # imported once the metrics' folder is chosen
                    name_files_by(slot)
                serve_worker(config, self.sockets[number], pipe_write, self.metrics_sockets, replacing)
            except StartupError as error:
                log.error("worker %d cannot start: %s", number, config.masked(str(error)))
                code = CANNOT_START
            except BaseException:
                log.exception("worker %d crashed", number)
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        os.close(pipe_write)
        self.workers[pid] = _Worker(pid, number, generation, pipe_read, heard=self.clock(), slot=slot, notes=notes)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

    def _listening(self, number: int) -> bool:
        """Listen for worker `number` again if its sockets were closed while its replacement waited; False if the
        port was taken meanwhile: the node stops."""
        if not self.sockets[number]:
            try:
                self.sockets[number] = bind(self.config.server.host, self.port, reuse_port=True)
            except StartupError as error:
                log.critical("worker %d cannot be started again: %s; stopping the node", number, error)
                self.gave_up = True
                self._stop_all("stopping")
                return False
        return True

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            if worker.pipe is not None:
                os.close(worker.pipe)
            if self.multiprocess_metrics:  # before its slot, and so its files' name, goes to another worker
                from prometheus_client import multiprocess

                from .metrics import process_name, slot_emptied
                multiprocess.mark_process_dead(process_name(worker.slot))
                slot_emptied(worker.slot)
            self.slots.give_back(worker.slot)
            code = os.waitstatus_to_exitcode(status)
            if code and (rendering := worker.notes.read()):  # their access log lines will never be written
                log.error("worker %d (pid %d) was rendering for %s when it ended", worker.number, worker.pid,
                          "; ".join(rendering))
            worker.notes.close()
            self._on_exit(worker, code)

    def _on_exit(self, worker: _Worker, code: int) -> None:
        if self.stopping or worker.kill_at is not None:
            return  # asked to stop
        if self.pending is not None and worker.generation == self.pending[0]:
            self._abandon_reload(f"a new worker exited with status {code} before serving")
            return
        if code == CANNOT_START and not self.announced:  # the node's own start: its config cannot serve
            log.critical("worker %d could not start (above): the node does not start", worker.number)
            self.gave_up = True
            self._stop_all("stopping")
            return
        # a worker that served is replaced at once, however often: one crashed by a request (an original that
        # crashes the renderer, asked again and again) is the node's to serve on; counted, it had a client stop
        # the node in 8 s (new-features probe)
        failed = 0 if worker.ready else self.failed_starts.get(worker.number, 0) + 1
        self.failed_starts[worker.number] = failed
        numbers = range(self.config.server.workers)
        if (all(self.failed_starts.get(n, 0) >= GIVE_UP_AFTER_FAILED_STARTS for n in numbers)
                and not any(w.ready for w in self.workers.values())):
            log.critical("workers keep dying: worker %d (pid %d) exited with status %d, and each of the %d worker(s) "
                         "died %d times in a row before serving; stopping the node",
                         worker.number, worker.pid, code, len(numbers), GIVE_UP_AFTER_FAILED_STARTS)
            self.gave_up = True
            self._stop_all("stopping")
            return
        from . import metrics  # imported by `preload`
        metrics.worker_restarted()
        first, most = RESTART_DELAY_SECONDS
        delay = min(first * 2 ** (failed - 2), most) if failed > 1 else 0.0  # one crash: capacity back at once
        # tolerant of an origin that does not open only in place of a worker that served: one that failed its
        # own start (a config's credentials refused at the node's start) is started again as it was
        if delay:
            self.respawns[worker.number] = (self.clock() + delay, worker.ready)
            # closed until then: the kernel would queue a share of the new connections in them, each waiting for
            # the delay (up to 30 s); those queued now are reset, what a balancer retries elsewhere
            for sock in self.sockets[worker.number]:
                sock.close()
            self.sockets[worker.number] = []
            restarted = f"restarting in {delay:g}s ({failed} worker(s) {worker.number} in a row died before serving)"
        else:
            self._spawn(worker.number, self.generation, self.config, replacing=worker.ready)
            restarted = "restarted"
        log.error("worker %d (pid %d) exited with status %d; %s%s", worker.number, worker.pid, code, restarted,
                  _KILLED if code == -signal.SIGKILL and not (worker.hung or worker.killed) else
                  f" ({signal.Signals(-code).name}: {_CRASHED[-code]}; its threads' stacks are above)"
                  if -code in _CRASHED else "")

    def _stop(self, workers: list[_Worker]) -> None:
        kill_at = self.clock() + self.config.server.shutdown_grace + KILL_MARGIN_SECONDS
        for worker in workers:
            if worker.kill_at is None:
                worker.kill_at = kill_at
                _kill(worker.pid, signal.SIGTERM)

    def _stop_all(self, verb: str) -> None:
        if not self.stopping:
            log.info("%s %d worker(s)", verb, len(self.workers))
            # before the workers are told: each worker then holds the last copy of its sockets, accepts
            # what is queued in them and closes them, and new connections are refused from then on
            for sock in chain(*self.sockets, self.metrics_sockets):
                sock.close()
        self.stopping = True
        self.pending = None
        self.respawns.clear()
        self._stop(list(self.workers.values()))

    def _check_metrics_folder(self) -> None:
        """Make the metrics folder again if it was deleted, and replace the workers: every new worker's files
        failed to open (a reload, or a crashed worker's replacement, could not start: the node stopped), and
        the running ones write into deleted files, which no scrape reads."""
        if self._metrics_folder is None or self.stopping or os.fstat(self._metrics_folder).st_nlink > 0:
            return
        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            replacement = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            log.error("the metrics folder %s was deleted and cannot be made again: %s", folder, error.strerror)
            return  # tried again at the next turn
        os.close(self._metrics_folder)
        self._metrics_folder = replacement
        log.warning("the metrics folder %s was deleted (a cleaner of the temporary folder?): made again; "
                    "replacing the workers, whose counts it held", folder)
        if self.pending is not None:
            self.replace_again = True  # once the new workers serve: they may have opened the deleted folder
        else:
            self._start_generation(self.config, "workers replaced")

    # -- reloading --------------------------------------------------------------------------------
    def _begin_reload(self) -> None:
        if self.reading is not None and self.reading.done:  # ended since the loop's last look: that first
            self._check_reading(again=True)
        if self.reading is not None and self.reading.abandoned:
            from . import metrics  # imported by `preload`
            log.error("SIGHUP: config not reloaded, the running one is kept: the reading of an earlier SIGHUP, "
                      "given up, has still not ended (%.0fs; where it is held was logged then)",
                      self.clock() - self.reading.started)
            metrics.reloaded(False)
        elif self.pending is not None or self.reading is not None:
            self.reload_again = True  # after the one under way
        else:
            self.reading = _Reading(self.reload_config, self.clock(), self._wake_fds[1])

    def _check_reading(self, again: bool = False) -> None:
        """Go on with a SIGHUP's reading once it has ended, or give it up once it has taken too long; start the
        reading of a SIGHUP that came meanwhile once nothing is under way."""
        reading = self.reading
        if self.stopping:
            return
        if reading is None:
            if self.reload_again and self.pending is None:
                self.reload_again = False
                self._begin_reload()
            return
        if reading.done:
            self.reading = None
            if reading.abandoned:  # `again`: a SIGHUP came with its end, and is read now
                log.warning("SIGHUP: the reading of the config given up ended after %.0fs; what it read is not "
                            "used: %s", self.clock() - reading.started,
                            "reading it again for this SIGHUP" if again else "SIGHUP again to reload")
            elif self.pending is not None:  # workers replaced meanwhile (`_check_metrics_folder`): read after them
                self.reload_again = True
            else:
                self._reloaded(reading)
        elif not reading.abandoned and self.clock() - reading.started > READING_TIMEOUT_SECONDS:
            from . import metrics  # imported by `preload`
            reading.abandoned = True
            self.reload_again = False  # it would be refused too
            log.error("SIGHUP: config not reloaded, the running one is kept: reading it took over %ds (a plugin's "
                      "from_config, or the cache folder on a hung disk?); it is held at:\n%s", READING_TIMEOUT_SECONDS,
                      self.config.masked(reading.stack()))
            metrics.reloaded(False)

    def _reloaded(self, reading: _Reading) -> None:
        """Start the new workers on what a SIGHUP's reading read, or log why not."""
        from . import metrics  # imported by `preload`
        if isinstance(reading.error, ConfigError):
            log.error("SIGHUP: config not reloaded, the running one is kept: %s", reading.error)
            metrics.reloaded(False)
            return
        if reading.error is not None:  # a plugin's own parsing failing its way: the running node must outlive it
            log.error("SIGHUP: config not reloaded, the running one is kept: reading it failed",
                      exc_info=reading.error)
            metrics.reloaded(False)
            return
        loaded = reading.config
        server = self.config.server  # the socket is bound and the metrics mode chosen: these stay
        kept = [f"{key} = {getattr(server, key)!r}" for key in RESTART_KEYS
                if getattr(loaded.server, key) != getattr(server, key)]
        if kept:
            log.warning("SIGHUP: [server] %s changed in the file but needs a restart; keeping %s",
                        ", ".join(key.split(" ")[0] for key in kept), self.config.masked(", ".join(kept)))
        config = replace(loaded, server=replace(loaded.server, **{key: getattr(server, key) for key in RESTART_KEYS}))
        # the supervisor's own lines, and the new workers' (forked with its handler), the new way
        configure_logging(config.server.log_level, config.server.log_format)
        log.info("SIGHUP: config %s is valid; starting %d new worker(s)", config.source, server.workers)
        self._start_generation(config, f"config reloaded from {config.source}", reload=True,
                               moved=endpoints_fetching_elsewhere(self.origins_served, config))

    def _start_generation(self, config: Config, done: str, reload: bool = False,
                          moved: Sequence[Endpoint] = ()) -> None:
        """Start a new generation of workers on `config`; once they all serve, the old ones stop, and `done`
        is logged. `reload`: a SIGHUP's, whose outcome the workers' metrics tell; `moved`: the endpoints it points
        at other origins, purged once the old workers have exited."""
        generation = self.generation + 1
        self.pending = (generation, config, self.clock() + READY_TIMEOUT_SECONDS)
        self._pending_done = done
        self._pending_reload = reload
        self._pending_moved = list(moved)
        for number in range(config.server.workers):
            self._spawn(number, generation, config)

    def _finish_reload(self, generation: int, config: Config) -> None:
        old = [w for w in self.workers.values() if w.generation != generation]
        self.config, self.generation, self.pending = config, generation, None
        self.respawns.clear()  # every worker number has a worker of the new generation
        self.failed_starts.clear()
        self._stop(old)
        if self._pending_reload:
            from . import metrics  # imported by `preload`
            metrics.reloaded(True)
        log.info("%s; %d old worker(s) finish their requests and exit", self._pending_done, len(old))
        if self._pending_moved:
            self.moved.append((generation, config, self._pending_moved))
        elif not self.moved:  # (else once those are purged: a node stopped first purges them as it starts again)
            from .purge import note_origins_served  # imported by `preload`
            self.origins_served = note_origins_served(config, self.origins_served)
        if self.replace_again:  # and a SIGHUP's reload waiting, after them (`_check_reading`)
            self.replace_again = False
            self._start_generation(self.config, "workers replaced")

    def _purge_moved(self) -> None:
        """Purge the endpoints a reload pointed at other origins once no worker of an older generation lives. Not
        before: an old worker told to stop still answers what is queued in its sockets, and stores what the old
        origins give it, after any purge record (which holds back only work begun before it). In the supervisor's
        loop, which waits for it (workers are neither forked nor replaced meanwhile, while the purge runs threads);
        the workers serve on."""
        if not self.moved:
            return
        from .purge import note_origins_served, purge_moved  # imported by `preload`
        for entry in [entry for entry in self.moved if all(w.generation >= entry[0] for w in self.workers.values())]:
            _, config, moved = entry
            self.moved.remove(entry)
            purge_moved(config, moved, "SIGHUP:")
            if not self.moved:
                self.origins_served = note_origins_served(self.config, self.origins_served)

    def _abandon_reload(self, reason: str) -> None:
        generation = self.pending[0]
        self.pending = None
        configure_logging(self.config.server.log_level, self.config.server.log_format)
        log.error("SIGHUP: config not reloaded, the running one is kept: %s", reason)
        if self._pending_reload:
            from . import metrics  # imported by `preload`
            metrics.reloaded(False)
        self._stop([w for w in self.workers.values() if w.generation == generation])


def preload() -> None:
    """Import, in the supervisor, what a worker imports to serve (edge.server: Tornado, libvips, the
    metrics client, the cache), so that forked workers share it (libvips' loaders are limited by each
    worker's `Node`, from its own config: the supervisor decodes nothing). Call it after the metrics mode
    is chosen (PROMETHEUS_MULTIPROC_DIR set or not): prometheus-client picks its value store on import.
    Safe before a fork: importing starts no thread (libvips starts its own only to render)."""
    from . import hits, server  # noqa: F401
    gc.collect()  # the imports' garbage gone before it is frozen in place


def threads_before_fork() -> str | None:
    """Why workers forked now would hang, if they would: the libvips threads this process runs, by the kernel's
    names (none where there is no /proc). libvips starts its worker threads at a process's first decode or encode
    and keeps them; a child forked after has none of them but waits on them: a plugin that made a placeholder with
    libvips at import, or checked an image in `from_config`, had every render of the node hang, past
    `render_timeout`, without a word (plugin probe). Other threads (an APM agent's) are the children's loss alone."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    names: dict[str, int] = {}
    for task in tasks:
        try:
            name = Path(f"/proc/self/task/{task}/comm").read_text().strip()
        except OSError:
            continue  # it ended meanwhile
        if name.startswith(("libvips", "vips")):
            names[name] = names.get(name, 0) + 1
    if not names:
        return None
    running = ", ".join(name if count == 1 else f"{count} × {name}" for name, count in names.items())
    return (f"this process runs libvips' threads ({running}), which its forked workers would not have and their "
            f"renders would wait on for ever: a plugin made an image with libvips at import or in an origin's "
            f"from_config; do such work in the origin's open(), which runs in each worker "
            f"(docs/writing-an-origin-plugin.md)")


def serve_worker(config: Config, sockets: list, pipe: int, metrics_sockets: list = (),
                 replacing: bool = False) -> None:
    """One worker: serve on `sockets` until SIGTERM/SIGINT, then drain. Writes a `HEARTBEAT` to `pipe` every
    `HEARTBEAT_SECONDS` from its loop, from its start, and `SERVING` once it accepts connections. `replacing`:
    it replaces one that served and exited on its own (`Node.start`)."""
    from .fetching import fetch_budget
    from .httpserver import make_server

    # a fatal signal (a crash in libvips or a plugin's C code, an abort) writes the threads' stacks: the crash's
    # names the call; without it the log said "exited with status -11" alone (soak probe)
    faulthandler.enable(all_threads=True)
    memory.configure_allocator(config.server.malloc_arenas, config.server.memory_trim)  # before libvips' threads
    from .hits import image_server
    from .server import Node, make_metrics_app  # imported by the supervisor (`preload`)

    fetch_budget.configure(config.server.fetch_memory, config.server.fetch_memory_wait)

    async def serve() -> None:
        os.set_blocking(pipe, False)
        # while it starts too: a start that blocks is killed
        beating = asyncio.create_task(_beating(pipe, config.server.worker_timeout))
        node = Node(config)
        await node.start(replacing)
        # What exists now (modules, libvips bindings, config, plugins) lives as long as the worker:
        # out of the collector's generations, a full collection no longer walks it on the request
        # path (measured: ~200 ms for the 62 000 objects of a started node on a loaded 2-core machine,
        # a few µs after `freeze`)
        gc.freeze()
        if config.server.memory_trim:
            memory.trim()  # what starting freed (with the supervisor's: -2.7 MB after the first misses)
            trimming = asyncio.create_task(memory.trim_after_bursts(lambda: node.inflight == 0))
        server = image_server(node)
        server.add_sockets(sockets)
        metrics_server = None
        if metrics_sockets:
            metrics_server = make_server(make_metrics_app(node), config.server, cors=False)
            metrics_server.add_sockets(metrics_sockets)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        for signum in STRAY_SIGNALS:
            loop.add_signal_handler(signum, log_stray_signal, signum)
        _tell(pipe, SERVING)
        await stopping.wait()
        draining = [server.drain(config.server.shutdown_grace, node.give_up_serving)]
        if metrics_server is not None:  # as the main port: its queue accepted, a scrape under way answered (one
            # waiting for the next text had been cancelled as the worker ended: a 500 at every reload)
            draining.append(metrics_server.drain(METRICS_DRAIN_SECONDS))
        await asyncio.gather(*draining)
        beating.cancel()
        if config.server.memory_trim:
            trimming.cancel()
        await node.stop()

    _run_to_the_end(serve())


def _run_to_the_end(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)`, but the tasks left once it returns are waited for `LEFTOVER_SECONDS` at most: a plugin's
    fetch that swallows its cancellation (left to end by itself) had held every later stop of its worker until the
    supervisor's SIGKILL, `shutdown_grace` + 5 s later, logged as an event loop held. The worker then exits."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            _, running = loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_SECONDS))
            if running:
                log.warning("%d task(s) still running %gs after they were cancelled (an origin's fetch that "
                            "does not end when cancelled?): the worker exits without them", len(running),
                            LEFTOVER_SECONDS)
        loop.run_until_complete(loop.shutdown_asyncgens())
        # not closed with tasks still pending: the worker's `os._exit` follows, and nothing runs them again


def log_stray_signal(signum: int) -> None:
    log.warning("ignored signal %s (pid %d): SIGHUP reloads, SIGTERM stops", signal.Signals(signum).name,
                os.getpid())


async def _beating(pipe: int, worker_timeout: float) -> None:
    """Beat, and re-arm faulthandler's watchdog at each beat: a loop silent for `worker_timeout` has its
    threads' stacks written to standard error, by a thread of C that needs no loop nor the GIL, before the
    supervisor kills the worker. They name the call that blocks (a plugin's `time.sleep` in a `fetch`), of
    which the kill's log line can say nothing."""
    try:
        while True:
            faulthandler.dump_traceback_later(worker_timeout)
            await asyncio.sleep(HEARTBEAT_SECONDS)
            _tell(pipe, HEARTBEAT)
    finally:
        faulthandler.cancel_dump_traceback_later()  # a stopping worker's silence is no block


def _tell(pipe: int, what: bytes) -> None:
    try:
        os.write(pipe, what)
    except BlockingIOError:
        pass  # a full pipe holds thousands of beats the supervisor has yet to read: it knows we live
    except BrokenPipeError:
        pass  # the supervisor is gone, and this worker with it (`_die_with_parent`)


def _stopped(pid: int) -> bool:
    """Linux: whether the process is in a stop state (T, t); False where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"T", b"t")


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the supervisor dies, even by SIGKILL, so none is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
