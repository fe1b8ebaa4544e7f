"""`pktpath shell`: the interactive tracer, with the 2017 linux-packet-tracer's commands.

Same names, ranges and defaults as the original (src/dst 0.0.0.0/0, max_pkt 512
in 1..2048, max_duration 5 s in 1..60).  Better where it was rough: no kernel
noise on start, a drop says its reason and where, bad input gets one line and
the shell keeps going, src/dst apply live to a running trace, readline gives
completion and history, and exit or Ctrl-D detaches everything.
"""

from __future__ import annotations

import cmd
import contextlib
import ipaddress
import logging
import os
import sys
from typing import IO

from exporter.errors import PktpathError
from exporter.interactive import render
from exporter.interactive.session import MAX_DURATION_RANGE, MAX_PKT_RANGE, Network, TraceSession

WELCOME = "Welcome to Packet Tracing for Linux"
DEBUG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
HISTORY = os.path.expanduser("~/.pktpath_history")

HELP = """
Commands:
  clear             clear the screen
  debug             set debug level (debug, info, warn, error)
  dst               dst ip, like 1.2.3.0/24 (IPv6 too)
  exit              exit the program
  help              display help
  max_duration      set max seconds to keep tracing, (1~60)
  max_pkt           set max pkt to cached, (1~2048)
  restart           restart packet tracing
  show              show the output: show [config | summary | N]
  src               src ip, like 1.2.3.0/24 (IPv6 too)
  start             start to trace packet
  wait              wait until the tracing ends
"""

COMMANDS = (
    "clear",
    "debug",
    "dst",
    "exit",
    "help",
    "max_duration",
    "max_pkt",
    "restart",
    "show",
    "src",
    "start",
    "wait",
)


class UsageError(Exception):
    """Bad input at the prompt: one line, and the shell goes on."""


