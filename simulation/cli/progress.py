"""Per-round progress: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # the Flower engine's processes start before torch is imported here
    from simulation.world.records import RoundRecord

log = logging.getLogger("fedmarket.progress")


class RoundProgress:
    """Receives each ``RoundRecord`` from the world (``on_round``) and shows it."""

    def __init__(self, total_rounds: int, console: Console) -> None:
        self.total = total_rounds
        self.console = console
        self._bar: Progress | None = None
        self._task: int | None = None

    def __enter__(self) -> RoundProgress:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]round"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("starting", total=self.total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)

    def update(self, rec: RoundRecord) -> None:
        """Show one finished round."""
        text = (
            f"acc {rec.test_accuracy:.3f}  ε {rec.epsilon_max:.2f}  "
            f"accepted {rec.accepted}/{rec.sampled}  tokens {rec.tokens_issued:g}"
        )
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=rec.round, description=text)
        else:
            log.info("round %d/%d: %s", rec.round, self.total, text)
