"""What a build shows while it runs: BuildKit's two forms.

Lecture idea: a build is a list of steps, each run, cached or done; the person
watching wants to see which, and the output of the one running.

- ``Plain`` (``--progress plain``, or not a terminal): one line per event,
  numbered by step as BuildKit's plain output is::

      #5 [app 3/6] RUN make
      #5 0.412 cc -o app main.c
      #5 DONE 1.3s

- ``Terminal`` (``--progress auto`` at a terminal): a block redrawn in place --
  the elapsed time and steps done, a line per step with its time, and the last
  lines of output of each step still running; when the build ends, the block
  stays as the summary.

Both are called from the stages' threads: a lock keeps their lines whole.
"""

import threading
import time


class Plain:
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()
        self.started = {}  # step -> monotonic time

    def write(self, text):
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def start(self, step, title):
        self.started[step] = time.monotonic()
        self.write(f"#{step} {title}")

    def instant(self, step, title):
        """A step that only changes the config: nothing to wait for."""
        self.write(f"#{step} {title}")

    def log(self, step, text):
        self.write(f"#{step} {time.monotonic() - self.started[step]:.3f} {text}")

    def end(self, step, cached):
        self.write(f"#{step} {'CACHED' if cached else f'DONE {time.monotonic() - self.started[step]:.1f}s'}")

    def note(self, text):
        self.write(text)

    def close(self):
        pass


class Terminal(Plain):
    """The block redrawn in place (ANSI: cursor up, clear line) ten times a
    second, so the clocks of running steps move, and once more at the end."""

    TAIL = 6  # output lines shown under a running step

    def __init__(self, out, width=100):
        super().__init__(out)
        self.width = width
        self.begun = time.monotonic()
        self.steps = {}   # step -> [title, state ("running", "cached", "done"), seconds, last lines]
        self.notes = []
        self.shown = 0    # lines drawn last time
        self.drawn = 0.0
        self.closed = threading.Event()
        self.ticker = threading.Thread(target=self.tick, daemon=True)
        self.ticker.start()

    def tick(self):
        while not self.closed.wait(0.1):
            self.draw()

    def start(self, step, title):
        with self.lock:
            self.started[step] = time.monotonic()
            self.steps[step] = [title, "running", 0.0, []]
        self.draw()

    def instant(self, step, title):
        with self.lock:
            self.steps[step] = [title, "done", 0.0, []]
        self.draw(soon=True)

    def log(self, step, text):
        with self.lock:
            lines = self.steps[step][3]
            lines.append(text)
            del lines[:-self.TAIL]
        self.draw(soon=True)

    def end(self, step, cached):
        with self.lock:
            entry = self.steps[step]
            entry[1], entry[2] = ("cached" if cached else "done"), time.monotonic() - self.started[step]
        self.draw()

    def note(self, text):
        with self.lock:
            self.notes.append(text)
        self.draw()

    def close(self):
        self.closed.set()
        self.ticker.join()
        self.draw()

    def draw(self, soon=False):
        with self.lock:
            now = time.monotonic()
            if soon and now - self.drawn < 0.1:
                return
            done = sum(1 for s in self.steps.values() if s[1] != "running")
            lines = [f"[+] Building {now - self.begun:.1f}s ({done}/{len(self.steps)})"]
            for step in sorted(self.steps):
                title, state, seconds, tail = self.steps[step]
                if state == "running":
                    seconds = now - self.started[step]
                mark = "CACHED " if state == "cached" else ""
                lines.append(self.fit(f" => {mark}{title}", f"{seconds:.1f}s"))
                if state == "running":
                    lines += [self.fit(f" => => # {text}", "") for text in tail]
            lines += self.notes
            up = f"\x1b[{self.shown}A" if self.shown else ""
            self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            if len(lines) < self.shown:  # the block shrank (a step's output folded away)
                self.out.write("\x1b[J")
            self.out.flush()
            self.shown, self.drawn = len(lines), now

    def fit(self, text, right):
        room = self.width - len(right) - 1
        text = text if len(text) <= room else text[:room - 1] + "…"
        return f"{text:<{room}} {right}"