def parse_cidr(text: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        msg = str(exc)
        if "has host bits set" in msg:
            fixed = ipaddress.ip_network(text, strict=False)
            raise UsageError(f"{text} has host bits set; did you mean {fixed}?") from None
        raise UsageError(f"bad CIDR {text!r}: expected an address or network like 1.2.3.0/24") from None


def parse_int(name: str, text: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name}: {text!r} is not a number ({low}~{high})") from None
    if not low <= value <= high:
        raise UsageError(f"{name}: {value} is out of range ({low}~{high})")
    return value


class TracerShell(cmd.Cmd):
    prompt = ">>> "
    intro = WELCOME

    def __init__(self, session: TraceSession, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.session = session
        self.out = stdout or sys.stdout

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- the loop ----------------------------------------------------------

    def onecmd(self, line: str) -> bool:
        try:
            return super().onecmd(line)
        except UsageError as exc:
            self.say(f"error: {exc}")
        except PktpathError as exc:
            self.say(f"error: {exc}")
        return False

    def emptyline(self) -> bool:
        return False  # cmd's default repeats the last command: surprising for `start`

    def default(self, line: str) -> None:
        word = line.split()[0]
        raise UsageError(f"unknown command {word!r} (type help)")

    def completenames(self, text: str, *ignored: object) -> list[str]:
        return [c for c in COMMANDS if c.startswith(text)]

    def complete_show(self, text: str, *ignored: object) -> list[str]:
        return [c for c in ("config", "summary") if c.startswith(text)]

    def complete_debug(self, text: str, *ignored: object) -> list[str]:
        return [c for c in DEBUG_LEVELS if c.startswith(text)]

    # -- commands ----------------------------------------------------------

    def do_help(self, arg: str) -> None:
        self.say(HELP.rstrip())

    def do_clear(self, arg: str) -> None:
        self.out.write("\033[H\033[2J")
        self.out.flush()

    def do_exit(self, arg: str) -> bool:
        self.session.close()
        self.say("all probes detached")
        return True

    def do_EOF(self, arg: str) -> bool:  # cmd's name for Ctrl-D
        self.say("")
        return self.do_exit(arg)

    def do_debug(self, arg: str) -> None:
        level = arg.strip().lower()
        if level not in DEBUG_LEVELS:
            raise UsageError(f"debug: expected one of {', '.join(DEBUG_LEVELS)}, got {arg.strip()!r}")
        self.session.params.debug = level
        quiet_loader(level)
        logging.getLogger().setLevel(DEBUG_LEVELS[level])
        self.say(f"debug level: {level}")

    def _filter(self, which: str, arg: str) -> None:
        text = arg.strip()
        if not text:
            raise UsageError(f"{which}: expected a CIDR like 1.2.3.0/24")
        net = parse_cidr(text)
        any_net = net.prefixlen == 0 and net.version == 4
        # The original's 0.0.0.0/0 means "any": keep IPv6 traffic too.
        value: Network | None = None if any_net else net
        if which == "src":
            self.session.set_src(value)
        else:
            self.session.set_dst(value)
        live = " (applied to the running trace)" if self.session.running else ""
        self.say(f"{which}: {net}{live}")

    def do_src(self, arg: str) -> None:
        self._filter("src", arg)

    def do_dst(self, arg: str) -> None:
        self._filter("dst", arg)

    def do_max_pkt(self, arg: str) -> None:
        self.session.params.max_pkt = parse_int("max_pkt", arg.strip(), MAX_PKT_RANGE)
        self.say(f"max packets: {self.session.params.max_pkt}")

    def do_max_duration(self, arg: str) -> None:
        self.session.params.max_duration = parse_int("max_duration", arg.strip(), MAX_DURATION_RANGE)
        self.say(f"max duration: {self.session.params.max_duration}s")

    def do_start(self, arg: str) -> None:
        self.session.start()
        p = self.session.params
        self.say(f"tracing started: up to {p.max_pkt} packets or {p.max_duration}s (wait, show summary)")

    def do_restart(self, arg: str) -> None:
        self.session.restart()
        p = self.session.params
        self.say(f"tracing restarted: up to {p.max_pkt} packets or {p.max_duration}s")

    def do_wait(self, arg: str) -> None:
        if not self.session.running:
            self.say("no trace is running")
            return
        try:
            self.session.wait()
        except KeyboardInterrupt:
            self.say("\nstopped waiting; the trace goes on in the background")
            return
        r = self.session.result
        self.say(f"tracing ended ({r.ended_by}): {len(r.paths)} packets")

    def do_show(self, arg: str) -> None:
        what = arg.strip()
        if what == "config":
            self._show_config()
        elif what == "summary":
            self._show_summary()
        elif what == "":
            self._show_packets(range(1, len(self.session.result.paths) + 1))
        elif what.isdigit():
            n = int(what)
            count = len(self.session.result.paths)
            if not 1 <= n <= count:
                raise UsageError(f"show: no packet {n} (traced: {count})")
            self._show_packets([n])
        else:
            raise UsageError(f"show: expected config, summary or a packet number, got {what!r}")

    def _show_config(self) -> None:
        p = self.session.params
        lines = [
            "match rules:",
            f"    dst: {p.dst or '0.0.0.0/0'}, src: {p.src or '0.0.0.0/0'}",
            "tracer parameters:",
            f"    debug level:{p.debug}",
            f"    max packets: {p.max_pkt}",
            f"    max duration: {p.max_duration}s",
        ]
        modes = self.session.modes()
        if modes:
            lines.append("probe modes:")
            lines += [f"    {hop}: {mode}" for hop, mode in modes.items()]
        else:
            lines.append("probe modes: decided at the first start")
        self.say("\n".join(lines))

    def _show_summary(self) -> None:
        r = self.session.result
        state = "running" if self.session.running else (f"ended ({r.ended_by})" if r.ended_by else "not started")
        lines = [f"The number of packets we traced is: {len(r.paths)}", f"trace: {state}"]
        drops = r.drops_by_reason()
        if drops:
            lines.append("dropped packets by reason:")
            lines += [f"    {reason}: {n}" for reason, n in drops.most_common()]
        self.say("\n".join(lines))

    def _show_packets(self, numbers: range | list[int]) -> None:
        if self.session.running:
            self.say("(the trace is still running: showing the packets finished so far)")
        paths = list(self.session.result.paths)
        modes = self.session.modes()
        for n in numbers:
            if n <= len(paths):
                self.say(render.render_path(n, paths[n - 1], modes, self.session.shell_context()))


def quiet_loader(level: str = "info") -> None:
    """The loader's "N hops not attached" warning is kernel noise at a prompt: `show config`
    says the same, per hop.  `debug debug` brings everything back."""
    logging.getLogger("exporter.loader").setLevel(logging.NOTSET if level == "debug" else logging.ERROR)


def run_shell(session: TraceSession) -> int:
    quiet_loader()
    try:
        import readline

        readline.set_completer_delims(" ")
        with contextlib.suppress(OSError):  # no history yet
            readline.read_history_file(HISTORY)
    except ImportError:  # readline is optional (e.g. some minimal Python builds)
        readline = None  # type: ignore[assignment]
    shell = TracerShell(session)
    try:
        while True:
            try:
                shell.cmdloop()
                break
            except KeyboardInterrupt:
                # Ctrl-C at the prompt clears the line, as in a shell; exit or Ctrl-D leave.
                shell.say("^C")
                shell.intro = ""
    finally:
        session.close()
        if readline is not None:
            with contextlib.suppress(OSError):  # a read-only home must not fail the exit
                readline.write_history_file(HISTORY)
    return 0
